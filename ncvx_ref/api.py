"""The Pythonic entry point :func:`solve` (the GRANSO-compatible one is :mod:`ncvx_ref.granso`)."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional

from .backend import Backend
from .evaluator import PenaltyEvaluator, ProblemDefinitionError
from .history import HistoryRecorder, IterationState
from .host_views import TorchViews
from .options import OptionError, Options
from .result import Result
from .solver import BfgsSqp, make_hessian

Array = Any


def _check_x0(x0) -> Backend:
    try:
        backend = Backend.of(x0)
    except TypeError as exc:
        raise ProblemDefinitionError(
            f"x0 must be an array of an Array-API namespace (numpy, cupy, torch, jax, ...), got "
            f"{type(x0).__name__}") from exc
    if len(x0.shape) != 1 or x0.shape[0] < 1:
        raise ProblemDefinitionError(f"x0 must be a 1-D array of length n >= 1, got shape {tuple(x0.shape)}"
                                     " (flatten it, e.g. x0.reshape(-1))")
    xp = backend.xp
    if not xp.isdtype(x0.dtype, "real floating"):
        raise ProblemDefinitionError(f"x0 has dtype {x0.dtype}; use a real floating dtype (float64 "
                                     "recommended, float32 supported)")
    if not backend.all_finite(x0):
        raise ProblemDefinitionError("x0 contains NaN or Inf")
    return backend


def _check_H0(H0, n: int, options: Options, backend: Backend):
    """OPTIONS.md: real finite n x n; in full memory mode, positive definite when ``checkH0``."""
    if H0 is None:
        return None, True
    sparse = hasattr(H0, "toarray")  # a scipy.sparse matrix: dense from here on, remembered as sparse
    H = backend.asarray(H0.toarray() if sparse else H0)
    if tuple(H.shape) != (n, n):
        raise OptionError(f"H0 must be an n x n = {n} x {n} matrix, got shape {tuple(H.shape)}")
    if not backend.all_finite(H):
        raise OptionError("H0 contains NaN or Inf")
    if options.limited_mem_size == 0 and options.checkH0:
        xp = backend.xp
        scale = float(xp.max(xp.abs(H)))
        if float(xp.max(xp.abs(H - H.T))) > 1e-12 * max(scale, 1e-300):
            raise OptionError("H0 is not symmetric; pass a symmetric positive definite H0 (e.g. (H0 + H0.T)/2), "
                              "or checkH0=False to skip this test")
        try:
            L = xp.linalg.cholesky(H)
            ok = backend.all_finite(L)
        except Exception:
            ok = False
        if not ok:
            raise OptionError("H0 is not numerically positive definite (its Cholesky factorization failed); "
                              "pass a symmetric positive definite H0, or checkH0=False to skip this test")
    return H, sparse


def solve(fun: Callable[[Array], Any], x0: Array, *, options: Optional[Options] = None,
          qp_solver: Any = None, callback: Optional[Callable[[IterationState], bool]] = None,
          record_history: bool = False, H0: Any = None, limited_mem_warm_start: Optional[dict] = None,
          **option_kwargs: Any) -> Result:
    """Minimize ``f(x)`` subject to ``c_I(x) <= 0`` and ``c_E(x) = 0`` with GRANSO's BFGS-SQP method.

    **Arguments:**

    - ``fun``: ``x -> Evaluation`` (or the tuple ``(f, f_grad, ci, ci_grad, ce, ce_grad)``, None for an
      absent group); Jacobians are ``n x m`` with the constraint gradients as columns.
    - ``x0``: 1-D starting point; its namespace, dtype and device are those of the whole run.
      (A CPU torch tensor runs the core on NumPy views of the same memory, for NumPy's
      per-operation cost; the function, callbacks and result still see torch tensors:
      ``ncvx_ref/host_views.py``.)
    - ``options``: an :class:`~ncvx_ref.Options`; ``option_kwargs`` (GRANSO names) override its fields.
    - ``qp_solver``: a QP solver name (``"daqp"``, ...) or object with ``solve(BoxQP)``; default: see
      ``ncvx_ref.qp.default``.
    - ``callback``: called after iteration 0 and every accepted iteration with an
      :class:`~ncvx_ref.IterationState`; returning True stops the run (termination code 3).
    - ``record_history``: keep a NumPy copy of every iterate's data in ``Result.history``.
    - ``H0``, ``limited_mem_warm_start``: initial inverse Hessian (full memory) / L-BFGS state of a
      previous ``Result.H_final`` (warm restart; see docs/restarts.md).

    **Returns:** a :class:`~ncvx_ref.Result`.  Errors in the problem definition at ``x0`` raise
    :class:`ProblemDefinitionError`; bad options raise :class:`~ncvx_ref.OptionError`.  A user
    function that raises *after* x0 ends the run with code 11, the best point kept.
    A ``KeyboardInterrupt`` propagates with the result so far attached as ``exc.ncvx_result``.
    """
    if options is None:
        options = Options(**option_kwargs)
    elif option_kwargs:
        options = options.replace(**option_kwargs)
    if not isinstance(options, Options):
        raise OptionError(f"options must be an ncvx_ref.Options, got {type(options).__name__} "
                          "(use Options(**dict) or Options.from_granso(struct))")
    backend = _check_x0(x0)
    views = TorchViews.of(x0)  # a CPU torch run: the core on NumPy views (host_views.py)
    if views is not None:
        fun, callback = views.function(fun), views.callback(callback)
        x0, H0 = views.to_core(x0), views.to_core(H0)
        limited_mem_warm_start = views.to_core(limited_mem_warm_start)
        backend = Backend.of(x0)
    n = int(x0.shape[0])
    H0_arr, H0_sparse = _check_H0(H0, n, options, backend)
    from .qp.default import get_qp_solver  # the QP layer is chosen at call time, not import time

    if options.quadprog_opts:
        warnings.warn("quadprog_opts has no effect in ncvx_ref (there is no MATLAB quadprog); configure the QP "
                      "solver through the qp_solver argument instead", UserWarning, stacklevel=2)

    solver_qp = get_qp_solver(qp_solver)
    ev = PenaltyEvaluator(fun, x0, options.mu0, backend, options.viol_ineq_tol, options.viol_eq_tol,
                          options.prescaling_threshold)
    hessian = make_hessian(n, options, backend, H0=H0_arr, warm_start=limited_mem_warm_start,
                           H0_is_sparse=H0_sparse or H0_arr is None)
    recorder = HistoryRecorder() if record_history else None
    cb = _combine(recorder, callback)
    printer = None
    if options.print_level >= 1:
        from .printing import IterationPrinter

        printer = IterationPrinter(options, n, ev.m_ineq, ev.m_eq)
        printer.start(qp_solver_name=getattr(solver_qp, "name", type(solver_qp).__name__),
                      prescaling_notice=_prescaling_notice(ev, options))
    run = BfgsSqp(ev, hessian, options, solver_qp, backend, callback=cb, printer=printer)
    try:
        result = run.run()
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "ncvx_result", None)
        if partial is not None:
            if recorder is not None:
                partial = dataclasses.replace(partial, history=recorder.entries)
            exc.ncvx_result = partial if views is None else views.result(partial)
        raise
    if recorder is not None:
        result = dataclasses.replace(result, history=recorder.entries)
    if views is not None:
        result = views.result(result)
    if printer is not None:
        printer.finish(result)
    return result


def _combine(recorder, callback):
    if recorder is None:
        return callback
    if callback is None:
        return recorder

    def both(state: IterationState) -> bool:
        recorder(state)
        return bool(callback(state))

    return both


def _prescaling_notice(ev: PenaltyEvaluator, options: Options) -> Optional[str]:
    """§1.3's informational notice (GRANSO tests the objective and the equality gradients)."""
    if not options.prescaling_info_msg:
        return None
    T = options.prescaling_threshold
    limit = T if T < float("inf") else 100.0
    norms = ev.gradient_norms_x0
    big_f = norms["f"] > limit
    big_e = norms["ce"] is not None and bool(ev._backend.xp.any(norms["ce"] > limit))
    if not (big_f or big_e):
        return None
    if ev.scalings is not None:
        return (f"pre-scaling applied: gradients at x0 with norm above prescaling_threshold = {T:g} were "
                "scaled down; the reported values refer to the scaled problem (see the *_unscaled fields).")
    return (f"poorly scaled problem: some gradient norms at x0 exceed {limit:g}; consider setting "
            "prescaling_threshold.")
