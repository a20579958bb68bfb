"""Active-set polishing: turn an approximate QP answer into an exact one, with a KKT certificate.

GRANSO's iterates on constrained problems depend on the steering QP's answer (ALGORITHM.md §13,
§19.8), so an interior-point or ADMM answer accurate to 1e-8 is not good enough.  Polishing
guesses the active bounds from the approximate answer, fixes them *exactly* at their bound,
solves the equality-constrained QP on the free variables (Newton step from the approximate
answer, minimum-norm when ``Q`` restricted to the free variables is singular), then adjusts the
active set (bound violators become active, wrong-sign multipliers are released) for a few
rounds.  When those rounds do not certify (near-degenerate QPs: many nearly identical
gradients), an exact primal active-set method (:func:`active_set_solve`) continues from the best
polished point.  The polished answer is used only when its KKT residual (:func:`kkt_residual`)
is below the certification tolerance; otherwise the caller keeps the unpolished answer.

The QP (see :class:`~ncvx_ref.qp.interface.BoxQP`)::

    min ½ yᵀQy + qᵀy   s.t.  lb <= y <= ub,  [a·y == b]

KKT conditions, with ``z = Qy + q + λa``: ``lb <= y <= ub``, ``a·y = b``, ``z_i >= 0`` where
``y_i = lb_i``, ``z_i <= 0`` where ``y_i = ub_i`` and ``z_i = 0`` in between.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np
from scipy.linalg.lapack import dpotrf as _potrf, dpotrs as _potrs

from .interface import BoxQP

__all__ = ["KKTResidual", "PolishOutcome", "ActiveSetOutcome", "kkt_residual",
           "default_tolerance", "polish", "active_set_solve", "estimate_eq_multiplier"]


class KKTResidual(NamedTuple):
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


class PolishOutcome:
    """What :func:`polish` did: the answer to use, whether it is the certified polished one.

    ``y``; ``certified``; ``residual`` (of ``y`` as returned); ``initial_residual`` (of the
    unpolished answer: diagnostics only, so it may be given as a function, called on first
    read); ``rounds`` (active-set rounds used, 0 when the input was not polished at all);
    ``active_set_iterations`` (of the exact active-set fallback, 0: not run).
    """

    __slots__ = ("y", "certified", "residual", "_initial", "rounds", "active_set_iterations")

    def __init__(self, y: np.ndarray, certified: bool, residual: KKTResidual,
                 initial_residual, rounds: int, active_set_iterations: int = 0) -> None:
        self.y, self.certified, self.residual = y, certified, residual
        self._initial, self.rounds = initial_residual, rounds
        self.active_set_iterations = active_set_iterations

    @property
    def initial_residual(self) -> KKTResidual:
        if callable(self._initial):
            self._initial = self._initial()
        return self._initial

    def __repr__(self) -> str:
        return (f"PolishOutcome(certified={self.certified}, residual={self.residual.total:.3g}, "
                f"rounds={self.rounds}, active_set_iterations={self.active_set_iterations})")


# Python overhead dominates at k ~ 5: the hot paths call ufuncs and their ``reduce`` directly
# (no ``np.all``/``np.max`` wrappers), ``take`` instead of fancy indexing, and tuples for results.
_max = np.maximum.reduce
_min = np.minimum.reduce
_abs = np.abs
_count = np.count_nonzero


def _abs_max(x: np.ndarray) -> float:
    """``max |x|`` (0 for an empty array)."""
    return float(_max(_abs(x))) if x.size else 0.0


def _bound_scale(qp: BoxQP) -> float:
    w = max(_abs_max(qp.lb), _abs_max(qp.ub))
    return w if w > 0.0 else 1.0


def _gradient_scale(qp: BoxQP, w: float) -> float:
    Q = qp.Q
    s = max(_abs_max(qp.q), (float(_max(_abs(Q), axis=None)) if Q.size else 0.0) * w)
    return s if s > 0.0 else 1.0


class _Scales(NamedTuple):
    """The scales of :func:`kkt_residual`, computed once per QP (Python overhead matters at k ~ 5)."""

    w: float  # bound magnitude
    s: float  # gradient magnitude
    a: float  # equality coefficient magnitude (1 without equality)

    @staticmethod
    def of(qp: BoxQP) -> "_Scales":
        w = _bound_scale(qp)
        a = 1.0
        if qp.eq_coeffs is not None:
            a = _abs_max(qp.eq_coeffs) or 1.0
        return _Scales(w, _gradient_scale(qp, w), a)


_EPS = float(np.finfo(np.float64).eps)


def default_tolerance(k: int) -> float:
    """Certification tolerance for a ``k``-variable QP: 1e-12, widened by the round-off of ``Qy``."""
    return max(1e-12, 10.0 * k * _EPS)


def estimate_eq_multiplier(qp: BoxQP, y: np.ndarray, g: np.ndarray,
                           w: Optional[float] = None) -> float:
    """The ``λ`` that best explains ``g = Qy + q`` on the equality's support.

    Least squares over variables strictly inside their bounds; if all are at a bound, the
    middle of the interval of ``λ`` values that give every active multiplier the right sign.
    ``w`` is the bound scale (computed when not given).
    """
    a = qp.eq_coeffs
    if a is None:
        return 0.0
    gap = 1e-9 * (_bound_scale(qp) if w is None else w)
    support = a != 0.0
    inside = support & (y > qp.lb + gap) & (y < qp.ub - gap)
    n_inside = _count(inside)
    if n_inside:
        if n_inside == inside.size and a.flags.c_contiguous and g.flags.c_contiguous:
            # a[inside] would be a contiguous copy of a: the same BLAS dot, on the same data
            return -float(np.dot(a, g)) / float(np.dot(a, a))
        ai = a[inside]
        return -float(np.dot(ai, g[inside])) / float(np.dot(ai, ai))
    # z_i = g_i + λ a_i must be >= 0 at lb and <= 0 at ub: each gives a half-line for λ.
    ratio = -g[support] / a[support]
    pos = a[support] > 0.0
    at_lb = (y[support] <= qp.lb[support] + gap) & (qp.lb[support] < qp.ub[support])
    lower = ratio[(at_lb & pos) | (~at_lb & ~pos)]  # λ >= ratio
    upper = ratio[(at_lb & ~pos) | (~at_lb & pos)]  # λ <= ratio
    lo = float(_max(lower)) if lower.size else -np.inf
    hi = float(_min(upper)) if upper.size else np.inf
    if math.isfinite(lo) and math.isfinite(hi):
        return 0.5 * (lo + hi)
    if math.isfinite(lo):
        return lo
    if math.isfinite(hi):
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
    if y.shape != qp.q.shape or not np.isfinite(y).all():
        return KKTResidual(np.inf, np.inf, np.inf, 0.0)
    return _residual(qp, y, eq_multiplier, _Scales.of(qp))


def _residual(qp: BoxQP, y: np.ndarray, eq_multiplier: Optional[float],
              sc: _Scales) -> KKTResidual:
    """:func:`kkt_residual` of a finite ``y`` of the right shape, with the scales given."""
    w = sc.w
    lb, ub = qp.lb, qp.ub
    primal = float(_max(np.maximum(lb - y, y - ub))) / w
    if primal < 0.0:
        primal = 0.0
    g = qp.Q @ y + qp.q
    lam = 0.0
    a = qp.eq_coeffs
    if a is not None:
        primal = max(primal, abs(float(np.dot(a, y)) - qp.eq_rhs) / (w * sc.a))
        lam = estimate_eq_multiplier(qp, y, g, w) if eq_multiplier is None else float(eq_multiplier)
        g = g + lam * a
    nat = y - np.minimum(np.maximum(y - g * (w / sc.s), lb), ub)
    stat = float(_max(_abs(nat))) / w
    return KKTResidual(primal, stat, max(primal, stat), lam)


def _zero_is_exact(qp: BoxQP, sc: _Scales) -> bool:
    """``kkt_residual(qp, 0).total == 0``, with the same arithmetic minus the work ``y = 0`` saves.

    At ``y = 0`` (inside the box): ``Qy + q = q`` (up to the sign of zeros, which no test
    below sees), the bound violation is 0 and the natural residual is ``clip(-q·W/S, lb, ub)``.
    """
    lb, ub = qp.lb, qp.ub
    if _count(lb > 0.0) or _count(ub < 0.0):
        return False
    w = sc.w
    g = qp.q
    a = qp.eq_coeffs
    if a is not None:
        if abs(qp.eq_rhs) / (w * sc.a) != 0.0:
            return False
        g = g + estimate_eq_multiplier(qp, np.zeros(g.shape[0]), g, w) * a
    return float(_max(_abs(np.minimum(np.maximum(-(g * (w / sc.s)), lb), ub)))) / w == 0.0


_CHOLESKY_MIN_RCOND = 1e-12  # below this (estimated) reciprocal condition, use the eig path
_FLAT_REL = 1e-11  # eigenvalues of the reduced Q below this fraction of its scale are flat


class _ReducedKKT:
    """Null-space solver of the reduced KKT system ``[Q_ff a_f; a_fᵀ 0]`` for Newton corrections.

    With the equality, ``Z`` (the last ``f - 1`` columns of the Householder reflector that maps
    ``a_f`` to a multiple of ``e_1``) is an orthonormal basis of ``a_f``'s null space, and the
    step is ``d = d0 + Z u`` with ``d0`` restoring ``a·y = b`` and
    ``(ZᵀQ_ffZ) u = -Zᵀ(r + Q_ff d0)``.
    Working in the null space keeps the step accurate when ``Q_ff`` itself is singular but the
    reduced Hessian ``ZᵀQ_ffZ`` is not (a free variable that only the equality moves, nearly
    duplicated gradients).  The reduced Hessian is factored by Cholesky when it is safely
    positive definite, else by an eigendecomposition: Newton on its curved directions, and
    ``flat``, the descent direction of the gradient left in its flat directions (there the QP is
    linear and its minimizer lies on a bound).  Factored once per active set.
    """

    def __init__(self, Q_ff: np.ndarray, a_f: Optional[np.ndarray]) -> None:
        self.Q_ff, self.a_f = Q_ff, a_f
        self.aa = 0.0 if a_f is None else float(np.dot(a_f, a_f))
        self.v = None
        R = Q_ff
        if self.aa > 0.0:
            # H = I - β v vᵀ with H a_f = α e_1; HQH by rank-2 updates, O(f²).
            alpha = -math.copysign(math.sqrt(self.aa), a_f[0])
            v = a_f.copy()
            v[0] -= alpha
            self.beta = 2.0 / float(np.dot(v, v))
            self.v = v
            Qv = Q_ff @ v
            b = self.beta
            v_col, v_row = v[:, None], v[None, :]  # outer products by broadcasting (np.outer's values)
            HQH = (Q_ff - b * (v_col * Qv[None, :]) - b * (Qv[:, None] * v_row)
                   + (b * b * float(np.dot(v, Qv))) * (v_col * v_row))
            R = HQH[1:, 1:]
        self.chol = None
        self.eig = None
        m = R.shape[0]
        if m == 0:
            return
        diag = R.diagonal()
        if _min(diag) > 0.0:
            # LAPACK directly: scipy's wrappers cost more than the factorization at f ~ 5.
            L, info = _potrf(R, lower=1, clean=1)
            if info == 0:
                ld = L.diagonal()
                if (_min(ld) / _max(ld)) ** 2 > _CHOLESKY_MIN_RCOND:
                    self.chol = L
                    return
        self._factor_singular(R, diag)

    def _factor_singular(self, R: np.ndarray, diag: np.ndarray) -> None:
        """Factor a reduced Hessian that Cholesky cannot: an eigendecomposition (``self.eig``)."""
        lam, V = np.linalg.eigh((R + R.T) / 2)
        # Curvature below this is rounding noise of Q (or too weak to trust a Newton step on):
        # those directions are treated as linear, which the line step handles exactly anyway.
        thresh = _FLAT_REL * max(float(_max(_abs(lam), initial=0.0)),
                                 float(_max(diag, initial=0.0)))
        self.curved = lam > thresh
        self.eig = (lam, V)

    def _singular_step(self, zn: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """``(R⁺ zn on the curved directions, the part of zn in the flat ones or None)``."""
        lam, V = self.eig
        c = V.T @ zn
        cur = self.curved
        step = V[:, cur] @ (c[cur] / lam[cur])
        flat_c = c[~cur]
        if flat_c.size and _count(flat_c != 0.0):
            return step, V[:, ~cur] @ flat_c
        return step, None

    def _to_null(self, x: np.ndarray) -> np.ndarray:
        """``Zᵀx``."""
        if self.v is None:
            return x
        return (x - (self.beta * float(np.dot(self.v, x))) * self.v)[1:]

    def _from_null(self, u: np.ndarray) -> np.ndarray:
        """``Zu``."""
        if self.v is None:
            return u
        x = np.concatenate(([0.0], u))
        return x - (self.beta * float(np.dot(self.v, x))) * self.v

    def step(self, r: np.ndarray, r_eq: float) -> tuple[np.ndarray, float, Optional[np.ndarray]]:
        """``(d, dλ, flat)`` with ``[Q_ff a_f; a_fᵀ 0][d; dλ] = -[r; r_eq]`` on the curved part."""
        a_f = self.a_f
        d0 = None  # zeros without the equality
        z = r
        if self.v is not None:
            d0 = -(r_eq / self.aa) * a_f  # restores a·y = b
            z = r + self.Q_ff @ d0
        flat = None
        if self.chol is not None:
            u, _ = _potrs(self.chol, -self._to_null(z), lower=1)
            # 0 + x, not x: the same signed zeros as adding a zero vector d0
            d = (self._from_null(u) + 0.0) if d0 is None else d0 + self._from_null(u)
        elif self.eig is not None:
            step, flat_null = self._singular_step(self._to_null(z))
            step = self._from_null(step)
            d = (0.0 - step) if d0 is None else d0 - step
            if flat_null is not None:
                flat = -self._from_null(flat_null)
        else:
            d = np.zeros_like(r) if d0 is None else d0
        dlam = 0.0
        if self.v is not None:
            dlam = -float(np.dot(a_f, z + self.Q_ff @ (d - d0))) / self.aa
        return d, dlam, flat


def _candidate_active_sets(qp: BoxQP, y: np.ndarray, g: Optional[np.ndarray], lam: float,
                           w: float, s: float):
    """Initial guesses of (at_lb, at_ub): by distance to the bound, then by projection.

    ``g`` is ``Qy + q`` (None: computed here, when the third guess is reached) and ``lam`` the
    equality multiplier estimate at ``y``.
    """
    lb, ub = qp.lb, qp.ub
    fixed = lb == ub
    any_fixed = _count(fixed) > 0
    for rel in (1e-9, 1e-6):
        gap = rel * w
        at_lb, at_ub = y <= lb + gap, y >= ub - gap
        yield (at_lb | fixed, at_ub & ~fixed) if any_fixed else (at_lb, at_ub)
    if g is None:
        g = qp.Q @ y + qp.q
    if qp.eq_coeffs is not None:
        g = g + lam * qp.eq_coeffs
    proj = y - g * (w / s)
    yield (proj <= lb) | fixed, (proj >= ub) & ~fixed


def polish(qp: BoxQP, y0: np.ndarray, *, tol: Optional[float] = None,
           max_rounds: int = 6, max_active_set_iter: Optional[int] = None,
           scales: Optional[_Scales] = None) -> PolishOutcome:
    """Polish the approximate answer ``y0`` of ``qp``; certified when the KKT residual <= ``tol``.

    First a few rounds of active-set repair from the bounds ``y0`` looks active at (cheap, and
    enough for almost every QP); if they do not certify, the exact primal active-set method
    :func:`active_set_solve` continues from the best point they found.

    **Arguments:**

    - ``tol``: certification tolerance (default :func:`default_tolerance`).
    - ``max_rounds``: repair rounds per guessed active set.  Rounds that have not certified
      after a few repairs are usually cycling between two active sets; on the reference runs'
      QPs, 6 (instead of 25) halves the mean polishing time of the stationarity QPs and leaves
      the rest to the active-set method.
    - ``max_active_set_iter``: iteration cap of the active-set fallback (default
      :func:`default_active_set_iter`; 0 switches the fallback off).
    - ``scales``: the QP's ``_Scales`` when the caller has them already (internal).

    **Returns:** a :class:`PolishOutcome`: the polished answer if certified, else ``y0``
    unchanged (``certified=False``).  An input that is already exact (residual 0) is returned
    as is.
    """
    y0 = np.asarray(y0, dtype=np.float64)
    k = qp.size
    tol = default_tolerance(k) if tol is None else tol
    if y0.shape != (k,) or _count(np.isfinite(y0)) != k:
        res0 = kkt_residual(qp, y0)
        return PolishOutcome(y0, False, res0, res0, 0)
    sc = _Scales.of(qp) if scales is None else scales
    w, s = sc.w, sc.s
    a = qp.eq_coeffs
    lb, ub = qp.lb, qp.ub
    # The residuals of y0 and of the clipped yc matter only when y0 may be exact already or
    # when no round certifies: each is computed on first use.  The primal part of y0's residual
    # (computed as _residual does) tells whether it can be exact.
    primal0 = float(_max(np.maximum(lb - y0, y0 - ub))) / w
    if a is not None and not primal0 > 0.0:
        primal0 = max(primal0, abs(float(np.dot(a, y0)) - qp.eq_rhs) / (w * sc.a))
    memo0: list = [None]

    def res_0() -> KKTResidual:
        if memo0[0] is None:
            memo0[0] = _residual(qp, y0, None, sc)
        return memo0[0]

    if not primal0 > 0.0 and res_0().total == 0.0:
        return PolishOutcome(y0, True, memo0[0], memo0[0], 0)
    yc = np.minimum(np.maximum(y0, lb), ub)
    if _count(yc != y0) == 0:
        res_c = res_0
    else:
        memo_c: list = [None]

        def res_c() -> KKTResidual:
            if memo_c[0] is None:
                memo_c[0] = _residual(qp, yc, None, sc)
            return memo_c[0]
    g0 = None  # Qy + q + λa at yc: needed for λ (equality) and the third candidate only
    lam0 = 0.0
    if a is not None:
        g0 = qp.Q @ yc + qp.q
        lam0 = estimate_eq_multiplier(qp, yc, g0, w)
    best: Optional[tuple[np.ndarray, KKTResidual, int]] = None
    tried: list[tuple[np.ndarray, np.ndarray]] = []
    rounds_total = 0
    for at_lb, at_ub in _candidate_active_sets(qp, yc, g0, lam0, w, s):
        if any(_count(at_lb != l) == 0 and _count(at_ub != u) == 0 for l, u in tried):
            continue
        tried.append((at_lb, at_ub))
        y, res, rounds = _active_set_rounds(qp, yc, res_c, lam0, at_lb.copy(), at_ub.copy(),
                                            sc, tol, max_rounds)
        rounds_total += rounds
        if best is None or res.total < best[1].total:
            best = (y, res, rounds_total)
        if res.total <= tol:
            break
    assert best is not None
    y, res, rounds = best
    if res.total <= tol and (_count(y < lb) or _count(y > ub)):
        # A rounding-level excursion of a free variable: the answer must lie in the box.
        y = np.clip(y, lb, ub)
        res = _residual(qp, y, res.eq_multiplier if a is not None else None, sc)
    if res.total <= tol:
        return PolishOutcome(y, True, res, res_0, rounds)
    res0 = res_0()
    if max_active_set_iter is None:
        max_active_set_iter = default_active_set_iter(k)
    if max_active_set_iter > 0:
        # Warm start at the better of the repaired point and the library's (clipped) answer.
        start = y if res.total <= res_c().total else yc
        exact = active_set_solve(qp, start, tol=tol, max_iter=max_active_set_iter)
        if exact.certified:
            return PolishOutcome(exact.y, True, exact.residual, res_0, rounds, exact.iterations)
        return PolishOutcome(y0, res0.total <= tol, res0, res0, rounds, exact.iterations)
    return PolishOutcome(y0, res0.total <= tol, res0, res0, rounds)


def _active_set_rounds(qp: BoxQP, y_start: np.ndarray, res_start: Callable[[], KKTResidual],
                       lam: float, at_lb: np.ndarray, at_ub: np.ndarray, sc: _Scales, tol: float,
                       max_rounds: int) -> tuple[np.ndarray, KKTResidual, int]:
    """Fix the active bounds, Newton-solve the free variables, repair the active set; repeat.

    Returns the first certified round, else the best of ``y_start`` and the rounds (the first
    of equals); ``res_start()`` gives the residual of ``y_start``, needed only in that case.
    """
    a = qp.eq_coeffs
    lb, ub = qp.lb, qp.ub
    s = sc.s
    y = y_start
    rounds: list[tuple[np.ndarray, KKTResidual]] = []
    copyto = np.copyto
    for rnd in range(1, max_rounds + 1):
        y = y.copy()
        copyto(y, lb, where=at_lb)
        copyto(y, ub, where=at_ub)
        free = ~(at_lb | at_ub)
        idx = free.nonzero()[0]
        d_null = None
        if idx.size:
            lam, d_null = newton_on_free(qp, y, idx, lam)
        res = _residual(qp, y, lam if a is not None else None, sc)
        if res.total <= tol:
            return y, res, rnd
        rounds.append((y, res))
        # Repair: free variables beyond a bound become active at it; wrong-sign multipliers
        # of active bounds are released.
        z = qp.Q @ y + qp.q + (lam * a if a is not None else 0.0)
        over_lb = free & (y < lb)
        over_ub = free & (y > ub)
        dual_tol = tol * s
        release_lb = at_lb & (z < -dual_tol) & (lb < ub)
        release_ub = at_ub & (z > dual_tol) & (lb < ub)
        if _count(over_lb) or _count(over_ub) or _count(release_lb) or _count(release_ub):
            at_lb = (at_lb & ~release_lb) | over_lb
            at_ub = (at_ub & ~release_ub) | over_ub
            y = np.minimum(np.maximum(y, lb), ub)
            continue
        # Consistent active set, yet a gradient remains in the flat directions of Q_ff,
        # where the QP is linear: follow it to the nearest bound, which becomes active.
        p = None
        if d_null is not None:
            p = np.zeros_like(y)
            p[idx] = d_null
        hit = _line_step(qp, y, z, p, idx, lb, ub, sc.w)
        if hit is None:
            break
        y, blocked_lb, blocked_ub = hit
        at_lb |= blocked_lb
        at_ub |= blocked_ub
    best_y, best_res = y_start, res_start()
    for y, res in rounds:
        if res.total < best_res.total:
            best_y, best_res = y, res
    return best_y, best_res, max_rounds


def newton_on_free(qp: BoxQP, y: np.ndarray, idx: np.ndarray,
                   lam: float) -> tuple[float, Optional[np.ndarray]]:
    """Minimize the QP over the free variables ``idx`` with the others fixed, in place on ``y``.

    One Newton step of the reduced KKT system (:class:`_ReducedKKT`) plus one refinement step;
    a non-finite step is not taken.  Returns the updated equality multiplier and the first
    step's component in the flat directions of the reduced ``Q`` (None where it has none).
    """
    a = qp.eq_coeffs
    Q_rows = qp.Q.take(idx, 0)  # C-ordered, as Q[np.ix_(idx, idx)]: same BLAS kernels
    q_f = qp.q.take(idx)
    a_f = None if a is None else a.take(idx)
    kkt = _ReducedKKT(Q_rows.take(idx, 1), a_f)
    d_null = None
    for refine in range(2):
        g = Q_rows @ y + q_f
        r_eq = 0.0
        if a is not None:
            g = g + lam * a_f
            r_eq = float(np.dot(a, y)) - qp.eq_rhs
        d, dlam, flat = kkt.step(g, r_eq)
        if not (_count(np.isfinite(d)) == d.size and math.isfinite(dlam)):
            break
        y[idx] += d
        lam += dlam
        if refine == 0:
            d_null = flat
    return lam, d_null


def _line_step(qp: BoxQP, y: np.ndarray, z: np.ndarray, p: Optional[np.ndarray],
               idx: np.ndarray, lb: np.ndarray, ub: np.ndarray, w: float,
               quad: Optional[Callable[[np.ndarray], float]] = None):
    """Step along ``p`` (default: steepest descent on the free variables, keeping ``a·y``).

    Returns ``(y, newly_at_lb, newly_at_ub)`` (the step stops early at the exact minimizer
    along the direction when that comes first), or None when there is no descent direction.
    ``quad(p) = pᵀQp`` (default: with the dense ``qp.Q``; the lifted path passes its own).
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
    curv = float(quad(p)) if quad is not None else float(p @ (qp.Q @ p))
    if curv > 0.0 and -slope / curv < t_max:  # the exact minimizer along p comes first
        step = (-slope / curv) * p
        if np.max(np.abs(step)) <= _EPS * w:
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


# -- exact primal active-set method (the fallback of polish) ------------------------------------
@dataclass(frozen=True)
class ActiveSetOutcome:
    """Result of :func:`active_set_solve`.

    ``status``: ``"optimal"`` (certified), ``"max_iter"`` (iteration cap), ``"work_limit"``
    (factorization budget spent), ``"stalled"`` (optimal working set found, but rounding keeps
    the residual above ``tol``) or ``"numerical"`` (a non-finite step).
    """

    y: np.ndarray
    eq_multiplier: float
    residual: KKTResidual
    certified: bool
    iterations: int
    status: str


#: Start values within this fraction of the bound scale of a bound start at it (in the working
#: set). An interior-point answer sits about 1e-9..1e-10 off its active bounds; with a tighter
#: snap the method starts with an almost empty working set and adds one bound per iteration
#: (one factorization each): ~100 iterations on the 200-variable SVM steering QPs instead of ~30.
_START_SNAP_REL = 1e-9
_WORK_LIMIT = 2e10  # Σ f³ over the reduced factorizations: a few seconds of LAPACK at most


def default_active_set_iter(k: int) -> int:
    """Iteration cap of :func:`active_set_solve` for ``k`` variables (each bound in and out once)."""
    return 50 + 2 * k


def _restore_equality(qp: BoxQP, y: np.ndarray) -> np.ndarray:
    """Make ``a·y = b`` hold (to rounding) by moving variables inside their bounds.

    Interior variables move first, proportionally to their room, so that the bounds ``y`` is
    at (the warm start's active set) are kept; bound variables move only if that is not enough.
    """
    a = qp.eq_coeffs
    if a is None:
        return y
    for movable in (lambda yy: (yy > qp.lb) & (yy < qp.ub), lambda yy: qp.lb < qp.ub):
        r = qp.eq_rhs - float(np.dot(a, y))
        if r == 0.0:
            break
        direction = np.sign(a) * np.sign(r)  # moving y_i this way moves a·y towards b
        room = np.where(direction > 0, qp.ub - y, y - qp.lb)
        room = np.where(movable(y) & (a != 0.0), room, 0.0)
        capacity = float(np.dot(np.abs(a), room))
        if capacity <= 0.0:
            continue
        y = np.clip(y + direction * (min(1.0, abs(r) / capacity) * room), qp.lb, qp.ub)
    return y


def _keep_support_free(a: Optional[np.ndarray], movable: np.ndarray, at_lb: np.ndarray,
                       at_ub: np.ndarray, prefer: Optional[np.ndarray] = None) -> None:
    """Keep one variable of the equality's support out of the working set (in place).

    With every support variable fixed at a bound, the equality's gradient would depend on the
    bound gradients and its multiplier would be undetermined; one of them stays "free" (it
    may sit at its bound: the equality keeps it there until another one is released).
    """
    if a is None:
        return
    support = (a != 0.0) & movable
    if not support.any() or (support & ~(at_lb | at_ub)).any():
        return
    candidates = np.flatnonzero(support & prefer) if prefer is not None else np.zeros(0, int)
    if candidates.size == 0:
        candidates = np.flatnonzero(support)
    j = int(candidates[0])
    at_lb[j] = at_ub[j] = False


def active_set_solve(qp: BoxQP, y_start: np.ndarray, *, tol: Optional[float] = None,
                     max_iter: Optional[int] = None) -> ActiveSetOutcome:
    """Solve ``qp`` exactly with a primal active-set method warm-started at ``y_start``.

    The working set holds the bounds a variable is fixed at (the equality is always in it).
    Each iteration minimizes the QP over the free variables with the working-set bounds as
    equalities (:class:`_ReducedKKT`): a Newton step where the reduced ``Q`` is curved; where
    it is flat (``Q`` is PSD and usually singular) and the gradient has a component there, the
    QP is linear along that direction and unbounded on the working set, so the step follows it
    to the nearest bound.  A step blocked by a bound adds that bound; at the minimizer of the
    working set, the bound with the most wrong-signed multiplier is released, until every
    multiplier has the right sign.  Against cycling on degenerate vertices (many bounds met at
    once: duplicated gradients), after repeated zero-length steps the smallest-index rule
    (Bland) chooses the bound to release.  ``y_start`` need not be feasible: it is clipped to
    the box and the equality restored first.

    **Arguments:**

    - ``tol``: certification tolerance of :func:`kkt_residual` (default
      :func:`default_tolerance`); multipliers wrong by less than a tenth of it are accepted.
    - ``max_iter``: iteration cap (default :func:`default_active_set_iter`).

    **Returns:** an :class:`ActiveSetOutcome`; ``y`` is feasible whatever the status.
    """
    k = qp.size
    tol = default_tolerance(k) if tol is None else tol
    max_iter = default_active_set_iter(k) if max_iter is None else max_iter
    Q, q, lb, ub, a = qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs
    sc = _Scales.of(qp)
    w, s = sc.w, sc.s
    fixed = lb == ub
    movable = ~fixed
    thr = 0.1 * tol * s  # gradient size below which a multiplier sign or a flat slope is noise

    y = np.clip(np.asarray(y_start, dtype=np.float64), lb, ub)
    near_lb = y <= lb + _START_SNAP_REL * w
    near_ub = (y >= ub - _START_SNAP_REL * w) & ~near_lb
    y[near_lb] = lb[near_lb]
    y[near_ub] = ub[near_ub]
    y = _restore_equality(qp, y)
    at_lb = (y == lb) | fixed
    at_ub = (y == ub) & ~at_lb
    _keep_support_free(a, movable, at_lb, at_ub)

    lam = 0.0
    degenerate = 0  # consecutive zero-length steps
    refinements = 0
    status = "max_iter"
    work = 0.0
    it = 0
    while it < max_iter:
        it += 1
        idx = np.flatnonzero(~(at_lb | at_ub))
        g = Q @ y + q
        if idx.size:
            work += float(idx.size) ** 3
            if work > _WORK_LIMIT:
                status = "work_limit"
                break
            a_f = None if a is None else a[idx]
            Q_ff = Q[np.ix_(idx, idx)]
            r_eq = 0.0 if a is None else float(np.dot(a, y)) - qp.eq_rhs
            kkt = _ReducedKKT(Q_ff, a_f)
            if kkt.eig is not None:
                work += 8.0 * float(idx.size) ** 3  # an eigendecomposition costs ~9 Cholesky
            d, lam_new, flat = kkt.step(g[idx], r_eq)
            if not (np.all(np.isfinite(d)) and np.isfinite(lam_new)):
                status = "numerical"
                break
            along_flat = flat is not None and float(np.max(np.abs(flat))) > thr
            p = flat if along_flat else d
            if a_f is not None and np.count_nonzero(a_f) == 1:
                # The one free support variable is held by the equality (its step is zero in
                # exact arithmetic): a rounding-level step must not let its bound block.
                j = int(np.flatnonzero(a_f)[0])
                p = p.copy()
                p[j] = -r_eq / a_f[j] if not along_flat else 0.0
            yf = y[idx]
            pmax = float(np.max(np.abs(p), initial=0.0))
            # Components at rounding level relative to the step do not block it.
            with np.errstate(divide="ignore", invalid="ignore"):
                t_lb = np.where(p < -_EPS * pmax, (lb[idx] - yf) / p, np.inf)
                t_ub = np.where(p > _EPS * pmax, (ub[idx] - yf) / p, np.inf)
            t_max = max(0.0, float(min(np.min(t_lb, initial=np.inf), np.min(t_ub, initial=np.inf))))
            if along_flat:
                slope = float(np.dot(g[idx], p))
                curv = float(p @ (Q_ff @ p))
                alpha = t_max
                if curv > 0.0 and -slope / curv < t_max:
                    alpha = -slope / curv  # slightly curved after all: its exact minimizer
                if not np.isfinite(alpha):
                    status = "numerical"
                    break
            else:
                alpha = min(1.0, t_max)
                lam = lam_new
            y[idx] = np.clip(yf + alpha * p, lb[idx], ub[idx])
            if alpha == t_max:  # blocked: the bounds met join the working set
                hit_lb = np.zeros(k, dtype=bool)
                hit_ub = np.zeros(k, dtype=bool)
                hit_lb[idx] = t_lb <= alpha
                hit_ub[idx] = (t_ub <= alpha) & ~hit_lb[idx]
                y[hit_lb] = lb[hit_lb]
                y[hit_ub] = ub[hit_ub]
                at_lb |= hit_lb
                at_ub |= hit_ub
                _keep_support_free(a, movable, at_lb, at_ub, prefer=hit_lb | hit_ub)
                degenerate = degenerate + 1 if alpha == 0.0 else 0
                continue
            if along_flat:
                continue
        # y minimizes the QP on the working set: check the signs of the bound multipliers.
        g = Q @ y + q
        if a is not None:
            free_support = (a != 0.0) & ~(at_lb | at_ub)
            if free_support.any():
                af = a[free_support]
                lam = float(-np.dot(af, g[free_support]) / np.dot(af, af))
            else:
                lam = 0.0  # the support is all fixed: the equality is a constant
            z = g + lam * a
        else:
            z = g
        wrong = np.maximum(np.where(at_lb & movable, -z, 0.0), np.where(at_ub & movable, z, 0.0))
        if not np.any(wrong > thr):
            res = _residual(qp, y, lam if a is not None else None, sc)
            if res.total <= tol:
                return ActiveSetOutcome(y, lam, res, True, it, "optimal")
            refinements += 1  # another Newton step on the same working set refines y
            if refinements > 3:
                status = "stalled"
                break
            continue
        j = int(np.flatnonzero(wrong > thr)[0]) if degenerate > 2 else int(np.argmax(wrong))
        at_lb[j] = at_ub[j] = False
    res = _residual(qp, y, lam if a is not None else None, sc)
    return ActiveSetOutcome(y, lam, res, res.total <= tol, it, status)
