"""PyGRANSO 1.2.0 on one instance, with the suite's ``run`` contract (runs in .venv-pygranso).

The instance is evaluated in torch (``globalAD=False``: PyGRANSO receives the analytic
gradients the other solvers receive).  PyGRANSO works with ``(n, 1)`` column tensors and a
Python-float objective; this adapter reshapes at the boundary and its cost is counted as
user-function time.  Options are passed under their GRANSO names; keys the suite uses for
other solvers (``qp_solver``, ``scipy_*``) are dropped, and ``H0_diagonal`` becomes ``H0``.
"""
from __future__ import annotations

import time

import numpy as np

_SUITE_ONLY = ("qp_solver", "H0_diagonal")


def run(inst, fun, x0, options: dict, trace=None) -> dict:
    import torch
    from pygranso.pygranso import pygranso
    from pygranso.pygransoStruct import pygransoStruct

    n = inst.n

    def combined_fn(X_struct):
        x = X_struct.x.reshape(-1)
        f, g, ci, ci_g, ce, ce_g = fun(x)
        col = lambda v: None if v is None else v.reshape(-1, 1)  # noqa: E731
        return float(f), g.reshape(n, 1), col(ci), ci_g, col(ce), ce_g

    opts = pygransoStruct()
    opts.torch_device = torch.device("cpu")
    opts.double_precision = True
    opts.globalAD = False
    opts.x0 = torch.as_tensor(np.asarray(x0), dtype=torch.float64).reshape(n, 1).clone()
    opts.print_level = 0
    for key, value in options.items():
        if key in _SUITE_ONLY or key.startswith("scipy_"):
            continue
        setattr(opts, key, value)
    if options.get("H0_diagonal") is not None:
        from benchmarks.problems import diagonal_from_blocks
        opts.H0 = torch.diag(torch.as_tensor(diagonal_from_blocks(options["H0_diagonal"]),
                                             dtype=torch.float64))
    if trace is not None:
        def halt_log_fn(iteration, x, penaltyfn_parts, *rest):
            trace.record(lambda: (penaltyfn_parts.f, penaltyfn_parts.tv))
            return False
        opts.halt_log_fn = halt_log_fn
        trace.start()
    t = time.perf_counter()
    soln = pygranso(var_spec={"x": [n, 1]}, combined_fn=combined_fn, user_opts=opts)
    wall = time.perf_counter() - t
    return {"wall": wall, "iters": int(soln.iters), "fn_evals": int(soln.fn_evals),
            "termination": int(soln.termination_code), "message": "",
            "x_final": soln.final.x.detach().cpu().numpy().reshape(-1).astype(np.float64)}
