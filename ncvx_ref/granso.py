"""The GRANSO-compatible front end, for people migrating from MATLAB GRANSO.

``granso(n, combined_fn[, opts])`` or ``granso(n, obj_fn, ineq_fn, eq_fn[, opts])``, chosen by the
number of arguments as in GRANSO.  User functions receive ``x`` as a 1-D array (NumPy unless
``opts['x0']`` is an array of another namespace) and return what GRANSO's do:

- ``obj_fn(x) -> (f, f_grad)``; ``ineq_fn(x) -> (ci, ci_grad)``; ``eq_fn(x) -> (ce, ce_grad)``;
  pass ``None`` for an absent constraint group;
- ``combined_fn(x) -> (f, f_grad, ci, ci_grad, ce, ce_grad)``, an absent group returned as empty
  arrays (``[]``); whether a group exists is decided once, at x0.

Gradients may be ``(n,)`` or ``(n, 1)`` columns and Jacobians are ``n x m`` with one column per
constraint (GRANSO's layout).  ``opts`` is a dict (or any object with attributes) with GRANSO's
option names, including ``x0``, ``H0``, ``halt_log_fn`` (called with GRANSO's 12 arguments) and
``limited_mem_warm_start``.  The returned :class:`GransoSolution` has GRANSO's field names.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np

from .api import solve
from .backend import Backend
from .evaluation import Evaluation
from .evaluator import ProblemDefinitionError
from .history import IterationState
from .options import OptionError, Options
from .result import PointRecord, Result


@dataclass(frozen=True)
class GransoSolution:
    """GRANSO's ``soln`` struct (OPTIONS.md §E); absent fields are None."""

    final: SimpleNamespace
    best: Optional[SimpleNamespace]
    most_feasible: Optional[SimpleNamespace]
    H_final: Any
    stat_value: float
    iters: int
    BFGS_updates: SimpleNamespace
    fn_evals: int
    termination_code: int
    quadprog_failure_rate: float
    error: Optional[BaseException] = None
    mu_lowest: Optional[float] = None
    scalings: Optional[dict] = None
    final_unscaled: Optional[SimpleNamespace] = None
    best_unscaled: Optional[SimpleNamespace] = None
    most_feasible_unscaled: Optional[SimpleNamespace] = None
    result: Optional[Result] = None  # the full ncvx_ref result (message, history, ...)


def _point(p: Optional[PointRecord], constrained: bool) -> Optional[SimpleNamespace]:
    if p is None:
        return None
    if not constrained:
        return SimpleNamespace(x=p.x, f=p.f)
    return SimpleNamespace(x=p.x, f=p.f, ci=p.ci, ce=p.ce, tvi=p.tvi, tve=p.tve, tv=p.tv,
                           feasible_to_tol=p.feasible_to_tol, mu=p.mu)


def _solution(res: Result) -> GransoSolution:
    c = res.constrained
    return GransoSolution(
        final=_point(res.final, c), best=_point(res.best, c), most_feasible=_point(res.most_feasible, c),
        H_final=res.H_final, stat_value=res.stat_value, iters=res.iters,
        BFGS_updates=SimpleNamespace(**{f.name: getattr(res.bfgs_updates, f.name)
                                        for f in fields(res.bfgs_updates)}),
        fn_evals=res.fn_evals, termination_code=int(res.termination_code),
        quadprog_failure_rate=res.quadprog_failure_rate, error=res.error, mu_lowest=res.mu_lowest,
        scalings=res.scalings, final_unscaled=_point(res.final_unscaled, c),
        best_unscaled=_point(res.best_unscaled, c), most_feasible_unscaled=_point(res.most_feasible_unscaled, c),
        result=res)


class _GransoFunctions:
    """Turns GRANSO-style user functions into the core's ``x -> Evaluation``."""

    def __init__(self, backend: Backend, n: int, combined=None, obj=None, ineq=None, eq=None):
        self.b, self.n = backend, n
        self.combined, self.obj, self.ineq, self.eq = combined, obj, ineq, eq

    def _array(self, v):
        """An array of the run's namespace: lists, scalars and NumPy data are converted (empty -> None)."""
        if hasattr(v, "shape") and not isinstance(v, np.ndarray):
            return v
        a = np.asarray(v, dtype=np.float64)
        return None if a.size == 0 else self.b.asarray(a)

    def _vec(self, v):
        a = None if v is None else self._array(v)
        if a is None:
            return None
        if len(a.shape) == 0:
            return self.b.xp.reshape(a, (1,))
        return self.b.xp.reshape(a, (-1,)) if len(a.shape) == 2 and 1 in a.shape else a

    def _jac(self, J, m: Optional[int]):
        if J is None or m is None:
            return None
        a = self._array(J)
        if a is not None and len(a.shape) == 1 and m == 1:
            a = self.b.xp.reshape(a, (self.n, 1))
        return a

    def _scalar(self, f):
        return f if hasattr(f, "shape") and not isinstance(f, np.ndarray) else float(np.asarray(f).reshape(()))

    def __call__(self, x) -> Evaluation:
        if self.combined is not None:
            out = self.combined(x)
            if not (isinstance(out, (tuple, list)) and len(out) == 6):
                raise ProblemDefinitionError("combined_fn must return (f, f_grad, ci, ci_grad, ce, ce_grad)")
            f, g, ci, Ji, ce, Je = out
        else:
            f, g = self.obj(x)
            ci, Ji = self.ineq(x) if self.ineq is not None else (None, None)
            ce, Je = self.eq(x) if self.eq is not None else (None, None)
        ci, ce = self._vec(ci), self._vec(ce)
        mi = None if ci is None else int(ci.shape[0])
        me = None if ce is None else int(ce.shape[0])
        return Evaluation(self._scalar(f), self._vec(g), ci, self._jac(Ji, mi), ce, self._jac(Je, me))


def _halt_log_adapter(halt_log_fn: Callable) -> Callable[[IterationState], bool]:
    """Call a GRANSO ``halt_log_fn`` with its 12 arguments (§18.1) from an IterationState."""

    def callback(state: IterationState) -> bool:
        pt = state.point
        parts = SimpleNamespace(**{f.name: getattr(pt, f.name) for f in fields(pt)}, stat_value=float("nan"))
        out = halt_log_fn(state.iteration, state.x, parts, state.direction, state.get_H, state.qp_H,
                          state.ls_evals, state.alpha, state.n_grads, state.stat_vec, state.stat_val,
                          state.fallback_level)
        return bool(out) if out is not None else False

    return callback


def granso(n: int, *args, **kwargs) -> GransoSolution:
    """GRANSO's calling sequence: ``granso(n, combined_fn[, opts])`` or
    ``granso(n, obj_fn, ineq_fn, eq_fn[, opts])``; ``qp_solver=`` may be given as a keyword."""
    qp_solver = kwargs.pop("qp_solver", None)
    if kwargs:
        raise TypeError(f"granso() got unexpected keyword arguments {sorted(kwargs)}; GRANSO options go in "
                        "the opts dict")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise OptionError(f"n (the number of variables) must be a positive integer, got {n!r}")
    n = int(n)
    if len(args) in (1, 2):
        combined, opts = args[0], (args[1] if len(args) == 2 else None)
        obj = ineq = eq = None
    elif len(args) in (3, 4):
        obj, ineq, eq = args[:3]
        opts = args[3] if len(args) == 4 else None
        combined = None
    else:
        raise TypeError("call granso(n, combined_fn[, opts]) or granso(n, obj_fn, ineq_fn, eq_fn[, opts])")
    for name, fn in (("combined_fn", combined), ("obj_fn", obj), ("ineq_fn", ineq), ("eq_fn", eq)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function (or None), got {type(fn).__name__}")
    if combined is None and obj is None:
        raise TypeError("obj_fn must be a function")
    options, extras = Options.from_granso(opts)
    x0 = extras["x0"]
    if x0 is None:  # GRANSO draws randn(n, 1); ours is seeded by random_seed for reproducibility
        x0 = np.random.default_rng(options.random_seed).standard_normal(n)
    elif isinstance(x0, (list, tuple)) or isinstance(x0, np.ndarray):
        x0 = np.asarray(x0, dtype=np.float64 if not isinstance(x0, np.ndarray) or
                        x0.dtype.kind != "f" else x0.dtype).reshape(-1)
    elif len(x0.shape) == 2 and x0.shape[1] == 1:
        x0 = x0.reshape(-1)
    if int(x0.shape[0]) != n:
        raise OptionError(f"x0 has {int(x0.shape[0])} entries but n = {n}")
    backend = Backend.of(x0)
    fun = _GransoFunctions(backend, n, combined=combined, obj=obj, ineq=ineq, eq=eq)
    callback = _halt_log_adapter(extras["halt_log_fn"]) if extras["halt_log_fn"] is not None else None
    warm = extras["limited_mem_warm_start"]
    if warm is not None and not isinstance(warm, dict):
        warm = {k: getattr(warm, k) for k in ("S", "Y", "rho", "gamma")}
    res = solve(fun, x0, options=options, qp_solver=qp_solver, callback=callback, H0=extras["H0"],
                limited_mem_warm_start=warm if options.limited_mem_size > 0 else None)
    return _solution(res)
