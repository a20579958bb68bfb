"""Active-set polishing: turn an approximate QP answer into an exact one, with a KKT certificate.

GRANSO's iterates on constrained problems depend on the steering QP's answer (ALGORITHM.md §13,
§19.8), so an interior-point or ADMM answer accurate to 1e-8 is not good enough.  Polishing
guesses the active bounds from the approximate answer, fixes them *exactly* at their bound,
solves the equality-constrained QP on the free variables (Newton step from the approximate
answer, minimum-norm when ``Q`` restricted to the free variables is singular), then adjusts the
active set (bound violators become active, wrong-sign multipliers are released) for a few
rounds.  The polished answer is used only when its KKT residual (:func:`kkt_residual`) is below
the certification tolerance; otherwise the caller keeps the unpolished answer.

The QP (see :class:`~ncvx_ref.qp.interface.BoxQP`)::

    min ½ yᵀQy + qᵀy   s.t.  lb <= y <= ub,  [a·y == b]

KKT conditions, with ``z = Qy + q + λa``: ``lb <= y <= ub``, ``a·y = b``, ``z_i >= 0`` where
``y_i = lb_i``, ``z_i <= 0`` where ``y_i = ub_i`` and ``z_i = 0`` in between.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.linalg as sla

from .interface import BoxQP

__all__ = ["KKTResidual", "PolishOutcome", "kkt_residual", "default_tolerance", "polish",
           "estimate_eq_multiplier"]


@dataclass(frozen=True)
class KKTResidual:
    """Scaled KKT residuals of an answer ``y`` (all dimensionless, 0 = exact).

    ``primal``: bound and equality violation relative to the size of the bounds;
    ``stationarity``: natural (projected-gradient) residual, which measures at once the
    gradient on free variables, the multiplier signs at active bounds and complementarity;
    ``total``: the larger of the two; ``eq_multiplier``: the ``λ`` used (0 without equality).
    """

    primal: float
    stationarity: float
    total: float
    eq_multiplier: float


@dataclass(frozen=True)
class PolishOutcome:
    """What :func:`polish` did: the answer to use, whether it is the certified polished one."""

    y: np.ndarray
    certified: bool
    residual: KKTResidual  # residual of ``y`` as returned
    initial_residual: KKTResidual  # residual of the unpolished answer
    rounds: int  # active-set rounds used (0 when the input was not polished at all)


def _bound_scale(qp: BoxQP) -> float:
    w = max(float(np.max(np.abs(qp.lb), initial=0.0)), float(np.max(np.abs(qp.ub), initial=0.0)))
    return w if w > 0.0 else 1.0


def _gradient_scale(qp: BoxQP, w: float) -> float:
    s = max(float(np.max(np.abs(qp.q), initial=0.0)), float(np.max(np.abs(qp.Q), initial=0.0)) * w)
    return s if s > 0.0 else 1.0


_EPS = float(np.finfo(np.float64).eps)


def default_tolerance(k: int) -> float:
    """Certification tolerance for a ``k``-variable QP: 1e-12, widened by the round-off of ``Qy``."""
    return max(1e-12, 10.0 * k * _EPS)


def estimate_eq_multiplier(qp: BoxQP, y: np.ndarray, g: np.ndarray) -> float:
    """The ``λ`` that best explains ``g = Qy + q`` on the equality's support.

    Least squares over variables strictly inside their bounds; if all are at a bound, the
    middle of the interval of ``λ`` values that give every active multiplier the right sign.
    """
    a = qp.eq_coeffs
    if a is None:
        return 0.0
    w = _bound_scale(qp)
    gap = 1e-9 * w
    support = a != 0.0
    inside = support & (y > qp.lb + gap) & (y < qp.ub - gap)
    if np.any(inside):
        ai = a[inside]
        return float(-np.dot(ai, g[inside]) / np.dot(ai, ai))
    # z_i = g_i + λ a_i must be >= 0 at lb and <= 0 at ub: each gives a half-line for λ.
    ratio = -g[support] / a[support]
    pos = a[support] > 0.0
    at_lb = (y[support] <= qp.lb[support] + gap) & (qp.lb[support] < qp.ub[support])
    lower = ratio[(at_lb & pos) | (~at_lb & ~pos)]  # λ >= ratio
    upper = ratio[(at_lb & ~pos) | (~at_lb & pos)]  # λ <= ratio
    lo = float(np.max(lower)) if lower.size else -np.inf
    hi = float(np.min(upper)) if upper.size else np.inf
    if np.isfinite(lo) and np.isfinite(hi):
        return 0.5 * (lo + hi)
    if np.isfinite(lo):
        return lo
    if np.isfinite(hi):
        return hi
    return 0.0


def kkt_residual(qp: BoxQP, y: np.ndarray, eq_multiplier: Optional[float] = None) -> KKTResidual:
    """Scaled KKT residual of ``y`` for ``qp`` (``λ`` estimated when not given).

    Primal part: ``max(lb - y, y - ub, 0)`` and ``|a·y - b|`` over the bound magnitude
    ``W = max(|lb|, |ub|)``.  Stationarity part: the natural residual
    ``|y - clip(y - z·W/S, lb, ub)| / W`` with ``S = max(|q|, |Q|·W)`` the gradient scale.
    Non-finite ``y`` gives ``inf``.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape != qp.q.shape or not np.all(np.isfinite(y)):
        return KKTResidual(np.inf, np.inf, np.inf, 0.0)
    w = _bound_scale(qp)
    s = _gradient_scale(qp, w)
    primal = float(np.max(np.maximum(np.maximum(qp.lb - y, y - qp.ub), 0.0), initial=0.0)) / w
    g = qp.Q @ y + qp.q
    lam = 0.0
    if qp.eq_coeffs is not None:
        a = qp.eq_coeffs
        a_scale = float(np.max(np.abs(a), initial=0.0)) or 1.0
        primal = max(primal, abs(float(np.dot(a, y)) - qp.eq_rhs) / (w * a_scale))
        lam = estimate_eq_multiplier(qp, y, g) if eq_multiplier is None else float(eq_multiplier)
        g = g + lam * a
    nat = y - np.clip(y - g * (w / s), qp.lb, qp.ub)
    stat = float(np.max(np.abs(nat), initial=0.0)) / w
    return KKTResidual(primal, stat, max(primal, stat), lam)


_CHOLESKY_MIN_RCOND = 1e-12  # below this (estimated) reciprocal condition, use the eig path
_FLAT_REL = 1e-11  # eigenvalues of the reduced Q below this fraction of its scale are flat


class _ReducedKKT:
    """Factorization of the reduced KKT matrix ``[Q_ff a_f; a_fᵀ 0]`` for Newton corrections.

    Cholesky when ``Q_ff`` is safely positive definite; otherwise an eigendecomposition of
    ``Q_ff`` projected on the equality's null space: Newton on the curved directions, and
    ``flat``, the descent direction of the gradient left in the flat directions (there the QP
    is linear and its minimizer lies on a bound).  Factored once per active set, applied to
    the Newton step and its refinement.
    """

    def __init__(self, Q_ff: np.ndarray, a_f: Optional[np.ndarray]) -> None:
        self.Q_ff, self.a_f = Q_ff, a_f
        self.chol = None
        self.eig = None
        nf = Q_ff.shape[0]
        diag = np.diag(Q_ff)
        if nf and np.min(diag) > 0.0:
            try:
                L = sla.cholesky(Q_ff, lower=True, check_finite=False)
                ld = np.diag(L)
                if (np.min(ld) / np.max(ld)) ** 2 > _CHOLESKY_MIN_RCOND:
                    self.chol = (L, True)
                    if a_f is not None:
                        self.u = sla.cho_solve(self.chol, a_f, check_finite=False)
                        self.den = float(np.dot(a_f, self.u))
                        if not self.den > 0.0:
                            self.chol = None
            except (np.linalg.LinAlgError, ValueError):
                self.chol = None
        if self.chol is not None:
            return
        H = Q_ff
        self.aa = 0.0
        if a_f is not None:
            self.aa = float(np.dot(a_f, a_f))
            if self.aa > 0.0:
                # P Q P with P = I - a aᵀ/aa, as a rank-2 update: O(f²) instead of two products.
                w = Q_ff @ a_f / self.aa
                c = float(np.dot(a_f, w)) / self.aa
                H = Q_ff - np.outer(a_f, w) - np.outer(w, a_f) + c * np.outer(a_f, a_f)
        lam, V = sla.eigh((H + H.T) / 2, driver="evr", check_finite=False)
        # Curvature below this is rounding noise of Q (or too weak to trust a Newton step on):
        # those directions are treated as linear, which the line step handles exactly anyway.
        thresh = _FLAT_REL * max(float(np.max(np.abs(lam), initial=0.0)),
                                 float(np.max(diag, initial=0.0)))
        self.curved = lam > thresh
        self.eig = (lam, V)

    def _project(self, v: np.ndarray) -> np.ndarray:
        if self.a_f is None or self.aa == 0.0:
            return v
        return v - (float(np.dot(self.a_f, v)) / self.aa) * self.a_f

    def step(self, r: np.ndarray, r_eq: float) -> tuple[np.ndarray, float, Optional[np.ndarray]]:
        """``(d, dλ, flat)`` with ``[Q_ff a_f; a_fᵀ 0][d; dλ] = -[r; r_eq]`` on the curved part."""
        a_f = self.a_f
        if self.chol is not None:
            v = sla.cho_solve(self.chol, -r, check_finite=False)
            if a_f is None:
                return v, 0.0, None
            dlam = (float(np.dot(a_f, v)) + r_eq) / self.den
            return v - dlam * self.u, dlam, None
        lam, V = self.eig
        d0 = np.zeros_like(r)
        z = r
        if a_f is not None and self.aa > 0.0:
            d0 = -(r_eq / self.aa) * a_f  # restores a·y = b
            z = r + self.Q_ff @ d0
        c = V.T @ self._project(z)
        cur = self.curved
        d = d0 - V[:, cur] @ (c[cur] / lam[cur])
        dlam = 0.0
        if a_f is not None and self.aa > 0.0:
            z_new = z + self.Q_ff @ (d - d0)
            dlam = -float(np.dot(a_f, z_new)) / self.aa
        flat_c = c[~cur]
        flat = None
        if flat_c.size and np.any(flat_c != 0.0):
            flat = self._project(-V[:, ~cur] @ flat_c)
        return d, dlam, flat


def _candidate_active_sets(qp: BoxQP, y: np.ndarray, g: np.ndarray, w: float, s: float):
    """Initial guesses of (at_lb, at_ub): by distance to the bound, then by projection."""
    fixed = qp.lb == qp.ub
    for rel in (1e-9, 1e-6):
        gap = rel * w
        yield (y <= qp.lb + gap) | fixed, (y >= qp.ub - gap) & ~fixed
    proj = y - g * (w / s)
    yield (proj <= qp.lb) | fixed, (proj >= qp.ub) & ~fixed


def polish(qp: BoxQP, y0: np.ndarray, *, tol: Optional[float] = None,
           max_rounds: int = 25) -> PolishOutcome:
    """Polish the approximate answer ``y0`` of ``qp``; certified when the KKT residual <= ``tol``.

    Returns the polished answer if certified, else ``y0`` unchanged (``certified=False``).
    An input that is already exact (residual 0) is returned as is.  ``tol`` defaults to
    :func:`default_tolerance`.
    """
    y0 = np.asarray(y0, dtype=np.float64)
    k = qp.size
    tol = default_tolerance(k) if tol is None else tol
    res0 = kkt_residual(qp, y0)
    if not np.all(np.isfinite(y0)) or y0.shape != (k,):
        return PolishOutcome(y0, False, res0, res0, 0)
    if res0.total == 0.0:
        return PolishOutcome(y0, True, res0, res0, 0)
    w = _bound_scale(qp)
    s = _gradient_scale(qp, w)
    a = qp.eq_coeffs
    yc = np.clip(y0, qp.lb, qp.ub)
    g0 = qp.Q @ yc + qp.q
    lam0 = estimate_eq_multiplier(qp, yc, g0)
    if a is not None:
        g0 = g0 + lam0 * a
    best: Optional[tuple[np.ndarray, KKTResidual, int]] = None
    seen: set[bytes] = set()
    rounds_total = 0
    for at_lb, at_ub in _candidate_active_sets(qp, yc, g0, w, s):
        key = np.packbits(at_lb).tobytes() + np.packbits(at_ub).tobytes()
        if key in seen:
            continue
        seen.add(key)
        y, res, rounds = _active_set_rounds(qp, yc, lam0, at_lb.copy(), at_ub.copy(), w, s,
                                            tol, max_rounds)
        rounds_total += rounds
        if best is None or res.total < best[1].total:
            best = (y, res, rounds_total)
        if res.total <= tol:
            break
    assert best is not None
    y, res, rounds = best
    if res.total <= tol:
        return PolishOutcome(y, True, res, res0, rounds)
    return PolishOutcome(y0, res0.total <= tol, res0, res0, rounds)


def _active_set_rounds(qp: BoxQP, y_start: np.ndarray, lam: float, at_lb: np.ndarray,
                       at_ub: np.ndarray, w: float, s: float, tol: float,
                       max_rounds: int) -> tuple[np.ndarray, KKTResidual, int]:
    """Fix the active bounds, Newton-solve the free variables, repair the active set; repeat."""
    a = qp.eq_coeffs
    lb, ub = qp.lb, qp.ub
    y = y_start.copy()
    best_y, best_res = y, kkt_residual(qp, y)
    for rnd in range(1, max_rounds + 1):
        y = y.copy()
        y[at_lb] = lb[at_lb]
        y[at_ub] = ub[at_ub]
        free = ~(at_lb | at_ub)
        idx = np.flatnonzero(free)
        d_null = None
        if idx.size:
            Q_ff = qp.Q[np.ix_(idx, idx)]
            a_f = None if a is None else a[idx]
            kkt = _ReducedKKT(Q_ff, a_f)
            for refine in range(2):  # one Newton step plus one refinement step
                g = qp.Q[idx] @ y + qp.q[idx]
                r_eq = 0.0
                if a is not None:
                    g = g + lam * a_f
                    r_eq = float(np.dot(a, y)) - qp.eq_rhs
                d, dlam, flat = kkt.step(g, r_eq)
                if not (np.all(np.isfinite(d)) and np.isfinite(dlam)):
                    break
                y[idx] += d
                lam += dlam
                if refine == 0:
                    d_null = flat
        res = kkt_residual(qp, y, lam if a is not None else None)
        if res.total < best_res.total:
            best_y, best_res = y, res
        if res.total <= tol:
            return y, res, rnd
        # Repair: free variables beyond a bound become active at it; wrong-sign multipliers
        # of active bounds are released.
        z = qp.Q @ y + qp.q + (lam * a if a is not None else 0.0)
        over_lb = free & (y < lb)
        over_ub = free & (y > ub)
        dual_tol = tol * s
        release_lb = at_lb & (z < -dual_tol) & (lb < ub)
        release_ub = at_ub & (z > dual_tol) & (lb < ub)
        if over_lb.any() or over_ub.any() or release_lb.any() or release_ub.any():
            at_lb = (at_lb & ~release_lb) | over_lb
            at_ub = (at_ub & ~release_ub) | over_ub
            y = np.clip(y, lb, ub)
            continue
        # Consistent active set, yet a gradient remains in the flat directions of Q_ff,
        # where the QP is linear: follow it to the nearest bound, which becomes active.
        p = None
        if d_null is not None:
            p = np.zeros_like(y)
            p[idx] = d_null
        hit = _line_step(qp, y, z, p, idx, lb, ub)
        if hit is None:
            break
        y, blocked_lb, blocked_ub = hit
        at_lb |= blocked_lb
        at_ub |= blocked_ub
    return best_y, best_res, max_rounds


def _line_step(qp: BoxQP, y: np.ndarray, z: np.ndarray, p: Optional[np.ndarray],
               idx: np.ndarray, lb: np.ndarray, ub: np.ndarray):
    """Step along ``p`` (default: steepest descent on the free variables, keeping ``a·y``).

    Returns ``(y, newly_at_lb, newly_at_ub)`` (the step stops early at the exact minimizer
    along the direction when that comes first), or None when there is no descent direction.
    """
    a = qp.eq_coeffs
    if p is None:
        p = np.zeros_like(y)
        p[idx] = -z[idx]
        if a is not None:
            a_f = a[idx]
            aa = float(np.dot(a_f, a_f))
            if aa > 0.0:
                p[idx] += (float(np.dot(a_f, z[idx])) / aa) * a_f
    slope = float(np.dot(z, p))
    if not slope < 0.0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lb = np.where(p < 0.0, (lb - y) / p, np.inf)
        t_ub = np.where(p > 0.0, (ub - y) / p, np.inf)
    t_max = float(min(np.min(t_lb), np.min(t_ub)))
    curv = float(p @ (qp.Q @ p))
    if curv > 0.0 and -slope / curv < t_max:  # the exact minimizer along p comes first
        step = (-slope / curv) * p
        if np.max(np.abs(step)) <= _EPS * _bound_scale(qp):
            return None  # no progress at working precision
        none = np.zeros(y.shape, dtype=bool)
        return y + step, none, none
    if not np.isfinite(t_max):
        return None
    y = y + t_max * p
    new_lb = t_lb <= t_max
    new_ub = t_ub <= t_max
    y[new_lb] = lb[new_lb]
    y[new_ub] = ub[new_ub]
    return y, new_lb, new_ub
