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
           "default_tolerance", "polish", "active_set_solve", "cold_start", "estimate_eq_multiplier"]


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


def _gradient_scale(q_abs_max: float, Q_abs_max: float, w: float) -> float:
    s = max(q_abs_max, Q_abs_max * w)
    return s if s > 0.0 else 1.0


class _Scales(NamedTuple):
    """The scales of :func:`kkt_residual`, computed once per QP (Python overhead matters at k ~ 5)."""

    w: float  # bound magnitude
    s: float  # gradient magnitude
    a: float  # equality coefficient magnitude (1 without equality)
    Q_max: float  # max |Q_ij| (0 for an empty QP): also :func:`_sign_threshold`'s, an O(k²) pass

    @staticmethod
    def of(qp: BoxQP) -> "_Scales":
        w = _bound_scale(qp)
        a = 1.0
        if qp.eq_coeffs is not None:
            a = _abs_max(qp.eq_coeffs) or 1.0
        Q = qp.Q
        Q_max = float(_max(_abs(Q), axis=None)) if Q.size else 0.0
        return _Scales(w, _gradient_scale(_abs_max(qp.q), Q_max, w), a, Q_max)


_EPS = float(np.finfo(np.float64).eps)

#: Below this (estimated) reciprocal condition, a reduced Hessian is factored by ``eigh``.
CHOLESKY_MIN_RCOND = 1e-12
#: Eigenvalues of the reduced Hessian below this fraction of its scale are flat.
FLAT_REL = 1e-11


def _kernel():
    """:mod:`ncvx_ref.qp.active_set_kernel`, imported when a QP first needs it: Numba loads only
    then (``import ncvx_ref`` stays light, and environments that only use the problem
    definitions, like the PyGRANSO benchmark venv, need no Numba)."""
    from . import active_set_kernel
    return active_set_kernel


def _c64(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float64 array (no copy when it is one): what the kernels take."""
    return np.ascontiguousarray(x, dtype=np.float64)


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

    The dense path runs the compiled twin of this class (``active_set_kernel.reduced_step``);
    this one serves the lifted path (``lifted._PivotedReducedKKT``) and is its reference.
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
        # The scale of Q_ff's rounding noise: a reduced Hessian that is all noise (Q's range
        # along a_f) is flat, however well conditioned the noise looks.
        self.q_scale = float(_max(Q_ff.diagonal()))
        diag = R.diagonal()
        if _min(diag) > 0.0:
            # LAPACK directly: scipy's wrappers cost more than the factorization at f ~ 5.
            L, info = _potrf(R, lower=1, clean=1)
            if info == 0:
                ld = L.diagonal()
                lo = float(_min(ld))
                if ((lo / _max(ld)) ** 2 > CHOLESKY_MIN_RCOND
                        and lo * lo > CHOLESKY_MIN_RCOND * self.q_scale):
                    self.chol = L
                    return
        self._factor_singular(R, diag)

    def _factor_singular(self, R: np.ndarray, diag: np.ndarray) -> None:
        """Factor a reduced Hessian that Cholesky cannot: an eigendecomposition (``self.eig``)."""
        lam, V = np.linalg.eigh((R + R.T) / 2)
        # Curvature below this is rounding noise of Q (or too weak to trust a Newton step on):
        # those directions are treated as linear, which the line step handles exactly anyway.
        thresh = FLAT_REL * max(float(_max(_abs(lam), initial=0.0)),
                                 float(_max(diag, initial=0.0)), self.q_scale)
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
        exact = active_set_solve(qp, start, tol=tol, max_iter=max_active_set_iter, scales=sc)
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

    One Newton step of the reduced KKT system plus one refinement step, compiled
    (:func:`ncvx_ref.qp.active_set_kernel.newton_on_free`); a non-finite step is not taken.
    Returns the updated equality multiplier and the first step's component in the flat
    directions of the reduced ``Q`` (None where it has none).
    """
    a = qp.eq_coeffs
    has_eq = a is not None
    lam, flat, has_flat = _kernel().newton_on_free(
        _c64(qp.Q), _c64(qp.q), _c64(a) if has_eq else np.zeros(y.shape[0]), has_eq,
        float(qp.eq_rhs) if has_eq else 0.0, y, np.ascontiguousarray(idx, dtype=np.int64),
        float(lam))
    return lam, (flat if has_flat else None)


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


#: Multiple of the rounding bound of ``z = Qy + q + λa`` below which :func:`_sign_threshold` never
#: goes (the bound itself is a worst case: 10 made maxquad's answers 5x less accurate).
_Z_ROUNDING = 1.0


def _sign_threshold(qp: BoxQP, tol: float, sc: _Scales) -> float:
    """Gradient size below which :func:`active_set_solve` does not trust a multiplier's sign.

    A tenth of the tolerance on the gradient scale with ``q``'s share along ``a`` removed, but
    not below the rounding of ``z = Qy + q + λa``, whose terms cancel, and not above a tenth of
    the tolerance on the residual's own scale ``S``.  Why not ``S`` alone: adding ``c·a`` to
    ``q`` changes nothing on the feasible set (the multiplier absorbs it), yet it can set ``S``:
    the stationarity QP's objective block carries a constant (ALGORITHM.md §10.3), often far
    larger than ``|Q|·W`` near a stationary point.  On ``S`` the method stopped at working sets
    whose objective was still 1e-14..1e-13 above the optimum where the stationarity value
    ``sqrt(yᵀQy)`` is about 1e-8 (maxquad_K5_n10's last termination QPs: ``yᵀQy`` 4e-14..1e-13
    against 3e-16..7e-16 on this scale).
    """
    s_q = sc.Q_max * sc.w
    s_free = s_q
    a = qp.eq_coeffs
    support = None if a is None else a != 0.0
    if support is not None and _count(support):
        ratio = qp.q[support] / a[support]
        centred = qp.q - 0.5 * (float(_max(ratio)) + float(_min(ratio))) * a
        s_free = max(s_free, _abs_max(centred))
    else:
        s_free = max(s_free, _abs_max(qp.q))
    rounding = _Z_ROUNDING * _EPS * (qp.size * s_q + 2.0 * sc.s)
    return min(0.1 * tol * sc.s, max(0.1 * tol * s_free, rounding))


def cold_start(qp: BoxQP) -> np.ndarray:
    """A start for :func:`active_set_solve` without a guess: a point with few free variables.

    ``0`` clipped to the box; with the equality, the one support variable that satisfies it
    alone (the others at their start) and gives the lowest objective, where one exists.  The
    method then adds variables one by one, so its factorizations stay small.  (Spreading the
    equality over its whole support instead frees all of it at once: on a 200-variable
    stationarity QP, a first factorization of all 200 variables, usually singular.)
    """
    y = np.clip(np.zeros(qp.size), qp.lb, qp.ub)
    a = qp.eq_coeffs
    if a is None:
        return y
    support = np.flatnonzero(a)
    if support.size == 0:
        return y
    a_s = a[support]
    rest = qp.eq_rhs - float(np.dot(a, y)) + a_s * y[support]  # b minus the others' share
    value = rest / a_s
    ok = (value >= qp.lb[support]) & (value <= qp.ub[support])
    if not ok.any():
        return _restore_equality(qp, y)
    # objective change of moving y_j alone from y[j] to value_j
    step = value - y[support]
    g = qp.Q[support] @ y + qp.q[support]
    change = step * g + 0.5 * step * step * qp.Q[support, support]
    change[~ok] = np.inf
    j = int(np.argmin(change))
    y[support[j]] = value[j]
    return y


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


def active_set_solve(qp: BoxQP, y_start: np.ndarray, *, tol: Optional[float] = None,
                     max_iter: Optional[int] = None, work_limit: Optional[float] = None,
                     scales: Optional[_Scales] = None) -> ActiveSetOutcome:
    """Solve ``qp`` exactly with a primal active-set method warm-started at ``y_start``.

    The working set holds the bounds a variable is fixed at (the equality is always in it).
    Each iteration minimizes the QP over the free variables with the working-set bounds as
    equalities (``active_set_kernel.reduced_step``): a Newton step where the reduced ``Q`` is curved; where
    it is flat (``Q`` is PSD and usually singular) and the gradient has a component there, the
    QP is linear along that direction and unbounded on the working set, so the step follows it
    to the nearest bound.  A step blocked by a bound adds that bound; at the minimizer of the
    working set, the bound with the most wrong-signed multiplier is released, until every
    multiplier has the right sign.  Against cycling on degenerate vertices (many bounds met at
    once: duplicated gradients), after repeated zero-length steps the smallest-index rule
    (Bland) chooses the bound to release.  ``y_start`` need not be feasible: it is clipped to
    the box and the equality restored first.  The iterations run compiled
    (:func:`ncvx_ref.qp.active_set_kernel.run_active_set`); the start and the certificate are
    prepared here.

    **Arguments:**

    - ``tol``: certification tolerance of :func:`kkt_residual` (default
      :func:`default_tolerance`); multipliers wrong by less than a tenth of it are accepted.
    - ``max_iter``: iteration cap (default :func:`default_active_set_iter`).
    - ``work_limit``: cap on ``Σ f³`` over the factorizations of ``f`` free variables (an
      eigendecomposition counts 9 times; default ``2e10``, a few seconds of LAPACK).
    - ``scales``: the QP's residual scales when the caller has them (``_Scales.of(qp)``).

    **Returns:** an :class:`ActiveSetOutcome`; ``y`` is feasible whatever the status.
    """
    k = qp.size
    tol = default_tolerance(k) if tol is None else tol
    max_iter = default_active_set_iter(k) if max_iter is None else max_iter
    Q, q, lb, ub, a = qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs
    sc = _Scales.of(qp) if scales is None else scales
    w, s = sc.w, sc.s
    fixed = lb == ub
    movable = ~fixed
    thr = _sign_threshold(qp, tol, sc)

    y = np.clip(np.asarray(y_start, dtype=np.float64), lb, ub)
    near_lb = y <= lb + _START_SNAP_REL * w
    near_ub = (y >= ub - _START_SNAP_REL * w) & ~near_lb
    y[near_lb] = lb[near_lb]
    y[near_ub] = ub[near_ub]
    y = _restore_equality(qp, y)
    at_lb = (y == lb) | fixed
    at_ub = (y == ub) & ~at_lb
    has_eq = a is not None
    a_or_zeros = _c64(a) if has_eq else np.zeros(k)
    kernel = _kernel()
    kernel.keep_support_free(a_or_zeros, has_eq, movable, at_lb, at_ub, np.zeros(k, dtype=bool))
    status, lam, it, primal, stat = kernel.run_active_set(
        _c64(Q), _c64(q), _c64(lb), _c64(ub), a_or_zeros,
        has_eq, float(qp.eq_rhs) if has_eq else 0.0, y, at_lb, at_ub, movable,
        float(tol), float(thr), float(w), float(s), float(sc.a), int(max_iter),
        float(_WORK_LIMIT if work_limit is None else work_limit))
    if status == kernel.OPTIMAL:  # certified by the kernel's own residual of this y
        res = KKTResidual(primal, stat, max(primal, stat), lam if has_eq else 0.0)
    else:
        res = _residual(qp, y, lam if has_eq else None, sc)
    return ActiveSetOutcome(y, lam, res, res.total <= tol, it, kernel.STATUS_NAMES[status])
