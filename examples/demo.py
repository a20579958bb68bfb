"""Demo: a nonsmooth, nonconvex, constrained problem solved with the iteration table printed.

    minimize    8 |x1^2 - x2| + (1 - x1)^2
    subject to  sqrt(2) x1 - 1 <= 0,   2 x2 - 1 <= 0

(GRANSO's own constrained example; solution x* = (1/sqrt(2), 1/2), f* = (1 - 1/sqrt(2))^2.)
"""
import numpy as np

import ncvx_ref


def problem(x):
    """Objective, inequality constraints and their (sub)gradients; Jacobian columns = gradients."""
    r = x[0] ** 2 - x[1]
    s = 1.0 if r >= 0 else -1.0  # a subgradient of |r| at the kink
    f = 8 * abs(r) + (1 - x[0]) ** 2
    f_grad = np.array([16 * s * x[0] - 2 * (1 - x[0]), -8 * s])
    ci = np.array([np.sqrt(2) * x[0] - 1, 2 * x[1] - 1])
    ci_grad = np.array([[np.sqrt(2), 0.0], [0.0, 2.0]])
    return ncvx_ref.Evaluation(f, f_grad, ci=ci, ci_grad=ci_grad)


if __name__ == "__main__":
    result = ncvx_ref.solve(problem, np.array([5.5, 5.5]), mu0=100, print_frequency=5)
    print()
    print("x          =", result.x)
    print("f          =", result.fun, " (optimum", (1 - 1 / np.sqrt(2)) ** 2, ")")
    print("status     =", result.status, "-", result.message)
    print("stationarity measure =", result.stat_value, " max violation =", result.final.tv)
