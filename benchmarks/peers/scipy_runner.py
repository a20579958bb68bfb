"""SciPy's SLSQP and trust-constr on one instance, with the suite's ``run`` contract.

SciPy asks for f, its gradient and each constraint group separately; one evaluation of the
instance serves all of them at the same x (a one-point cache), and ``fn_evals`` counts real
evaluations of the instance.  SciPy's inequality convention is ``g(x) >= 0``, so SLSQP gets
``-ci`` and ``-ci_grad.T``.
"""
from __future__ import annotations

import time

import numpy as np


class _OnePointCache:
    def __init__(self, fun) -> None:
        self.fun, self.x, self.val = fun, None, None

    def __call__(self, x):
        if self.x is None or not np.array_equal(x, self.x):
            self.x = np.array(x, dtype=np.float64, copy=True)
            self.val = self.fun(self.x)
        return self.val


def run(inst, fun, x0, options: dict, trace=None, method: str = "SLSQP") -> dict:
    from scipy import optimize
    ev = _OnePointCache(fun)
    maxit = int(options.get("maxit", 1000))
    tol = float(options.get("scipy_tol", 1e-10))
    obj = lambda x: float(ev(x)[0])  # noqa: E731
    jac = lambda x: np.asarray(ev(x)[1])  # noqa: E731
    cons = []
    if inst.n_ineq:
        if method == "SLSQP":
            cons.append({"type": "ineq", "fun": lambda x: -np.asarray(ev(x)[2]),
                         "jac": lambda x: -np.asarray(ev(x)[3]).T})
        else:
            cons.append(optimize.NonlinearConstraint(lambda x: np.asarray(ev(x)[2]), -np.inf, 0.0,
                                                     jac=lambda x: np.asarray(ev(x)[3]).T))
    if inst.n_eq:
        if method == "SLSQP":
            cons.append({"type": "eq", "fun": lambda x: np.asarray(ev(x)[4]),
                         "jac": lambda x: np.asarray(ev(x)[5]).T})
        else:
            cons.append(optimize.NonlinearConstraint(lambda x: np.asarray(ev(x)[4]), 0.0, 0.0,
                                                     jac=lambda x: np.asarray(ev(x)[5]).T))
    callback = None
    if trace is not None:
        from benchmarks.problems import violation

        def f_tv(x):
            r = inst.evaluate(np.asarray(x, dtype=np.float64))  # unwrapped: not counted
            return float(r[0]), violation(r[2], r[4])
        callback = (lambda xk, *rest: trace.record(lambda: f_tv(xk))) if method == "SLSQP" else \
            (lambda xk, *rest: trace.record(lambda: f_tv(xk)) or False)
        trace.start()
    opts = {"maxiter": maxit}
    if method == "SLSQP":
        opts["ftol"] = tol
    else:
        opts.update(gtol=tol, xtol=tol)
    t = time.perf_counter()
    res = optimize.minimize(obj, np.asarray(x0, dtype=np.float64), jac=jac, method=method,
                            constraints=cons, callback=callback, options=opts)
    wall = time.perf_counter() - t
    return {"wall": wall, "iters": int(res.nit), "fn_evals": int(fun.calls),
            "termination": int(res.status), "message": str(res.message),
            "x_final": np.asarray(res.x, dtype=np.float64)}


def run_slsqp(inst, fun, x0, options, trace=None):
    return run(inst, fun, x0, options, trace, method="SLSQP")


def run_trust_constr(inst, fun, x0, options, trace=None):
    return run(inst, fun, x0, options, trace, method="trust-constr")
