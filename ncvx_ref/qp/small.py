"""Small dense QPs (``k <= 8``) on Python floats: validation, closed forms, first polishing round.

On a QP of a few variables (the steering dual of a problem with few constraints, the
stationarity QP over a few gradients) the solver driver (:mod:`ncvx_ref.qp.solvers`) spent most
of its time in NumPy's per-call overhead, about a microsecond per call on arrays of 2-8 numbers:
validation, scales and closed forms some forty calls, polishing some fifty.  This module does
the same steps on Python floats:

- :func:`checked_scales`: :func:`~ncvx_ref.qp.solvers.check_qp` and the QP's scales in one pass
  (a QP that fails a check is handed to ``check_qp``, which raises its own message);
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
from itertools import product as _product
from typing import Optional

import numpy as np

from .interface import BoxQP
from .polish import (KKTResidual, PolishOutcome, _residual, _Scales, default_tolerance,
                     estimate_eq_multiplier, newton_on_free)

__all__ = ["SMALL_MAX_K", "VERTEX_MAX_K", "is_small", "checked_scales", "closed_form", "vertex",
           "polish_first_round"]

#: Above this many variables NumPy's vector calls cost less than Python loops over floats.
SMALL_MAX_K = 8
_ROUNDS = 6  # polish's default ``max_rounds``
_isfinite = math.isfinite
_INF = math.inf


def is_small(qp: BoxQP) -> bool:
    """Whether ``qp`` takes this module's path: dense, with a 1-D ``q`` of at most 8 entries."""
    q = qp.q
    return (isinstance(q, np.ndarray) and q.ndim == 1 and 0 < q.shape[0] <= SMALL_MAX_K
            and not qp.structured)


def _abs_max(values: list) -> float:
    return max(map(abs, values))


def _sum_as_numpy(values: list) -> float:
    """``np.add.reduce`` of fewer than 9 numbers: the first plus the others summed in order."""
    rest = 0.0
    for v in values[1:]:
        rest += v
    return values[0] + rest


def checked_scales(qp: BoxQP) -> _Scales:
    """:func:`~ncvx_ref.qp.solvers.check_qp` then :meth:`_Scales.of`, on floats (``is_small(qp)``).

    A QP this pass finds wrong goes to ``check_qp``, which raises its message.
    """
    Q, q, lb, ub, a = qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs
    k = q.shape[0]
    if (not isinstance(Q, np.ndarray) or Q.shape != (k, k) or lb.shape != (k,)
            or ub.shape != (k,) or (a is not None and a.shape != (k,))):
        return _checked_by_numpy(qp)
    ql, lbl, ubl, Ql = q.tolist(), lb.tolist(), ub.tolist(), Q.ravel().tolist()
    if not (all(map(_isfinite, Ql)) and all(map(_isfinite, ql)) and all(map(_isfinite, lbl))
            and all(map(_isfinite, ubl))) or any(li > ui for li, ui in zip(lbl, ubl)):
        return _checked_by_numpy(qp)
    w = max(_abs_max(lbl), _abs_max(ubl))
    if not w > 0.0:
        w = 1.0
    s = max(_abs_max(ql), _abs_max(Ql) * w)
    if not s > 0.0:
        s = 1.0
    a_scale = 1.0
    if a is not None:
        al = a.tolist()
        if not (all(map(_isfinite, al)) and _isfinite(qp.eq_rhs)):
            return _checked_by_numpy(qp)
        a_lb = [ai * li for ai, li in zip(al, lbl)]
        a_ub = [ai * ui for ai, ui in zip(al, ubl)]
        lo = _sum_as_numpy([x if x <= y else y for x, y in zip(a_lb, a_ub)])
        hi = _sum_as_numpy([x if x >= y else y for x, y in zip(a_lb, a_ub)])
        slack = default_tolerance(k) * max(1.0, abs(lo), abs(hi))
        if not (lo - slack <= qp.eq_rhs <= hi + slack):
            return _checked_by_numpy(qp)
        a_scale = _abs_max(al) or 1.0
    return _Scales(w, s, a_scale)


def _checked_by_numpy(qp: BoxQP) -> _Scales:
    from .solvers import check_qp  # the driver imports this module: import on this rare path
    check_qp(qp)  # raises the reason of what the float pass found wrong
    return _Scales.of(qp)


def _clip(x: float, lo: float, hi: float) -> float:
    """``np.clip`` of one number between array bounds (a tie returns the bound, as it does:
    the sign of a zero answer is NumPy's)."""
    x = x if x > lo else lo
    return x if x < hi else hi


def closed_form(qp: BoxQP, tol: Optional[float], sc: _Scales) -> Optional[np.ndarray]:
    """:func:`~ncvx_ref.qp.solvers.closed_form` on floats (``is_small(qp)``, checked)."""
    k = qp.q.shape[0]
    ql, lbl, ubl = qp.q.tolist(), qp.lb.tolist(), qp.ub.tolist()
    a = qp.eq_coeffs
    al = None if a is None else a.tolist()
    if _zero_is_exact(qp, ql, lbl, ubl, al, sc):
        return np.zeros(k)
    tol = default_tolerance(k) if tol is None else tol
    if a is not None:
        if k == 1 and al[0] != 0.0:
            return np.array([_clip(qp.eq_rhs / al[0], lbl[0], ubl[0])])
        return None
    Ql = qp.Q.tolist()
    if k > 1 and any(Ql[i][j] != 0.0 for i in range(k) for j in range(k) if i != j):
        return None
    yl = []
    for i, (qi, li, ui) in enumerate(zip(ql, lbl, ubl)):
        di = Ql[i][i]
        if di > 0.0:
            yl.append(_clip(-qi / di, li, ui))
        elif qi > 0.0:
            yl.append(li)
        elif qi < 0.0:
            yl.append(ui)
        else:
            yl.append(_clip(0.0, li, ui))
    y = np.array(yl)
    return y if _float_residual(qp, y, yl, lbl, ubl, ql, None, None, sc).total <= tol else None


#: up to this many variables :func:`vertex` tries each vertex of the box (at most 2**k)
VERTEX_MAX_K = 3


def vertex(qp: BoxQP, tol: Optional[float], sc: _Scales) -> Optional[np.ndarray]:
    """The answer of a QP without equality when it is a vertex of the box at which every
    multiplier has its strict sign, else None.  ``k <= VERTEX_MAX_K``, ``is_small(qp)``, checked.

    At such a vertex every feasible direction raises the objective to first order, so it is
    the unique minimizer, whatever ``Q``'s rank: the library and polishing return it too,
    as the bounds themselves (polishing puts active variables exactly at their bounds).
    "Strict" is polishing's own margin (``z_i`` beyond ``tol·s``, the dual tolerance of its
    active-set repair), far above the rounding of ``z = Qy + q`` on floats.  Most steering
    QPs of few constraints end here (nsrosen: 90 of 101, and 41 of its 45 one-sample
    stationarity QPs once :mod:`~ncvx_ref.qp.pinned` has fixed their weight).
    """
    k = qp.q.shape[0]
    if qp.eq_coeffs is not None or k > VERTEX_MAX_K:
        return None
    margin = (default_tolerance(k) if tol is None else tol) * sc.s
    Ql, ql = qp.Q.tolist(), qp.q.tolist()
    lbl, ubl = qp.lb.tolist(), qp.ub.tolist()
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


def _zero_is_exact(qp: BoxQP, ql: list, lbl: list, ubl: list, al: Optional[list],
                   sc: _Scales) -> bool:
    """:func:`~ncvx_ref.qp.polish._zero_is_exact` on floats."""
    if any(li > 0.0 for li in lbl) or any(ui < 0.0 for ui in ubl):
        return False
    w = sc.w
    g = ql
    if al is not None:
        if abs(qp.eq_rhs) / (w * sc.a) != 0.0:
            return False
        zeros = [0.0] * len(ql)
        lam = _eq_multiplier(qp, np.zeros(len(ql)), zeros, ql, lbl, ubl, al, w)
        g = [gi + lam * ai for gi, ai in zip(ql, al)]
    r = w / sc.s
    return max([abs(_clip(-(gi * r), li, ui)) for gi, li, ui in zip(g, lbl, ubl)]) / w == 0.0


def _eq_multiplier(qp: BoxQP, y: np.ndarray, yl: list, g: list, lbl: list, ubl: list,
                   al: list, w: float) -> float:
    """:func:`~ncvx_ref.qp.polish.estimate_eq_multiplier` on floats (its least-squares case,
    which takes BLAS dot products, is handed to it)."""
    gap = 1e-9 * w
    for yi, li, ui, ai in zip(yl, lbl, ubl, al):
        if ai != 0.0 and yi > li + gap and yi < ui - gap:
            return estimate_eq_multiplier(qp, y, np.array(g), w)
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
    """``max(lb - y, y - ub)`` over all entries (negative inside the box), as polish reduces it."""
    return max([max(li - yi, yi - ui) for yi, li, ui in zip(yl, lbl, ubl)])


def _float_residual(qp: BoxQP, y: np.ndarray, yl: list, lbl: list, ubl: list, ql: list,
                    al: Optional[list], eq_multiplier: Optional[float],
                    sc: _Scales) -> KKTResidual:
    """:func:`~ncvx_ref.qp.polish._residual` of ``y`` (``yl`` its floats) on floats."""
    w = sc.w
    primal = _bound_violation(yl, lbl, ubl) / w
    if primal < 0.0:
        primal = 0.0
    g = (qp.Q @ y).tolist()
    lam = 0.0
    if al is not None:
        primal = max(primal, abs(float(np.dot(qp.eq_coeffs, y)) - qp.eq_rhs) / (w * sc.a))
        g = [gi + qi for gi, qi in zip(g, ql)]
        lam = (_eq_multiplier(qp, y, yl, g, lbl, ubl, al, w) if eq_multiplier is None
               else float(eq_multiplier))
        ql = [lam * ai for ai in al]  # g + λa below, as polish adds it to Qy + q
    r = w / sc.s
    stat = 0.0
    for yi, gi, qi, li, ui in zip(yl, g, ql, lbl, ubl):
        gi = gi + qi
        t = yi - gi * r
        if t < li:
            t = li
        if t > ui:
            t = ui
        v = abs(yi - t)
        if v > stat:
            stat = v
    stat /= w
    return KKTResidual(primal, stat, max(primal, stat), lam)


def polish_first_round(qp: BoxQP, y0: np.ndarray, tol: Optional[float],
                       sc: _Scales) -> Optional[PolishOutcome]:
    """:func:`~ncvx_ref.qp.polish.polish` (default rounds) when its first guessed active set
    certifies within its repair rounds, else None (the caller runs ``polish``).

    ``y0`` is the solver's finite float64 answer of shape ``(k,)`` (``is_small(qp)``), ``tol``
    the certification tolerance (None: the default) and ``sc`` the QP's scales.  A round that
    would need polish's step along a flat direction also gives None.
    """
    k = qp.q.shape[0]
    if tol is None:
        tol = default_tolerance(k)
    Q, lb, ub, a = qp.Q, qp.lb, qp.ub, qp.eq_coeffs
    w = sc.w
    lbl, ubl, ql, y0l = lb.tolist(), ub.tolist(), qp.q.tolist(), y0.tolist()
    al = None if a is None else a.tolist()
    primal0 = _bound_violation(y0l, lbl, ubl) / w
    if a is not None and not primal0 > 0.0:
        primal0 = max(primal0, abs(float(np.dot(a, y0)) - qp.eq_rhs) / (w * sc.a))
    res0: list = [None]

    def initial_residual() -> KKTResidual:
        if res0[0] is None:
            res0[0] = _float_residual(qp, y0, y0l, lbl, ubl, ql, al, None, sc)
        return res0[0]

    if not primal0 > 0.0 and initial_residual().total == 0.0:
        return PolishOutcome(y0, True, res0[0], res0[0], 0)
    yc = np.minimum(np.maximum(y0, lb), ub)  # NumPy's clip: the same signed zeros as polish
    current = yc.tolist()
    lam = 0.0
    if a is not None:
        g0 = [gi + qi for gi, qi in zip((Q @ yc).tolist(), ql)]
        lam = _eq_multiplier(qp, yc, current, g0, lbl, ubl, al, w)
    # The first guessed active set: bounds within 1e-9 of the bound scale (fixed ones at lb).
    gap = 1e-9 * w
    at_lb = [yi <= li + gap or li == ui for yi, li, ui in zip(current, lbl, ubl)]
    at_ub = [yi >= ui - gap and li != ui for yi, li, ui in zip(current, lbl, ubl)]
    shift = al if a is not None else [0.0] * k  # polish's z = Qy + q + (λa or 0.0)
    dual_tol = tol * sc.s
    for rnd in range(1, _ROUNDS + 1):
        yl = [ui if u else (li if l else yi)
              for yi, li, ui, l, u in zip(current, lbl, ubl, at_lb, at_ub)]
        free = [i for i in range(k) if not (at_lb[i] or at_ub[i])]
        y = np.array(yl)
        if free:
            lam, _ = newton_on_free(qp, y, np.array(free), lam)
            yl = y.tolist()
        res = _float_residual(qp, y, yl, lbl, ubl, ql, al, lam if a is not None else None, sc)
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
