"""The BFGS-SQP iteration (ALGORITHM.md §4–§6, §9): one skeleton, ``init`` / ``step`` / ``result``.

:class:`BfgsSqp` owns the loop's own variables — the accepted iterate ``x``, the penalty value
and gradient ``F``/``G`` *held by the loop*, its penalty parameter ``MU``, the fallback level —
separately from the evaluator's state, because GRANSO's iterates depend on exactly when they are
(not) refreshed (§19.12).  Each pass of :meth:`step` either accepts a step, retries at the next
fallback level, or stops by raising :class:`Stop`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

import numpy as np

from .backend import Backend
from .evaluator import PenaltyEvaluator, UserFunctionError, point_record
from .hessian import BFGSInverseHessian, LBFGSInverseHessian, damp
from .history import IterationState
from .linesearch import WolfeParameters, weak_wolfe, LineSearchResult, NOT_BRACKETED, BRACKETED_FAILED
from .qp.counting import CountingQPSolver
from .qp.interface import QPSolverError
from .regularization import make_qp_metric
from .result import Result
from .stationarity import NeighbourhoodCache, stationarity
from .steering import SteeringParameters, steer
from .termination import TerminationCode as TC, termination_message
from .warm_start import StationarityWarmStart

Array = Any
STEERING, STEERING_IDENTITY, QUASI_NEWTON, GRADIENT, RANDOM = 0, 1, 2, 3, 4
LS_NONDESCENT_FAILED = 3


class Stop(Exception):
    """Raised inside the loop to end the run with a termination code."""

    def __init__(self, code: TC, error: Optional[BaseException] = None):
        super().__init__(int(code))
        self.code = TC(code)
        self.error = error


class BfgsSqp:
    """One run of the method on one problem; construct, then :meth:`run`."""

    def __init__(self, ev: PenaltyEvaluator, hessian, options, qp_solver, backend: Backend,
                 callback: Optional[Callable[[IterationState], bool]] = None, printer=None):
        self.ev, self.H, self.opts, self.b = ev, hessian, options, backend
        self.qp = qp_solver if isinstance(qp_solver, CountingQPSolver) else CountingQPSolver(qp_solver)
        self.callback, self.printer = callback, printer
        self.n = ev.n
        self.constrained = ev.constrained
        self.wolfe = WolfeParameters(options.wolfe1, options.wolfe2, options.fvalquit, options.step_tol)
        self.steering = SteeringParameters(options.steering_l1_model, options.steering_ineq_margin,
                                           options.steering_maxit, options.steering_c_viol,
                                           options.steering_c_mu)
        self.cache = NeighbourhoodCache(options.resolved_ngrad(self.n), options.evaldist, backend,
                                        exact_distances=getattr(options, "exact_cache_distances", False))
        # the latest stationarity QP answer, the next QP's guess (docs/qp_solvers.md)
        self.warm_start = (StationarityWarmStart() if getattr(options, "qp_warm_start", False)
                           else None)
        self.rng = np.random.default_rng(getattr(options, "random_seed", 0))
        self.mu_lowest: Optional[float] = None
        self.iters_done = 0
        self.stat_value = math.nan

    # ------------------------------------------------------------------ helpers
    def _make_qp_metric(self):
        return make_qp_metric(self.H, self.opts.regularize_threshold, self.opts.regularize_max_eigenvalues)

    def _stationarity(self):
        r = stationarity(self.S, self.cache, self.metric.apply, self.qp, self.opts.opt_tol, self.b,
                         apply_each=self.metric.apply_each, implicit=self.metric.implicit,
                         warm_start=self.warm_start)
        self.ev.set_stat_value(r.value)
        self.stat_value = r.value
        return r

    def _converged(self, stat_val: float, rel_diff: float) -> Optional[TC]:
        S, o = self.S, self.opts
        if S.feasible_to_tol:
            if stat_val <= o.opt_tol:
                return TC.CONVERGED
            if rel_diff <= o.rel_tol:
                return TC.REL_TOL
            if S.f <= o.fvalquit:
                return TC.FVALQUIT
        return None

    def _bump(self) -> bool:
        """§5.3: restore the evaluator to the snapshot and advance the fallback level if allowed."""
        self.ev.restore()
        if self.level < self.maxL:
            self.level += 1
            return True
        return self.level == RANDOM and self.n_rand < self.opts.max_random_attempts

    def _report(self, k, direction, alpha, ls_evals, stat, level) -> bool:
        if self.callback is None and self.printer is None:
            return False  # nobody reads the state: not built (a few µs per iteration)
        state = IterationState(
            iteration=k, point=self.S, direction=direction, alpha=alpha, ls_evals=ls_evals,
            n_grads=stat.n_samples, stat_vec=stat.vec, stat_val=stat.value, n_qp=stat.n_qp,
            fallback_level=level, n_random=self.n_rand, qp_H=self.metric.regularized,
            get_H=self.H.state)
        halt = bool(self.callback(state)) if self.callback is not None else False
        if self.printer is not None and (k == 0 or k % self.opts.print_frequency == 0):
            self.printer.iteration(state)
        return halt

    def _notice(self, level: int, text: str) -> None:
        if self.printer is not None and self.opts.print_level >= level:
            self.printer.notice(text, level)

    # ------------------------------------------------------------------ init
    def init(self) -> None:
        """§5.1: the start of the main procedure (may raise :class:`Stop`)."""
        o = self.opts
        self.t_start = time.perf_counter()
        pt = self.ev.current
        self.F, self.G, self.MU = pt.p, pt.p_grad, pt.mu
        self.x = pt.x
        self.S = self.ev.snapshot()
        self.metric = self._make_qp_metric()
        minL, maxL = o.min_fallback_level, o.max_fallback_level
        if not self.constrained:
            minL = max(minL, QUASI_NEWTON)
            maxL = max(minL, maxL)
        self.minL, self.maxL = minL, maxL
        self.level, self.n_rand = minL, 0
        stat = self._stationarity()
        halt = self._report(0, self.b.zeros((self.n,)), 0.0, 1, stat, 0)
        code = self._converged(stat.value, math.inf)
        if code is not None:
            raise Stop(code)
        if halt:
            raise Stop(TC.USER_HALT)
        self.k = 1
        self.evals_mark = self.ev.fn_evals

    # ------------------------------------------------------------------ one pass
    def step(self) -> bool:
        """One pass of §5.2; returns True when a step was accepted (False: retry at a new level)."""
        o, b, ev = self.opts, self.b, self.ev
        changed = False
        level = self.level
        if level < QUASI_NEWTON:
            apply_M = self.metric.apply if level == STEERING else (lambda v: v)
            apply_each = self.metric.apply_each if level == STEERING else None
            implicit = self.metric.implicit if level == STEERING else None
            try:
                p, mu_new = steer(self.S, apply_M, self.steering, self.qp, b, apply_each, implicit)
            except QPSolverError as exc:
                self._notice(3, f"steering QP failed at iteration {self.k}: {exc}")
                if not o.halt_on_quadprog_error and self._bump():
                    return False
                raise Stop(TC.QP_FAILURE, exc)
            changed = mu_new != self.MU
            if changed:
                pt = ev.set_mu(mu_new)
                self.F, self.G, self.MU = pt.p, pt.p_grad, mu_new
        elif level == QUASI_NEWTON:
            # H itself (never regularized); G is often the gradient the stationarity QP multiplied
            p = -self.H.apply_each([self.G])[0]
        elif level == GRADIENT:
            p = -self.G
        else:
            p = b.from_host(self.rng.standard_normal(self.n))
            self.n_rand += 1
        p, descent, need_fallback = self._check_direction(p)
        if need_fallback:
            if self._bump():
                return False
            raise Stop(TC.NO_DESCENT_DIRECTION)

        F_prev, self.G_prev = self.F, self.G
        ls = self._line_search_descent(p) if descent else self._line_search_nondescent(p)
        self.F, self.G = ls.F, ls.G
        if ls.fail != 0:
            mu_lowest = ev.mu  # read before restoring
            can = self._bump()
            if ls.fail == BRACKETED_FAILED:
                feasible = ev.current.feasible_to_tol
                if o.halt_on_linesearch_bracket and feasible:
                    raise Stop(TC.LINESEARCH_BRACKET_FEASIBLE)
                if can:
                    return False
                raise Stop(TC.LINESEARCH_BRACKET_FEASIBLE if feasible else TC.LINESEARCH_BRACKET_INFEASIBLE)
            if ls.fail == NOT_BRACKETED:
                if self.constrained:
                    self.mu_lowest = mu_lowest
                raise Stop(TC.LINESEARCH_NOT_BRACKETED)
            if can:
                return False
            # §19.13: GRANSO records code 9 here but carries on as if the step were accepted; the 9
            # is always overwritten later (by 0/1/2/3/5 below, or by whatever ends the run).

        # ---- step accepted
        rel_diff = math.inf if (changed or F_prev == 0) else abs(self.F - F_prev) / abs(F_prev)
        self.x = ls.x
        self.S = ev.snapshot()
        stat = self._stationarity()
        ls_evals = ev.fn_evals - self.evals_mark
        self._bfgs_update(ls.alpha, p, self.G, self.G_prev)
        self.iters_done = self.k
        halt = self._report(self.k, p, ls.alpha, ls_evals, stat, level)
        self.level, self.n_rand, self.evals_mark = self.minL, 0, ev.fn_evals
        code = self._converged(stat.value, rel_diff)
        if code is not None:
            raise Stop(code)
        if halt:
            raise Stop(TC.USER_HALT)
        if o.maxclocktime < math.inf and time.perf_counter() - self.t_start > o.maxclocktime:
            raise Stop(TC.MAXCLOCKTIME)
        if self.k < o.maxit:
            self.metric = self._make_qp_metric()
        self.k += 1
        return True

    def _check_direction(self, p):
        """§6.2: is ``p`` a usable descent direction for the loop's ``G``?"""
        s = self.b.dot(self.G, p)
        if not math.isfinite(s):
            return p, False, True
        if s > 0 and self.level == RANDOM:
            return -p, True, False
        descent = s < 0
        return p, descent, (not descent) and self.opts.linesearch_nondescent_maxit == 0

    def _line_search_descent(self, p) -> LineSearchResult:
        """§8.2: weak Wolfe search, then (constrained, not bracketed) reattempts with lower ``mu``."""
        o, ev = self.opts, self.ev
        ls = weak_wolfe(ev, self.x, self.F, self.G, p, self.wolfe, self.b)
        if not (self.constrained and ls.fail == NOT_BRACKETED):
            return ls
        first = self.k < 2
        attempts = o.linesearch_reattempts_x0 if first else o.linesearch_reattempts
        factor = o.linesearch_c_mu_x0 if first else o.linesearch_c_mu
        mu_ls = self.MU
        for _ in range(attempts):
            ev.restore()
            mu_ls = factor * mu_ls
            pt = ev.set_mu(mu_ls)
            self._notice(2, f"line search restart with mu = {mu_ls:g} (iteration {self.k})")
            retry = weak_wolfe(ev, self.x, pt.p, pt.p_grad, p, self.wolfe, self.b)
            if retry.fail == 0:
                self.MU = ev.mu
                self.G_prev = pt.p_grad
                return retry
            ls = LineSearchResult(retry.alpha, retry.x, retry.F, retry.G, ls.fail)
        return ls

    def _line_search_nondescent(self, p) -> LineSearchResult:
        """§8.3: a budgeted search along a non-descent direction; any failure is ``fail = 3``."""
        ls = weak_wolfe(self.ev, self.x, self.F, self.G, p, self.wolfe, self.b,
                        limit=self.opts.linesearch_nondescent_maxit)
        if ls.fail == 0:
            return ls
        return LineSearchResult(ls.alpha, ls.x, ls.F, ls.G, LS_NONDESCENT_FAILED)

    def _bfgs_update(self, alpha, p, G, G_prev) -> None:
        """§11.1: the BFGS pair ``s = alpha p``, ``y = G − G_prev``, damping, then the update."""
        b = self.b
        s = alpha * p
        y = G - G_prev
        sty = b.dot(s, y)
        damped = False
        if self.opts.bfgs_damping > 0:  # 0 = no damping (GRANSO 1.6.4 crashes instead, §19.14)
            y, sty, damped = damp(s, y, sty, self.H.apply, self.opts.bfgs_damping, b,
                                  rayleigh_bound=self.H.rayleigh_bound())
        code = self.H.update(s, y, sty, damped)
        if code > 0:
            why = {1: "applied without scaling (the scaling factor was inf/NaN)",
                   2: "skipped (s'y <= 0)", 3: "skipped (inf/NaN in the update)"}[code]
            self._notice(2, f"BFGS update {why} at iteration {self.k}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Result:
        """Run to termination and assemble the result; never loses the best point found."""
        code, error = None, None
        try:
            self.init()
            while self.k <= self.opts.maxit:
                self.step()
            code = TC.MAXIT
        except Stop as stop:
            code, error = stop.code, stop.error
        except UserFunctionError as exc:
            if self.opts.debug_mode:
                raise
            code, error = TC.USER_FUNCTION_ERROR, exc
        except (KeyboardInterrupt, SystemExit) as exc:
            self.ev.restore()
            exc.ncvx_result = self.result(TC.USER_HALT, exc, message=(  # the work so far is not lost
                f"interrupted ({type(exc).__name__}); the last accepted iterate and the best point are kept."))
            raise
        except Exception as exc:  # an internal error: code 13 with the error attached
            if self.opts.debug_mode:
                raise
            code, error = TC.UNKNOWN_ERROR, exc
        if code in (TC.USER_FUNCTION_ERROR, TC.UNKNOWN_ERROR, TC.QP_FAILURE):
            self.ev.restore()
        return self.result(code, error)

    def result(self, code: TC, error=None, message: Optional[str] = None) -> Result:
        """Assemble the result from the evaluator's records (its current point is the last accepted one)."""
        ev = self.ev
        final = point_record(ev.current)
        sc = ev.scalings
        msg = message or termination_message(
            code, constrained=self.constrained, final_tv=final.tv,
            mu_lowest=self.mu_lowest if code == TC.LINESEARCH_NOT_BRACKETED else None)
        res = Result(
            final=final, best=ev.best, most_feasible=ev.most_feasible, termination_code=TC(code),
            message=msg, iters=self.H.counts.requests, fn_evals=ev.fn_evals,
            stat_value=ev.stat_value, mu_final=final.mu, H_final=self.H.final_state(),
            bfgs_updates=self.H.counts.freeze(), quadprog_failure_rate=self.qp.failure_rate,
            constrained=self.constrained, error=error,
            mu_lowest=self.mu_lowest if code == TC.LINESEARCH_NOT_BRACKETED and self.constrained else None,
            scalings=None if sc is None else sc.as_dict(),
        )
        if sc is not None:
            from .unscaling import with_unscaled_points
            res = with_unscaled_points(res, sc, self.opts, self.b)
        return res


def make_hessian(n: int, options, backend: Backend, H0=None, warm_start=None, H0_is_sparse=True):
    """The inverse-Hessian object the options ask for (§4 step 2)."""
    if options.limited_mem_size > 0:
        return LBFGSInverseHessian(n, options.limited_mem_size, backend, H0=H0, scaleH0=options.scaleH0,
                                   fixed_scaling=options.limited_mem_fixed_scaling, warm_start=warm_start)
    return BFGSInverseHessian(n, backend, H0=H0, scaleH0=options.scaleH0, H0_is_sparse=H0_is_sparse)
