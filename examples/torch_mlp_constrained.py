"""Train a small ReLU network under an orthogonality constraint with the torch adapter.

    minimize   mean squared error of net(X) against y
    subject to W1^T W1 = I      (the first layer's 2 input directions stay orthonormal)

The network's trainable parameters are the solver's variables (``module=net``); the function
receives the module and calls it as usual.  The loss is nonsmooth (ReLU) and the constraint
nonconvex: the kind of problem BFGS-SQP is for.  Run: ``python examples/torch_mlp_constrained.py``.
"""
import torch

from ncvx_ref.adapters import torch as ncvx_torch


def main() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).double()
    X = torch.randn(64, 2, dtype=torch.float64)
    y = torch.sin(2.0 * X[:, :1]) + 0.5 * X[:, 1:]
    rows, cols = torch.triu_indices(2, 2)  # W1^T W1 is symmetric: constrain its upper triangle

    def problem(model):
        loss = torch.mean((model(X) - y) ** 2)
        W1 = model[0].weight                                   # 8 x 2
        orth = (W1.T @ W1 - torch.eye(2, dtype=W1.dtype))[rows, cols]
        return loss, None, orth                                # (f, inequalities, equalities)

    with torch.no_grad():
        start_loss = float(torch.mean((net(X) - y) ** 2))
    sol = ncvx_torch.solve(problem, module=net, maxit=150, print_level=0)
    res = sol.result
    print(f"termination code {int(res.termination_code)} ({res.message}) after {res.iters} "
          f"iterations, {res.fn_evals} evaluations")
    print(f"loss: start {start_loss:.4f} (infeasible start), best feasible {sol.fun:.4f}")
    W1 = sol.x["0.weight"]
    print("W1^T W1 =\n", (W1.T @ W1).numpy().round(8))

    ncvx_torch.load_parameters(net, sol.x)                 # copy the answer into the network
    with torch.no_grad():
        print(f"loss of the updated network: {float(torch.mean((net(X) - y) ** 2)):.4f}")


if __name__ == "__main__":
    main()
