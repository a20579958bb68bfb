"""Small dense QPs (``k <= 8``) on Python floats: validation, closed forms, first polishing round.

On a QP of a few variables (the steering dual of a problem with few constraints, the
stationarity QP over a few gradients) the solver driver (:mod:`ncvx_ref.qp.solvers`) spent most
of its time in NumPy's per-call overhead, about a microsecond per call on arrays of 2-8 numbers:
validation, scales and closed forms some forty calls, polishing some fifty.  This module does
the same steps on Python floats.  :func:`checked` converts the QP's data to lists once
(:class:`SmallQP`, with the scales), and every later step reads those lists:

- :func:`checked`: :func:`~ncvx_ref.qp.solvers.check_qp` and the QP's scales in one pass
  (a QP that fails a check is handed to ``check_qp``, which raises its own message);
- :func:`pin`: :class:`~ncvx_ref.qp.pinned.PinnedVariable` on floats, the reduced QP's
  lists and scales built from the checked QP's (only the reduced ``q``, a new sum, can fail a
  check: such a QP goes through :func:`checked`);
- :func:`closed_form`: :func:`~ncvx_ref.qp.solvers.closed_form`'s trivial QPs;
- :func:`vertex`: for ``k <= 3`` without equality, the answer when it is a vertex of the box
  with strictly signed multipliers (unique, so it is the library path's answer too);
- :func:`polish_first_round`: :func:`~ncvx_ref.qp.polish.polish` when the first repair round of
  its first guessed active set certifies, which is almost always (None otherwise: the caller
  runs ``polish``).

Elementwise IEEE operations give the same result in Python as in a NumPy ufunc, and max, min
and counts are exact, so those move to floats; everything whose rounding depends on a BLAS or
LAPACK kernel (``Q @ y``, dot products, the reduced KKT solve of
:func:`~ncvx_ref.qp.polish.newton_on_free`) stays the same NumPy call.  The answers are the
NumPy path's, value for value (``tests/test_qp.py``).
"""
from __future__ import annotations

import math
from itertools import chain, product as _product
from operator import le as _le
from typing import Optional

import numpy as np

from .interface import BoxQP
from .polish import (KKTResidual, PolishOutcome, _c64, _kernel, _residual, _Scales,
                     default_tolerance)

__all__ = ["SMALL_MAX_K", "VERTEX_MAX_K", "SmallQP", "is_small", "checked", "pin", "put_back",
           "closed_form", "vertex", "polish_first_round"]

#: Above this many variables NumPy's vector calls cost less than Python loops over floats.
SMALL_MAX_K = 8
_ROUNDS = 6  # polish's default ``max_rounds``
_isfinite = math.isfinite
_INF = math.inf
_EPS = 2.0 ** -52
_flat = chain.from_iterable
#: ``default_tolerance(k)`` for ``k <= SMALL_MAX_K`` (index ``k``)
_TOL = tuple(default_tolerance(k) if k else 0.0 for k in range(SMALL_MAX_K + 1))
#: ``_REST[k][j]``: the indices ``0..k-1`` without ``j``, as a tuple and as the array ``take``
#: wants (built once: NumPy's array constructor is a microsecond per call)
_REST = tuple(tuple((r, np.array(r, dtype=np.intp)) for r in
                    (tuple(i for i in range(k) if i != j) for j in range(k)))
              for k in range(SMALL_MAX_K + 1))


def is_small(qp: BoxQP) -> bool:
    """Whether ``qp`` takes this module's path: dense, with a 1-D ``q`` of at most 8 entries."""
    q = qp.q
    return (isinstance(q, np.ndarray) and q.ndim == 1 and 0 < q.shape[0] <= SMALL_MAX_K
            and not qp.structured)


class SmallQP:
    """A small dense QP's data as Python floats (``Q`` as a list of rows, ``a`` None without
    equality, ``b`` the equality's right-hand side) and its scales ``sc``: converted once per
    QP, read by every step of this module.

    ``qp`` is the QP itself (:class:`BoxQP`), for the NumPy calls that stay.  The reduced QP
    of :func:`pin` builds its arrays only when a step reads ``qp``: the closed forms and the
    vertex test, which answer most such QPs, do not.
    """

    __slots__ = ("_qp", "_pinned", "k", "Q", "q", "lb", "ub", "a", "b", "sc")

    def __init__(self, qp: Optional[BoxQP], Q: list, q: list, lb: list, ub: list,
                 a: Optional[list], b: float, sc: _Scales, pinned=None) -> None:
        self._qp, self._pinned, self.k, self.Q, self.q = qp, pinned, len(q), Q, q
        self.lb, self.ub, self.a, self.b, self.sc = lb, ub, a, b, sc

    @classmethod
    def of(cls, qp: BoxQP, sc: _Scales) -> "SmallQP":
        """The floats of a QP already checked, with its scales ``sc`` (no check here)."""
        a = qp.eq_coeffs
        return cls(qp, qp.Q.tolist(), qp.q.tolist(), qp.lb.tolist(), qp.ub.tolist(),
                   None if a is None else a.tolist(), qp.eq_rhs, sc)

    @property
    def qp(self) -> BoxQP:
        qp = self._qp
        if qp is None:  # pin's reduced QP: PinnedVariable.of's arrays, from the full QP's
            full, take = self._pinned
            full = full.qp
            Q, guess = full.Q, full.guess
            qp = self._qp = BoxQP(Q.take(take, 0).take(take, 1), np.array(self.q),
                                  full.lb.take(take), full.ub.take(take), kind=full.kind,
                                  guess=None if guess is None else guess.take(take))
        return qp


def _sum_band(values: list) -> float:
    """A bound on how far two sums of ``values`` in different orders can be apart (each is
    within ``(k-1)·eps/2·Σ|v|`` of the exact sum), doubled for the comparisons' own rounding.

    NumPy's order for a short vector depends on its version and the length (2.4.6: one
    accumulator from 0 below 8 entries, pairwise from 8), so the float check does not copy
    it: near a decision boundary it asks NumPy instead.
    """
    return 2.0 * len(values) * _EPS * sum(map(abs, values))


def _scales(Ql: list, ql: list, lbl: list, ubl: list, al: Optional[list]) -> _Scales:
    """:meth:`_Scales.of` on floats, for ``lb <= ub`` (checked).

    Maxima of absolute values are exact, in any order; with ``lb <= ub`` the largest
    ``|lb_i|, |ub_i|`` is ``max(max ub, -min lb)``.  Loops: at this size they cost less than
    ``max(map(abs, ...))``.
    """
    w = -min(lbl)
    m = max(ubl)
    if m > w:
        w = m
    if not w > 0.0:
        w = 1.0
    s = 0.0
    for v in ql:
        v = abs(v)
        if v > s:
            s = v
    t = 0.0
    for row in Ql:
        for v in row:
            v = abs(v)
            if v > t:
                t = v
    if t * w > s:
        s = t * w
    if not s > 0.0:
        s = 1.0
    return _Scales(w, s, 1.0 if al is None else (max(map(abs, al)) or 1.0), t)


def checked(qp: BoxQP) -> SmallQP:
    """:func:`~ncvx_ref.qp.solvers.check_qp`, then the QP's floats and scales (``is_small(qp)``).

    A QP this pass finds wrong goes to ``check_qp``, which raises its message.
    """
    # qp.Q without its descriptor's call: a small QP is dense (is_small), its Q is stored
    Q, q, lb, ub, a = qp.__dict__["_Q"], qp.q, qp.lb, qp.ub, qp.eq_coeffs
    k = q.shape[0]
    if (not isinstance(Q, np.ndarray) or Q.shape != (k, k) or lb.shape != (k,)
            or ub.shape != (k,) or (a is not None and a.shape != (k,))):
        return _checked_by_numpy(qp)
    Ql, ql, lbl, ubl = Q.tolist(), q.tolist(), lb.tolist(), ub.tolist()
    # A sum with an inf or NaN term is not finite: one test for the common case (a finite
    # QP whose sum overflows takes the test per entry, which it passes)
    if not _isfinite(sum(ql) + sum(lbl) + sum(ubl) + sum(map(sum, Ql))) and not (
            all(map(_isfinite, _flat(Ql))) and all(map(_isfinite, ql))
            and all(map(_isfinite, lbl)) and all(map(_isfinite, ubl))):
        return _checked_by_numpy(qp)
    if not all(map(_le, lbl, ubl)):
        return _checked_by_numpy(qp)
    al = None
    b = qp.eq_rhs
    if a is not None:
        al = a.tolist()
        if not (all(map(_isfinite, al)) and _isfinite(b)):
            return _checked_by_numpy(qp)
        a_lb = [ai * li for ai, li in zip(al, lbl)]
        a_ub = [ai * ui for ai, ui in zip(al, ubl)]
        lows = [x if x <= y else y for x, y in zip(a_lb, a_ub)]
        highs = [x if x >= y else y for x, y in zip(a_lb, a_ub)]
        lo, hi = sum(lows), sum(highs)
        slack = _TOL[k] * max(1.0, abs(lo), abs(hi))
        # check_qp's test with its sums in NumPy's order; within the band its outcome could
        # differ from this one's, so NumPy decides there
        band = _sum_band(lows) + _sum_band(highs)
        if not (lo - slack + band <= b <= hi + slack - band):
            return _checked_by_numpy(qp)
    return SmallQP(qp, Ql, ql, lbl, ubl, al, b, _scales(Ql, ql, lbl, ubl, al))


def _checked_by_numpy(qp: BoxQP) -> SmallQP:
    from .solvers import check_qp  # the driver imports this module: import on this rare path
    check_qp(qp)  # raises the reason of what the float pass found wrong
    return SmallQP.of(qp, _Scales.of(qp))


def pin(f: SmallQP) -> Optional[tuple[int, float, SmallQP]]:
    """:meth:`PinnedVariable.of <ncvx_ref.qp.pinned.PinnedVariable.of>` of a checked QP on
    floats: ``(index, value, reduced)``, else None.  :func:`put_back` makes the reduced QP's
    answer the full one's.

    The reduced QP is built from the checked one's data: its ``Q``, bounds and their order
    hold already, so only its ``q`` (``q_i + Q_ij·value``, which can overflow) is checked.
    """
    al = f.a
    k = f.k
    if al is None or k < 2:
        return None
    j = -1
    for i, ai in enumerate(al):
        if ai != 0.0:
            if j >= 0:
                return None  # two nonzero coefficients
            j = i
    if j < 0:
        return None
    Ql, lbl, ubl = f.Q, f.lb, f.ub
    value = min(max(f.b / al[j], lbl[j]), ubl[j])
    v = float(value)
    rest, take = _REST[k][j]
    ql = [f.q[i] + Ql[i][j] * v for i in rest]  # NumPy's q + Q[:, j] * value, entry by entry
    Qr = [[Ql[r][c] for c in rest] for r in rest]
    lr = [lbl[i] for i in rest]
    ur = [ubl[i] for i in rest]
    reduced = SmallQP(None, Qr, ql, lr, ur, None, 0.0, None, (f, take))
    if not _isfinite(sum(ql)) and not all(map(_isfinite, ql)):
        return j, value, checked(reduced.qp)  # raises check_qp's message
    reduced.sc = _scales(Qr, ql, lr, ur, None)
    return j, value, reduced


def put_back(y_reduced: np.ndarray, index: int, value: float) -> np.ndarray:
    """:meth:`PinnedVariable.expand <ncvx_ref.qp.pinned.PinnedVariable.expand>`: the reduced
    answer with the fixed value put back at ``index``."""
    yl = y_reduced.tolist()
    yl.insert(index, value)
    return np.array(yl)


def _clip(x: float, lo: float, hi: float) -> float:
    """``np.clip`` of one number between array bounds (a tie returns the bound, as it does:
    the sign of a zero answer is NumPy's)."""
    x = x if x > lo else lo
    return x if x < hi else hi


def closed_form(f: SmallQP, tol: Optional[float]) -> Optional[np.ndarray]:
    """:func:`~ncvx_ref.qp.solvers.closed_form` on floats (``f`` checked)."""
    k = f.k
    if _zero_is_exact(f):
        return np.zeros(k)
    tol = _TOL[k] if tol is None else tol
    al = f.a
    if al is not None:
        if k == 1 and al[0] != 0.0:
            return np.array([_clip(f.b / al[0], f.lb[0], f.ub[0])])
        return None
    Ql = f.Q
    if k > 1 and any(any(row[:i]) or any(row[i + 1:]) for i, row in enumerate(Ql)):
        return None  # an off-diagonal entry is nonzero (NaN is excluded: checked)
    yl = []
    for i, (row, qi, li, ui) in enumerate(zip(Ql, f.q, f.lb, f.ub)):
        di = row[i]
        if di > 0.0:
            yl.append(_clip(-qi / di, li, ui))
        elif qi > 0.0:
            yl.append(li)
        elif qi < 0.0:
            yl.append(ui)
        else:
            yl.append(_clip(0.0, li, ui))
    return np.array(yl) if _separable_stationarity(f, yl) <= tol else None


#: up to this many variables :func:`vertex` tries each vertex of the box (at most 2**k)
VERTEX_MAX_K = 3


def vertex(f: SmallQP, tol: Optional[float]) -> Optional[np.ndarray]:
    """The answer of a QP without equality when it is a vertex of the box at which every
    multiplier has its strict sign, else None.  ``k <= VERTEX_MAX_K``, ``f`` checked.

    At such a vertex every feasible direction raises the objective to first order, so it is
    the unique minimizer, whatever ``Q``'s rank: the library and polishing return it too,
    as the bounds themselves (polishing puts active variables exactly at their bounds).
    "Strict" is polishing's own margin (``z_i`` beyond ``tol·s``, the dual tolerance of its
    active-set repair), far above the rounding of ``z = Qy + q`` on floats.  Most steering
    QPs of few constraints end here (nsrosen: 90 of 101, and 41 of its 45 one-sample
    stationarity QPs once :mod:`~ncvx_ref.qp.pinned` has fixed their weight).
    """
    k = f.k
    if f.a is not None or k > VERTEX_MAX_K:
        return None
    margin = (_TOL[k] if tol is None else tol) * f.sc.s
    Ql, ql, lbl, ubl = f.Q, f.q, f.lb, f.ub
    choices = [(li,) if li == ui else (li, ui) for li, ui in zip(lbl, ubl)]
    for yl in _product(*choices):
        for row, qi, yi, li, ui in zip(Ql, ql, yl, lbl, ubl):
            zi = qi
            for Qij, yj in zip(row, yl):
                zi += Qij * yj
            if li != ui and not (zi > margin if yi == li else zi < -margin):
                break
        else:
            return np.array(yl)
    return None


def _zero_is_exact(f: SmallQP) -> bool:
    """:func:`~ncvx_ref.qp.polish._zero_is_exact` on floats."""
    lbl, ubl = f.lb, f.ub
    if max(lbl) > 0.0 or min(ubl) < 0.0:
        return False
    sc = f.sc
    w = sc.w
    g = ql = f.q
    al = f.a
    if al is not None:
        if abs(f.b) / (w * sc.a) != 0.0:
            return False
        zeros = [0.0] * len(ql)
        lam = _eq_multiplier(f, zeros, ql, w)
        g = [gi + lam * ai for gi, ai in zip(ql, al)]
    r = w / sc.s
    # max_i |clip(-g_i·r, lb_i, ub_i)| / w == 0 holds when it holds for each i (division by
    # w > 0 is monotone): stop at the first entry that fails
    for gi, li, ui in zip(g, lbl, ubl):
        t = -(gi * r)
        t = t if t > li else li  # _clip, inline
        t = t if t < ui else ui
        if abs(t) / w != 0.0:
            return False
    return True


def _eq_multiplier(f: SmallQP, yl: list, g: list, w: float) -> float:
    """:func:`~ncvx_ref.qp.polish.estimate_eq_multiplier` of ``y`` (``yl`` its floats) and
    ``g = Qy + q`` on floats, but for its least-squares case's two BLAS dot products: those
    are the same ``np.dot`` calls, on contiguous arrays of the same values."""
    gap = 1e-9 * w
    lbl, ubl, al = f.lb, f.ub, f.a
    inside = [i for i, (yi, li, ui, ai) in enumerate(zip(yl, lbl, ubl, al))
              if ai != 0.0 and yi > li + gap and yi < ui - gap]
    if inside:
        a_in = np.array([al[i] for i in inside])
        return -float(np.dot(a_in, np.array([g[i] for i in inside]))) / float(np.dot(a_in, a_in))
    # Every support variable sits at a bound: z_i = g_i + λ a_i must have the sign of its bound.
    lo, hi = -_INF, _INF
    for yi, li, ui, ai, gi in zip(yl, lbl, ubl, al, g):
        if ai == 0.0:
            continue
        ratio = -gi / ai
        if (yi <= li + gap and li < ui) == (ai > 0.0):
            if ratio > lo:
                lo = ratio  # λ >= ratio
        elif ratio < hi:
            hi = ratio  # λ <= ratio
    if _isfinite(lo) and _isfinite(hi):
        return 0.5 * (lo + hi)
    if _isfinite(lo):
        return lo
    if _isfinite(hi):
        return hi
    return 0.0


def _bound_violation(yl: list, lbl: list, ubl: list) -> float:
    """``max(lb - y, y - ub)`` over all entries (negative inside the box), as polish reduces it
    (``max``'s choice among equal values, as a loop)."""
    v = -_INF
    for yi, li, ui in zip(yl, lbl, ubl):
        d = li - yi
        e = yi - ui
        if e > d:
            d = e
        if d > v:
            v = d
    return v


def _separable_stationarity(f: SmallQP, yl: list) -> float:
    """``_float_residual(f, y, yl, None).total`` for a diagonal ``Q`` (no equality) and ``y``
    in the box (its primal part is 0).

    ``(Qy)_i`` is then ``Q_ii·y_i`` plus exact zeros: one rounding, whatever order or kernel
    BLAS sums in, so it is computed here without ``Q @ y``.  Only the sign of a zero sum
    could differ, and the residual's absolute values do not see it.
    """
    sc = f.sc
    g = [row[i] * yi + qi for i, (row, yi, qi) in enumerate(zip(f.Q, yl, f.q))]
    return _projected_step(yl, g, f.lb, f.ub, sc.w / sc.s) / sc.w


def _projected_step(yl: list, g: list, lbl: list, ubl: list, r: float) -> float:
    """``max_i |y_i - clip(y_i - g_i·r, lb_i, ub_i)|``: the stationarity part of polish's
    residual (before its division by ``w``), with ``g`` the gradient ``z``."""
    stat = 0.0
    for yi, gi, li, ui in zip(yl, g, lbl, ubl):
        t = yi - gi * r
        if t < li:
            t = li
        if t > ui:
            t = ui
        v = abs(yi - t)
        if v > stat:
            stat = v
    return stat


def _float_residual(f: SmallQP, y: np.ndarray, yl: list,
                    eq_multiplier: Optional[float]) -> KKTResidual:
    """:func:`~ncvx_ref.qp.polish._residual` of ``y`` (``yl`` its floats) on floats."""
    sc = f.sc
    w = sc.w
    lbl, ubl, ql, al = f.lb, f.ub, f.q, f.a
    primal = _bound_violation(yl, lbl, ubl) / w
    if primal < 0.0:
        primal = 0.0
    qp = f.qp
    g = (qp.Q @ y).tolist()
    lam = 0.0
    if al is not None:
        primal = max(primal, abs(float(np.dot(qp.eq_coeffs, y)) - qp.eq_rhs) / (w * sc.a))
        g = [gi + qi for gi, qi in zip(g, ql)]
        lam = (_eq_multiplier(f, yl, g, w) if eq_multiplier is None
               else float(eq_multiplier))
        ql = [lam * ai for ai in al]  # g + λa below, as polish adds it to Qy + q
    z = [gi + qi for gi, qi in zip(g, ql)]
    stat = _projected_step(yl, z, lbl, ubl, w / sc.s) / w
    return KKTResidual(primal, stat, max(primal, stat), lam)


def polish_first_round(f: SmallQP, y0: np.ndarray, tol: Optional[float]) -> Optional[PolishOutcome]:
    """:func:`~ncvx_ref.qp.polish.polish` (default rounds) when its first guessed active set
    certifies within its repair rounds, else None (the caller runs ``polish``).

    ``y0`` is the solver's finite float64 answer of shape ``(k,)`` for the checked QP ``f``,
    ``tol`` the certification tolerance (None: the default).  A round that would need
    polish's step along a flat direction also gives None.
    """
    k = f.k
    if tol is None:
        tol = _TOL[k]
    qp, sc = f.qp, f.sc
    Q, lb, ub, a = qp.Q, qp.lb, qp.ub, qp.eq_coeffs
    w = sc.w
    lbl, ubl, ql, al, y0l = f.lb, f.ub, f.q, f.a, y0.tolist()
    primal0 = _bound_violation(y0l, lbl, ubl) / w
    if a is not None and not primal0 > 0.0:
        primal0 = max(primal0, abs(float(np.dot(a, y0)) - qp.eq_rhs) / (w * sc.a))
    res0: list = [None]

    def initial_residual() -> KKTResidual:
        if res0[0] is None:
            res0[0] = _float_residual(f, y0, y0l, None)
        return res0[0]

    if not primal0 > 0.0 and initial_residual().total == 0.0:
        return PolishOutcome(y0, True, res0[0], res0[0], 0)
    yc = np.minimum(np.maximum(y0, lb), ub)  # NumPy's clip: the same signed zeros as polish
    current = yc.tolist()
    lam = 0.0
    if a is not None:
        g0 = [gi + qi for gi, qi in zip((Q @ yc).tolist(), ql)]
        lam = _eq_multiplier(f, current, g0, w)
    # The first guessed active set: bounds within 1e-9 of the bound scale (fixed ones at lb).
    gap = 1e-9 * w
    at_lb = [yi <= li + gap or li == ui for yi, li, ui in zip(current, lbl, ubl)]
    at_ub = [yi >= ui - gap and li != ui for yi, li, ui in zip(current, lbl, ubl)]
    shift = al if a is not None else [0.0] * k  # polish's z = Qy + q + (λa or 0.0)
    dual_tol = tol * sc.s
    # newton_on_free's compiled kernel, its array arguments converted once for all rounds
    newton = _kernel().newton_on_free
    has_eq = a is not None
    Qc, qc = _c64(Q), _c64(qp.q)
    ac, b = (_c64(a), float(qp.eq_rhs)) if has_eq else (np.zeros(k), 0.0)
    for rnd in range(1, _ROUNDS + 1):
        yl = [ui if u else (li if l else yi)
              for yi, li, ui, l, u in zip(current, lbl, ubl, at_lb, at_ub)]
        free = [i for i in range(k) if not (at_lb[i] or at_ub[i])]
        y = np.array(yl)
        if free:
            lam = newton(Qc, qc, ac, has_eq, b, y, np.array(free, dtype=np.int64), lam)[0]
            yl = y.tolist()
        res = _float_residual(f, y, yl, lam if a is not None else None)
        if res.total <= tol:
            break
        z = [(gi + qi) + (lam * si if a is not None else 0.0)
             for gi, qi, si in zip((Q @ y).tolist(), ql, shift)]
        if not _repair(yl, z, at_lb, at_ub, lbl, ubl, dual_tol):
            return None  # polish would step along a flat direction of Q
        current = np.minimum(np.maximum(y, lb), ub).tolist()
    else:
        return None
    if any(yi < li or yi > ui for yi, li, ui in zip(yl, lbl, ubl)):
        # A rounding-level excursion of a free variable: the answer must lie in the box.
        y = np.clip(y, lb, ub)
        res = _residual(qp, y, res.eq_multiplier if a is not None else None, sc)
        if not res.total <= tol:
            return None
    return PolishOutcome(y, True, res, initial_residual, rnd)


def _repair(yl: list, z: list, at_lb: list, at_ub: list, lbl: list, ubl: list,
            dual_tol: float) -> bool:
    """polish's repair of the active set, in place: free variables beyond a bound become
    active at it, bounds whose multiplier ``z_i`` has the wrong sign are released.  Returns
    whether anything changed."""
    repaired = False
    for i, (yi, zi, li, ui) in enumerate(zip(yl, z, lbl, ubl)):
        if not (at_lb[i] or at_ub[i]):
            if yi < li:
                at_lb[i] = repaired = True
            elif yi > ui:
                at_ub[i] = repaired = True
            continue
        if at_lb[i] and zi < -dual_tol and li < ui:
            at_lb[i], repaired = False, True
        if at_ub[i] and zi > dual_tol and li < ui:
            at_ub[i], repaired = False, True
    return repaired
