"""The iteration loop of the exact active-set method, compiled with Numba.

:func:`ncvx_ref.qp.polish.active_set_solve` prepares the start (clipped, snapped to nearby
bounds, equality restored, one support variable kept free) and certifies the answer; this
module runs the iterations in between.  It is the method of docs/qp_solvers.md ("The exact
active-set method") step for step.  Its NumPy version made some 60 NumPy calls per iteration on
arrays of tens of numbers, so on the degenerate stationarity QPs of small problems Python
overhead, not arithmetic, set the cost of the whole solve (sphere_n30: half of its run time).

Why a kernel and not a QP library: the polishing relies on this method's working-set rules
(warm start from an almost optimal point, one equality support variable kept free, flat
directions followed to a bound, Bland's rule after degenerate steps), which no library exposes.

Compiled with ``error_model="numpy"``: a division by zero gives ``inf``/``nan`` as in NumPy (the
loop's finiteness checks handle it), not Python's ``ZeroDivisionError``.

Written as plain loops on purpose: Numba compiles a loop in a fraction of the time it takes for
an array expression, ``np.dot`` or a slice assignment (about 0.3, 0.8 and 3 s each), and the
kernel is compiled once per installation (``cache=True``).  LAPACK is called for the two
factorizations only (``np.linalg.cholesky``/``eigh``), as the NumPy version did.

Conventions of :func:`run_active_set`: ``a`` holds the equality's coefficients (zeros and
``has_eq = False`` without one); ``y`` and the working set ``at_lb``/``at_ub`` are updated in
place.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# The thresholds of the NumPy reference (polish._ReducedKKT), shared.
from .polish import CHOLESKY_MIN_RCOND, FLAT_REL

#: Status codes of :func:`run_active_set`, by index the names ``ActiveSetOutcome.status`` uses.
STATUS_NAMES = ("optimal", "max_iter", "work_limit", "stalled", "numerical")
OPTIMAL, MAX_ITER, WORK_LIMIT, STALLED, NUMERICAL = range(5)

_EPS = float(np.finfo(np.float64).eps)


@njit(cache=True, error_model="numpy")
def _dot(x, y):
    t = 0.0
    for i in range(x.shape[0]):
        t += x[i] * y[i]
    return t


@njit(cache=True, error_model="numpy")
def _gradient(Q, y, q):
    """``Qy + q`` (rows of a C-ordered ``Q``): :func:`_free_gradient` of every row."""
    k = y.shape[0]
    return _free_gradient(Q, y, q, np.arange(k), k)


@njit(cache=True, error_model="numpy")
def residual_parts(Q, q, lb, ub, a, has_eq, b, y, lam, w, s, sa):
    """``(primal, stationarity)`` of ``kkt_residual(qp, y, lam)``, with the scales ``w, s, sa``
    of ``polish._Scales``."""
    k = y.shape[0]
    primal = 0.0
    for i in range(k):
        primal = max(primal, lb[i] - y[i], y[i] - ub[i])
    primal /= w
    g = _gradient(Q, y, q)
    if has_eq:
        primal = max(primal, abs(_dot(a, y) - b) / (w * sa))
        for i in range(k):
            g[i] += lam * a[i]
    stat = 0.0
    scale = w / s
    for i in range(k):
        stat = max(stat, abs(y[i] - min(max(y[i] - g[i] * scale, lb[i]), ub[i])))
    return primal, stat / w


@njit(cache=True, error_model="numpy")
def keep_support_free(a, has_eq, movable, at_lb, at_ub, prefer):
    """Keep one variable of the equality's support out of the working set (in place).

    With every support variable at a bound the equality's multiplier is undetermined; the first
    support variable in ``prefer`` (else the first one) is released.
    """
    if not has_eq:
        return
    first = -1
    first_preferred = -1
    for i in range(a.shape[0]):
        if a[i] != 0.0 and movable[i]:
            if not (at_lb[i] or at_ub[i]):
                return  # a support variable is free already
            if first < 0:
                first = i
            if prefer[i] and first_preferred < 0:
                first_preferred = i
    if first < 0:
        return
    j = first_preferred if first_preferred >= 0 else first
    at_lb[j] = False
    at_ub[j] = False


@njit(cache=True, error_model="numpy")
def _reflect(v, beta, x):
    """``Hx = x - beta (v·x) v``: ``Zᵀx`` is its tail; ``Zu`` is ``H(0, u)``."""
    t = beta * _dot(v, x)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = x[i] - t * v[i]
    return out


@njit(cache=True, error_model="numpy")
def _from_null(v, beta, u):
    """``Zu``."""
    x = np.zeros(u.shape[0] + 1)
    for i in range(u.shape[0]):
        x[i + 1] = u[i]
    return _reflect(v, beta, x)


@njit(cache=True, error_model="numpy")
def _householder_reduced(Q_ff, a_f):
    """``(v, beta, R)``: ``H = I - beta v vᵀ`` maps ``a_f`` to a multiple of ``e_1``; ``R = (HQH)[1:, 1:]``."""
    f = a_f.shape[0]
    alpha = -math.copysign(math.sqrt(_dot(a_f, a_f)), a_f[0])
    v = np.empty(f)
    for i in range(f):
        v[i] = a_f[i]
    v[0] -= alpha
    beta = 2.0 / _dot(v, v)
    Qv = np.empty(f)
    for i in range(f):
        Qv[i] = _dot(Q_ff[i], v)
    c = beta * beta * _dot(v, Qv)
    R = np.empty((f - 1, f - 1))
    for i in range(1, f):
        for j in range(1, f):
            R[i - 1, j - 1] = (Q_ff[i, j] - beta * (v[i] * Qv[j]) - beta * (Qv[i] * v[j])
                               + c * (v[i] * v[j]))
    return v, beta, R


@njit(cache=True, error_model="numpy")
def _cholesky(R, q_scale):
    """``(L, ok)``: the Cholesky factor of ``R`` when ``R`` is safely positive definite.

    Safely: its estimated reciprocal condition, and its smallest pivot relative to ``q_scale``
    (the size of ``Q_ff``, whose rounding noise a reduced Hessian may be made of), exceed
    :data:`CHOLESKY_MIN_RCOND`.
    """
    m = R.shape[0]
    for i in range(m):
        if not R[i, i] > 0.0:
            return np.zeros((0, 0)), False
    try:
        L = np.linalg.cholesky(R)
    except Exception:  # noqa: BLE001 - numba raises LinAlgError: not positive definite
        return np.zeros((0, 0)), False
    lo = np.inf
    hi = 0.0
    for i in range(m):
        lo = min(lo, L[i, i])
        hi = max(hi, L[i, i])
    if not ((lo / hi) ** 2 > CHOLESKY_MIN_RCOND and lo * lo > CHOLESKY_MIN_RCOND * q_scale):
        return np.zeros((0, 0)), False
    return L, True


@njit(cache=True, error_model="numpy")
def _cholesky_solve(L, r):
    """``x`` with ``L Lᵀ x = r``."""
    m = r.shape[0]
    x = np.empty(m)
    for i in range(m):
        t = r[i]
        for j in range(i):
            t -= L[i, j] * x[j]
        x[i] = t / L[i, i]
    for i in range(m - 1, -1, -1):
        t = x[i]
        for j in range(i + 1, m):
            t -= L[j, i] * x[j]
        x[i] = t / L[i, i]
    return x


@njit(cache=True, error_model="numpy")
def _free_part(Q, a, has_eq, idx, nf):
    """``(Q_ff, a_f)``: ``Q`` and the equality's coefficients restricted to the variables
    ``idx[:nf]`` (``a_f`` zeros without the equality)."""
    Q_ff = np.empty((nf, nf))
    a_f = np.zeros(nf)
    for ii in range(nf):
        i = idx[ii]
        for jj in range(nf):
            Q_ff[ii, jj] = Q[i, idx[jj]]
        if has_eq:
            a_f[ii] = a[i]
    return Q_ff, a_f


@njit(cache=True, error_model="numpy")
def _free_gradient(Q, y, q, idx, nf):
    """``(Qy + q)[idx[:nf]]``: the rows of :func:`_gradient` the free variables need."""
    k = y.shape[0]
    g_f = np.empty(nf)
    for ii in range(nf):
        i = idx[ii]
        t = 0.0
        for j in range(k):
            t += Q[i, j] * y[j]
        g_f[ii] = t + q[i]
    return g_f


@njit(cache=True, error_model="numpy")
def _factor(Q_ff, a_f, has_eq):
    """The reduced Hessian of ``[Q_ff a_f; a_fᵀ 0]``, factored once per active set.

    Returns ``(use_eq, aa, v, beta, L, eigenvalues, V, thresh)``: the reflector ``(v, beta)``
    of the equality's null space (when ``use_eq``), and either the Cholesky factor ``L`` of the
    reduced Hessian (when it is safely positive definite) or, with ``L`` empty, its
    eigendecomposition and the curvature ``thresh`` below which a direction is flat.
    """
    aa = _dot(a_f, a_f) if has_eq else 0.0
    use_eq = aa > 0.0
    if use_eq:
        v, beta, R = _householder_reduced(Q_ff, a_f)
    else:
        v = np.zeros(0)
        beta = 0.0
        R = Q_ff
    m = R.shape[0]
    L = np.zeros((0, 0))
    eigenvalues = np.zeros(0)
    V = np.zeros((0, 0))
    thresh = 0.0
    if m > 0:
        q_scale = 0.0  # the size of Q_ff, and of its rounding noise
        for i in range(Q_ff.shape[0]):
            q_scale = max(q_scale, Q_ff[i, i])
        L, ok = _cholesky(R, q_scale)
        if not ok:
            scale = q_scale
            for i in range(m):
                scale = max(scale, R[i, i])
            Rs = np.empty((m, m))
            for i in range(m):
                for j in range(m):
                    Rs[i, j] = (R[i, j] + R[j, i]) / 2
            eigenvalues, V = np.linalg.eigh(Rs)
            for i in range(m):
                scale = max(scale, abs(eigenvalues[i]))
            # Curvature below this is rounding noise of Q (or too weak to trust a Newton step
            # on): those directions are linear, and the caller follows them to a bound.
            thresh = FLAT_REL * scale
    return use_eq, aa, v, beta, L, eigenvalues, V, thresh


@njit(cache=True, error_model="numpy")
def _step(Q_ff, a_f, factored, r, r_eq):
    """One Newton step on the free variables with the factorization of :func:`_factor`.

    Returns ``(d, dlam, flat, has_flat)``: ``[Q_ff a_f; a_fᵀ 0][d; dλ] = -[r; r_eq]`` on the
    curved part of the reduced Hessian, and the descent direction left in its flat part.
    """
    use_eq, aa, v, beta, L, eigenvalues, V, thresh = factored
    f = r.shape[0]
    d0 = np.zeros(f)
    z = np.empty(f)
    for i in range(f):
        z[i] = r[i]
    if use_eq:
        for i in range(f):
            d0[i] = -(r_eq / aa) * a_f[i]  # restores a·y = b
        for i in range(f):
            z[i] += _dot(Q_ff[i], d0)
        zn = _reflect(v, beta, z)[1:]
    else:
        zn = z
    m = zn.shape[0]
    d = np.empty(f)
    flat = np.zeros(f)
    has_flat = False
    delta = np.zeros(f)  # d - d0
    if m > 0:
        if L.shape[0] > 0:
            u = _cholesky_solve(L, -zn)
            delta = _from_null(v, beta, u) if use_eq else u
        else:
            step = np.zeros(m)
            flat_null = np.zeros(m)
            for j in range(m):
                cj = 0.0
                for i in range(m):
                    cj += V[i, j] * zn[i]
                if eigenvalues[j] > thresh:
                    cj /= eigenvalues[j]
                    for i in range(m):
                        step[i] -= V[i, j] * cj
                elif cj != 0.0:
                    has_flat = True
                    for i in range(m):
                        flat_null[i] -= V[i, j] * cj
            delta = _from_null(v, beta, step) if use_eq else step
            if has_flat:
                flat = _from_null(v, beta, flat_null) if use_eq else flat_null
    for i in range(f):
        d[i] = d0[i] + delta[i]
    dlam = 0.0
    if use_eq:
        t = 0.0
        for i in range(f):
            t += a_f[i] * (z[i] + _dot(Q_ff[i], delta))
        dlam = -t / aa
    return d, dlam, flat, has_flat


@njit(cache=True, error_model="numpy")
def reduced_step(Q_ff, a_f, has_eq, r, r_eq):
    """One Newton step on the free variables, as ``polish._ReducedKKT(Q_ff, a_f).step(r, r_eq)``.

    Returns ``(d, dlam, flat, has_flat, used_eigh)``: see :func:`_step`; ``used_eigh`` tells
    that the reduced Hessian needed an eigendecomposition.
    """
    factored = _factor(Q_ff, a_f, has_eq)
    d, dlam, flat, has_flat = _step(Q_ff, a_f, factored, r, r_eq)
    used_eigh = factored[6].shape[0] > 0
    return d, dlam, flat, has_flat, used_eigh


@njit(cache=True, error_model="numpy")
def run_active_set(Q, q, lb, ub, a, has_eq, b, y, at_lb, at_ub, movable,
                   tol, thr, w, s, sa, max_iter, work_limit):
    """Iterate the primal active-set method from ``(y, at_lb, at_ub)`` (updated in place).

    ``tol`` is the certification tolerance, ``thr`` the gradient size below which a multiplier
    sign or a flat slope is noise, ``w, s, sa`` the residual's scales.  Returns
    ``(status, eq_multiplier, iterations, primal, stationarity)``; ``status`` indexes
    :data:`STATUS_NAMES`; the last two are the certifying residual's parts when ``status`` is
    ``OPTIMAL`` (``inf`` otherwise: the caller computes the residual of ``y``).
    """
    k = y.shape[0]
    lam = 0.0
    degenerate = 0  # consecutive zero-length steps
    refinements = 0
    work = 0.0
    it = 0
    idx = np.empty(k, dtype=np.int64)
    hit = np.zeros(k, dtype=np.bool_)
    while it < max_iter:
        it += 1
        nf = 0
        for i in range(k):
            if not (at_lb[i] or at_ub[i]):
                idx[nf] = i
                nf += 1
        if nf > 0:
            work += float(nf) ** 3
            if work > work_limit:
                return WORK_LIMIT, lam, it, np.inf, np.inf
            Q_ff, a_f = _free_part(Q, a, has_eq, idx, nf)
            g_f = _free_gradient(Q, y, q, idx, nf)
            r_eq = (_dot(a, y) - b) if has_eq else 0.0
            d, lam_new, flat, has_flat, used_eigh = reduced_step(Q_ff, a_f, has_eq, g_f, r_eq)
            if used_eigh:
                work += 8.0 * float(nf) ** 3  # an eigendecomposition costs ~9 Cholesky
            finite = math.isfinite(lam_new)
            for ii in range(nf):
                finite = finite and math.isfinite(d[ii])
            if not finite:
                return NUMERICAL, lam, it, np.inf, np.inf
            along_flat = False
            if has_flat:
                for ii in range(nf):
                    along_flat = along_flat or abs(flat[ii]) > thr
            p = flat if along_flat else d
            if has_eq:
                n_support = 0
                j_support = -1
                for ii in range(nf):
                    if a_f[ii] != 0.0:
                        n_support += 1
                        j_support = ii
                if n_support == 1:
                    # The one free support variable is held by the equality (its step is zero
                    # in exact arithmetic): a rounding-level step must not let its bound block.
                    p[j_support] = 0.0 if along_flat else -r_eq / a_f[j_support]
            pmax = 0.0
            for ii in range(nf):
                pmax = max(pmax, abs(p[ii]))
            # Components at rounding level relative to the step do not block it.
            t_lb = np.empty(nf)
            t_ub = np.empty(nf)
            t_min = np.inf
            for ii in range(nf):
                i = idx[ii]
                t_lb[ii] = (lb[i] - y[i]) / p[ii] if p[ii] < -_EPS * pmax else np.inf
                t_ub[ii] = (ub[i] - y[i]) / p[ii] if p[ii] > _EPS * pmax else np.inf
                t_min = min(t_min, t_lb[ii], t_ub[ii])
            t_max = max(0.0, t_min)
            if along_flat:
                slope = _dot(g_f, p)
                curv = 0.0
                for ii in range(nf):
                    curv += p[ii] * _dot(Q_ff[ii], p)
                alpha = t_max
                if curv > 0.0 and -slope / curv < t_max:
                    alpha = -slope / curv  # slightly curved after all: its exact minimizer
                if not math.isfinite(alpha):
                    return NUMERICAL, lam, it, np.inf, np.inf
            else:
                alpha = min(1.0, t_max)
                lam = lam_new
            for ii in range(nf):
                i = idx[ii]
                y[i] = min(max(y[i] + alpha * p[ii], lb[i]), ub[i])
            if alpha == t_max:  # blocked: the bounds met join the working set
                for i in range(k):
                    hit[i] = False
                for ii in range(nf):
                    i = idx[ii]
                    if t_lb[ii] <= alpha:
                        y[i] = lb[i]
                        at_lb[i] = True
                        hit[i] = True
                    elif t_ub[ii] <= alpha:
                        y[i] = ub[i]
                        at_ub[i] = True
                        hit[i] = True
                keep_support_free(a, has_eq, movable, at_lb, at_ub, hit)
                degenerate = degenerate + 1 if alpha == 0.0 else 0
                continue
            if along_flat:
                continue
        # y minimizes the QP on the working set: check the signs of the bound multipliers.
        g = _gradient(Q, y, q)
        if has_eq:
            num = 0.0
            den = 0.0
            for i in range(k):
                if a[i] != 0.0 and not (at_lb[i] or at_ub[i]):
                    num += a[i] * g[i]
                    den += a[i] * a[i]
            # all of the support fixed: the equality is a constant and λ = 0
            lam = -num / den if den > 0.0 else 0.0
            for i in range(k):
                g[i] += lam * a[i]
        j_first = -1
        j_max = -1
        wrong_max = 0.0
        for i in range(k):
            wrong = 0.0
            if movable[i]:
                if at_lb[i]:
                    wrong = -g[i]
                elif at_ub[i]:
                    wrong = g[i]
            if wrong > thr:
                if j_first < 0:
                    j_first = i
                if wrong > wrong_max:
                    wrong_max = wrong
                    j_max = i
        if j_first < 0:
            primal, stat = residual_parts(Q, q, lb, ub, a, has_eq, b, y, lam, w, s, sa)
            if max(primal, stat) <= tol:
                return OPTIMAL, lam, it, primal, stat
            refinements += 1  # another Newton step on the same working set refines y
            if refinements > 3:
                return STALLED, lam, it, np.inf, np.inf
            continue
        j = j_first if degenerate > 2 else j_max
        at_lb[j] = False
        at_ub[j] = False
    return MAX_ITER, lam, it, np.inf, np.inf


@njit(cache=True, error_model="numpy")
def newton_on_free(Q, q, a, has_eq, b, y, idx, lam):
    """Minimize the QP over the variables ``idx`` with the others fixed, in place on ``y``.

    One Newton step of the reduced KKT system plus one refinement step, one factorization for
    both (a non-finite step is not taken).  Returns ``(lam, flat, has_flat)``: the updated
    equality multiplier and the first step's component in the flat directions of the reduced
    ``Q``.
    """
    nf = idx.shape[0]
    Q_ff, a_f = _free_part(Q, a, has_eq, idx, nf)
    factored = _factor(Q_ff, a_f, has_eq)
    first_flat = np.zeros(nf)
    first_has_flat = False
    for refine in range(2):
        g_f = _free_gradient(Q, y, q, idx, nf)
        r_eq = 0.0
        if has_eq:
            for ii in range(nf):
                g_f[ii] += lam * a_f[ii]
            r_eq = _dot(a, y) - b
        d, dlam, flat, has_flat = _step(Q_ff, a_f, factored, g_f, r_eq)
        finite = math.isfinite(dlam)
        for ii in range(nf):
            finite = finite and math.isfinite(d[ii])
        if not finite:
            break
        for ii in range(nf):
            y[idx[ii]] += d[ii]
        lam += dlam
        if refine == 0:
            first_flat = flat
            first_has_flat = has_flat
    return lam, first_flat, first_has_flat
