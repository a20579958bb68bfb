"""Large QPs solved from their structure ``Q = Aᵀ M A``, never forming the ``k x k`` matrix.

When the method's QPs have many more variables than the problem has (``k`` constraints or
cached gradients, ``k > n``), ``Q = Aᵀ M A`` (``A`` the ``n x k`` gradients, ``M`` the ``n x n``
metric) has rank at most ``n`` and forming it costs ``k²n``.  This module solves the QP
(see :class:`~ncvx_ref.qp.interface.BoxQP`, structured form) in these steps:

0. **Merging** (:func:`merge_duplicate_columns`): variables with identical data are merged (exact).
1. **Interior point** (:func:`interior_point`): a primal-dual Mehrotra predictor-corrector on
   the box QP with every Newton system ``(Q + D) x = r`` (``D`` diagonal, from the barrier)
   solved by the Woodbury identity through the ``n x n`` matrix ``K = M⁻¹ + A D⁻¹ Aᵀ``
   (the lifted QP ``min ½zᵀMz + qᵀy, z = Ay`` with ``y`` eliminated).  ``K`` is sparse when
   ``M`` is a (scaled) identity and ``A`` sparse (sparse LU), dense otherwise (Cholesky; ``M⁻¹``
   is computed once per metric and reused by every QP that shares that ``M`` array).
2. **Polishing** (:func:`polish_structured`): the active-set polishing of
   :mod:`ncvx_ref.qp.polish` (fix the active bounds exactly, Newton-solve the free variables,
   repair the active set), with ``Q`` products evaluated as ``Aᵀ(M(Av))`` and ``Q`` formed only
   on the free set; certified by the same scaled KKT residual as the dense path
   (:func:`kkt_residual_structured`, equal to :func:`~ncvx_ref.qp.polish.kkt_residual`).
3. **Dense fallback**: a QP the lifted path cannot certify (nearly singular ``M``) is solved
   densely, ``Q`` formed once.

:func:`wants_structure` is the size rule the QP builders (steering, stationarity) ask before
building a structured QP.  See ``docs/large_qps.md`` for the measurements behind it.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional, Tuple

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg.lapack import dpstrf as _pstrf

from .interface import BoxQP, QPSolverError
from .polish import (KKTResidual, PolishOutcome, _ReducedKKT, _candidate_active_sets,
                     default_tolerance, estimate_eq_multiplier)
from .polish import _line_step as _dense_line_step

__all__ = ["LiftedQPSolver", "StructuredOps", "interior_point", "interior_point_stages",
           "polish_structured", "kkt_residual_structured", "merge_duplicate_columns",
           "check_structure", "wants_structure", "host_gradients", "host_metric", "LIFTED_MIN_K"]

#: structured QPs only from this many QP variables on (and only when ``k > n``): below it the
#: dense path is fast, and the small reference problems keep their exact dense arithmetic.
LIFTED_MIN_K = 1000
_SPARSE_DENSITY = 0.1  # host gradient blocks sparser than this are stored as scipy.sparse
#: K's sparse part is factored sparse only up to this density (nnz / n²), else dense Cholesky
_SPARSE_K_MAX_DENSITY = 0.1
#: pivots of the reduced Hessian's pivoted Cholesky below this fraction of its largest diagonal
#: entry are flat directions (the eigenvalue test of the dense polishing uses 1e-11 of the
#: largest eigenvalue, which is at least the largest diagonal entry)
_FLAT_REL_PIVOT = 1e-11
_EPS = float(np.finfo(np.float64).eps)


def wants_structure(solver: Any, n: int, k: int) -> bool:
    """Whether ``solver`` (looking through wrappers) wants the structured form of an ``n``/``k`` QP.

    A solver opts in with a method ``wants_structure(n, k) -> bool``; wrappers that expose the
    wrapped solver as ``solver`` or ``inner`` are looked through.  Everything else gets dense QPs.
    """
    seen = 0
    while solver is not None and seen < 8:
        fn = getattr(solver, "wants_structure", None)
        if callable(fn):
            return bool(fn(n, k))
        solver = getattr(solver, "solver", None) or getattr(solver, "inner", None)
        seen += 1
    return False


def host_gradients(blocks) -> Any:
    """Host gradient columns ``[B1 | B2 | ...]`` (float64 NumPy blocks) as one ``n x k`` matrix.

    Sparse (CSC) when the nonzeros are below 10% of the entries, else a dense array.
    """
    blocks = [np.asarray(b, dtype=np.float64) for b in blocks]
    blocks = [b[:, None] if b.ndim == 1 else b for b in blocks]
    total = sum(b.size for b in blocks)
    nnz_of: dict = {}  # the same array repeated (one Jacobian for every sample): counted once
    nnz = sum(nnz_of.setdefault(id(b), int(np.count_nonzero(b))) for b in blocks)
    if total and nnz <= _SPARSE_DENSITY * total:
        converted: dict = {}
        parts = []
        for b in blocks:
            if id(b) not in converted:
                converted[id(b)] = sp.csc_matrix(b)
            parts.append(converted[id(b)])
        return parts[0] if len(parts) == 1 else sp.hstack(parts, format="csc")
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)


# ------------------------------------------------------------------------------------ products
class StructuredOps:
    """Products with ``Q = Aᵀ M A`` from the structure of ``qp`` (``M``: array, float or None)."""

    def __init__(self, qp: BoxQP) -> None:
        A = qp.A
        self.sparse = sp.issparse(A)
        self.A = A.tocsc() if self.sparse else np.asarray(A, dtype=np.float64)
        M = qp.M
        self.M_scalar: Optional[float] = None
        self.M: Optional[np.ndarray] = None
        if M is None:
            self.M_scalar = 1.0
        elif np.ndim(M) == 0:
            self.M_scalar = float(M)
        else:
            self.M = np.asarray(M, dtype=np.float64)
        self.n, self.k = self.A.shape
        self._diag: Optional[np.ndarray] = None
        #: set by :func:`interior_point_stages`: its Newton systems went through a low-rank M⁻¹
        self.low_rank_used = False

    def apply_M(self, z: np.ndarray) -> np.ndarray:
        return self.M_scalar * z if self.M is None else self.M @ z

    def Qv(self, y: np.ndarray) -> np.ndarray:
        """``Q y``."""
        return np.asarray(self.A.T @ self.apply_M(self.A @ y))

    def quad(self, p: np.ndarray) -> float:
        """``pᵀ Q p = (Ap)ᵀ M (Ap)``."""
        z = self.A @ p
        return float(z @ self.apply_M(z))

    def columns(self, idx: np.ndarray):
        return self.A[:, idx]

    def sub(self, idx: np.ndarray) -> np.ndarray:
        """``Q[idx, idx]`` (dense, symmetrized), formed from ``A[:, idx]`` only."""
        Af = self.A[:, idx]
        if self.M is None:
            Qff = self.M_scalar * (Af.T @ Af)
        elif self.sparse:
            Qff = Af.T @ np.asarray(Af.T @ self.M).T
        else:
            Qff = Af.T @ (self.M @ Af)
        Qff = np.asarray(Qff.toarray() if sp.issparse(Qff) else Qff, dtype=np.float64)
        return (Qff + Qff.T) / 2

    def diag(self) -> np.ndarray:
        """``diag(Q)``: ``a_iᵀ M a_i`` per column (its maximum is ``max |Q_ij|``, Q being PSD)."""
        if self._diag is None:
            A = self.A
            if self.M is None:
                sq = A.multiply(A) if self.sparse else A * A
                d = self.M_scalar * np.asarray(sq.sum(axis=0)).ravel()
            else:  # column blocks: no n x k dense temporary
                d = np.empty(self.k)
                step = max(1, (1 << 22) // max(self.n, 1))
                for j0 in range(0, self.k, step):
                    B = A[:, j0:j0 + step]
                    if self.sparse:
                        BtM = np.asarray(B.T @ self.M)  # cost n·nnz(B)
                        d[j0:j0 + step] = np.asarray(B.T.multiply(BtM).sum(axis=1)).ravel()
                    else:
                        d[j0:j0 + step] = np.einsum("ij,ij->j", B, self.M @ B)
            self._diag = np.maximum(d, 0.0)
        return self._diag


# ------------------------------------------------------------------------------------ residual
def _scales(qp: BoxQP, ops: StructuredOps) -> Tuple[float, float]:
    w = max(float(np.max(np.abs(qp.lb), initial=0.0)), float(np.max(np.abs(qp.ub), initial=0.0)))
    w = w if w > 0.0 else 1.0
    s = max(float(np.max(np.abs(qp.q), initial=0.0)), float(np.max(ops.diag(), initial=0.0)) * w)
    return w, (s if s > 0.0 else 1.0)


def kkt_residual_structured(qp: BoxQP, y: np.ndarray, ops: Optional[StructuredOps] = None,
                            eq_multiplier: Optional[float] = None,
                            g: Optional[np.ndarray] = None) -> KKTResidual:
    """:func:`~ncvx_ref.qp.polish.kkt_residual` of ``y`` with ``Qy`` from the structure.

    Same definition (``W = max |bounds|``, ``S = max(|q|, max|Q|·W)``, ``max|Q| = max diag Q``
    for PSD ``Q``); ``g = Qy + q`` may be passed when already known.
    """
    ops = StructuredOps(qp) if ops is None else ops
    y = np.asarray(y, dtype=np.float64)
    if y.shape != qp.q.shape or not np.all(np.isfinite(y)):
        return KKTResidual(np.inf, np.inf, np.inf, 0.0)
    w, s = _scales(qp, ops)
    primal = float(np.max(np.maximum(np.maximum(qp.lb - y, y - qp.ub), 0.0), initial=0.0)) / w
    g = ops.Qv(y) + qp.q if g is None else g
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


# ------------------------------------------------------------------------------------ metric caches
# Per metric array object (the QPs of one iteration share its H): id -> (weakref to M, value...).
# M arrays are never modified in place (BFGSInverseHessian.metric_array gives a new view per H).
_MINV_CACHE: dict = {}  # M⁻¹
#: metric arrays known to be ``γ I`` plus a low-rank term: (γ, vectors spanning it)
_LOW_RANK_FORMS: dict = {}
#: their inverses in low-rank form: ((1/γ, W, F),) or (None,) when unusable
_LOW_RANK_INVERSES: dict = {}
_LOW_RANK_CHECK_RTOL = 1e-8  # how exactly M must act as γ I off span(W), relative to max |M_ij|


def _remember(cache: dict, M: np.ndarray, value: tuple) -> None:
    """Store ``value`` for the array object ``M`` (dead entries dropped, at most 4 kept)."""
    for key_ in [k_ for k_, entry in cache.items() if entry[0]() is None]:
        del cache[key_]
    if len(cache) >= 4:
        cache.pop(next(iter(cache)))
    try:
        cache[id(M)] = (weakref.ref(M),) + value
    except TypeError:  # pragma: no cover - arrays without weakref support are not memoized
        pass


def _recall(cache: dict, M: np.ndarray) -> Optional[tuple]:
    """The value stored for this very array object, or None."""
    entry = cache.get(id(M))
    if entry is not None and entry[0]() is M:
        return entry[1:]
    return None


def _metric_inverse(M: np.ndarray) -> np.ndarray:
    """``M⁻¹`` (SPD ``M``), memoized per array object so the QPs of one iteration share it.

    Ill-conditioned ``M`` (the BFGS ``H`` late in a nonsmooth run reaches 1e15) gives an
    inaccurate ``M⁻¹``; the interior point's refinement and the solver's dense fallback cover
    that (an inverse-free ``(I + M S)`` LU form was tried and did worse).
    """
    hit = _recall(_MINV_CACHE, M)
    if hit is not None:
        return hit[0]
    try:
        c = sla.cho_factor(M, lower=True, check_finite=False)
        Minv = sla.cho_solve(c, np.eye(M.shape[0]), check_finite=False)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise QPSolverError(f"lifted QP: the metric M is not positive definite ({exc}); the "
                            f"structured path needs an SPD metric.") from exc
    Minv = (Minv + Minv.T) / 2
    _remember(_MINV_CACHE, M, (Minv,))
    return Minv


def register_low_rank_metric(M: np.ndarray, base, vectors) -> None:
    """Record that ``M - B`` lies in the span of ``vectors`` (host arrays of length n), where
    ``B`` is ``base·I`` for a float ``base`` or ``diag(base)`` for a vector ``base``.

    :func:`host_metric` does this for the full-memory BFGS ``H`` grown from a scaled identity or
    from a diagonal ``H0`` (``BFGSInverseHessian.low_rank_form``; a diagonal ``H0`` before any
    update has no vectors); the interior point then factors its Newton matrix through that
    form (:func:`_low_rank_inverse`) instead of forming and factoring ``M⁻¹``.
    """
    base = float(base) if np.ndim(base) == 0 else np.array(base, dtype=np.float64)
    _remember(_LOW_RANK_FORMS, M, (base, list(vectors)))


def _low_rank_inverse(M: np.ndarray):
    """``M⁻¹ = C + W F Wᵀ`` for a registered metric as ``(C, W, F)``, else None: ``C`` is the
    float ``1/γ`` (meaning ``I/γ``) or the vector ``1/d`` (meaning ``diag(1/d)``); ``W`` is
    ``n x r`` (None with a diagonal base and no vectors).

    With a scaled-identity base ``γ`` and ``W`` an orthonormal basis of the registered vectors,
    ``E = Wᵀ M W``,
    ``M = γ (I - W Wᵀ) + W E Wᵀ``, so ``M⁻¹ = (1/γ)(I - W Wᵀ) + W E⁻¹ Wᵀ`` and
    ``F = E⁻¹ - I/γ``.  Costs ``O(n² r)`` once per metric array (the QPs of an iteration share
    it).  Checked: ``M`` must map ``span(W)`` into itself and act as ``γ I`` on a probe vector
    orthogonal to it, to ``_LOW_RANK_CHECK_RTOL`` of ``max |M_ij|``; otherwise (or when ``E``
    is not numerically SPD) None, and the caller uses the dense ``M⁻¹``.  A diagonal base:
    :func:`_factor_diagonal_low_rank`.
    """
    hit = _recall(_LOW_RANK_INVERSES, M)
    if hit is not None:
        return hit[0]
    form = _recall(_LOW_RANK_FORMS, M)
    out = None
    if form is not None:
        out = _factor_low_rank(M, *form)
        _remember(_LOW_RANK_INVERSES, M, (out,))
    return out


def _factor_low_rank(M: np.ndarray, base, vectors):
    if np.ndim(base) != 0:
        return _factor_diagonal_low_rank(M, base, vectors)
    gamma = base
    n = M.shape[0]
    if not (gamma > 0.0 and np.isfinite(gamma)) or not vectors:
        return None
    W = _orthonormal_span(vectors)
    if W is None:
        return None
    MW = M @ W
    E = W.T @ MW
    E = (E + E.T) / 2
    scale = float(np.max(np.abs(M)))
    tol = _LOW_RANK_CHECK_RTOL * scale
    probe = _probe_outside(W, n)
    if probe is None:  # span(W) is (nearly) everything: nothing to gain
        return None
    off = float(np.max(np.abs(M @ probe - gamma * probe)))
    inside = float(np.max(np.abs(MW - W @ E)))
    if not (off <= tol and inside <= tol):
        return None
    try:
        c = sla.cho_factor(E, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    Einv = sla.cho_solve(c, np.eye(E.shape[0]), check_finite=False)
    F = (Einv + Einv.T) / 2
    F[np.diag_indices_from(F)] -= 1.0 / gamma
    return 1.0 / gamma, W, F


def _factor_diagonal_low_rank(M: np.ndarray, d: np.ndarray, vectors):
    """:func:`_low_rank_inverse` for ``M = diag(d) + W C Wᵀ`` (``W`` an orthonormal basis of the
    vectors, ``C = Wᵀ(M − diag(d))W``): by Woodbury in the form that allows a singular ``C``,
    ``M⁻¹ = D⁻¹ − D⁻¹W C (I + P C)⁻¹ WᵀD⁻¹`` with ``P = WᵀD⁻¹W``, returned as
    ``(1/d, D⁻¹W, −C (I + P C)⁻¹)`` (that last matrix is symmetric).  Checked as the
    scaled-identity form is: ``M − diag(d)`` must vanish on a probe orthogonal to ``W`` and map
    ``span(W)`` into itself, to ``_LOW_RANK_CHECK_RTOL`` of ``max |M_ij|``."""
    n = M.shape[0]
    if d.shape != (n,) or not (np.all(np.isfinite(d)) and np.min(d, initial=1.0) > 0.0):
        return None
    tol = _LOW_RANK_CHECK_RTOL * float(np.max(np.abs(M)))
    dinv = 1.0 / d
    if not vectors:
        probe = np.cos(np.arange(n, dtype=np.float64))
        if float(np.max(np.abs(M @ probe - d * probe))) > tol:
            return None
        return dinv, None, None
    W = _orthonormal_span(vectors)
    if W is None:
        return None
    probe = _probe_outside(W, n)
    if probe is None:
        return None
    R_W = M @ W - d[:, None] * W  # (M − D) W
    C = W.T @ R_W
    C = (C + C.T) / 2
    off = float(np.max(np.abs(M @ probe - d * probe)))
    inside = float(np.max(np.abs(R_W - W @ C)))
    if not (off <= tol and inside <= tol):
        return None
    Wt = dinv[:, None] * W
    P = W.T @ Wt
    try:
        F = -np.linalg.solve((np.eye(C.shape[0]) + P @ C).T, C.T).T  # C (I + P C)⁻¹
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(F)):
        return None
    return dinv, Wt, (F + F.T) / 2


def _orthonormal_span(vectors) -> Optional[np.ndarray]:
    """An orthonormal basis (``n x r``) of the vectors' span, or None when it is empty."""
    B = np.column_stack([np.asarray(v, dtype=np.float64) for v in vectors])
    norms = np.sqrt(np.einsum("ij,ij->j", B, B))
    B = B[:, norms > 0.0] / norms[norms > 0.0]  # unit columns: the SVD then sees dependence,
    if B.shape[1] == 0:                          # not the vectors' scales (|u| grows with H)
        return None
    U, sv, _ = np.linalg.svd(B, full_matrices=False)
    if not (sv.size and sv[0] > 0.0 and np.all(np.isfinite(sv))):
        return None
    return np.ascontiguousarray(U[:, sv > 1e-12 * sv[0]])


def _probe_outside(W: np.ndarray, n: int) -> Optional[np.ndarray]:
    """A deterministic, generic unit vector orthogonal to ``span(W)``; None when the span is
    (nearly) everything."""
    probe = np.cos(np.arange(n, dtype=np.float64))
    probe -= W @ (W.T @ probe)
    pn = float(np.linalg.norm(probe))
    if pn < 1e-3 * np.sqrt(n):
        return None
    return probe / pn


# ------------------------------------------------------------------------------------ interior point


class _Columns:
    """``Ã`` split into sparse columns and the few dense ones (e.g. objective gradients), so that
    ``Ã D⁻¹ Ãᵀ`` is a sparse product plus a low-rank dense one (:func:`_sparse_K_solver`)."""

    def __init__(self, At) -> None:
        self.At = At
        self.sparse = sp.issparse(At)
        if self.sparse:
            n = At.shape[0]
            counts = np.diff(At.indptr)
            self.dense_idx = np.flatnonzero(counts > max(16, _SPARSE_DENSITY * n))
            keep = np.ones(At.shape[1], dtype=bool)
            keep[self.dense_idx] = False
            self.sparse_idx = np.flatnonzero(keep)
            self.As = At[:, self.sparse_idx].tocsr()
            self.Ad = At[:, self.dense_idx].toarray()
            # Whether K's sparse part S0 = c I + Ã_s D⁻¹ Ã_sᵀ stays sparse (its pattern does not
            # depend on D): denser patterns fill in, and dense Cholesky is faster.
            pattern = (self.As != 0).astype(np.float64)
            self.sparse_K = (pattern @ pattern.T).nnz + n <= _SPARSE_K_MAX_DENSITY * n * n

    def gram(self, Dinv: np.ndarray) -> np.ndarray:
        """``Ã diag(Dinv) Ãᵀ`` as a dense array (the dense-``K`` path)."""
        if not self.sparse:
            return (self.At * Dinv) @ self.At.T
        S = (self.As @ sp.diags(Dinv[self.sparse_idx]) @ self.As.T).toarray()
        if self.Ad.shape[1]:
            S += (self.Ad * Dinv[self.dense_idx]) @ self.Ad.T
        return S


class _NewtonSolver:
    """Solves ``(Q̃ + D) x = r`` by Woodbury through ``K = M̃⁻¹ + Ã D⁻¹ Ãᵀ`` (one factorization).

    ``M̃⁻¹`` is given as one of: the dense ``Minv``; ``Minv_diagonal``, a float ``c`` (``c I``)
    or a vector (``diag``); ``Minv_low_rank = (c, W, F)``, ``c`` as before plus ``W F Wᵀ``.
    """

    def __init__(self, cols: _Columns, Minv, Minv_diagonal, D: np.ndarray,
                 Qt: Callable[[np.ndarray], np.ndarray], Minv_low_rank=None) -> None:
        At = cols.At
        self.At, self.D, self.Qt = At, D, Qt
        Dinv = 1.0 / D
        self.Dinv = Dinv
        n = At.shape[0]
        if cols.sparse and cols.sparse_K and (Minv_low_rank is not None or Minv_diagonal is not None):
            c, W, F = Minv_low_rank if Minv_low_rank is not None else (Minv_diagonal, None, None)
            self._solveK = _sparse_K_solver(cols, Dinv, c, W, F)
            return

        def dense_K() -> np.ndarray:
            K = cols.gram(Dinv)
            if Minv_diagonal is not None:
                K[np.diag_indices(n)] += Minv_diagonal
            else:
                K += Minv
            return K

        try:
            c = sla.cho_factor(dense_K(), lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            K = dense_K()
            ridge = 1e-14 * max(1.0, float(np.max(np.abs(np.diag(K)))))
            c = sla.cho_factor(K + ridge * np.eye(n), lower=True, check_finite=False)
        self._solveK = lambda v: sla.cho_solve(c, v, check_finite=False)

    def _raw(self, r: np.ndarray) -> np.ndarray:
        """Woodbury with the factorization of ``K``; ``r`` may hold several columns."""
        Dinv = self.Dinv if r.ndim == 1 else self.Dinv[:, None]
        v = r * Dinv
        return v - Dinv * np.asarray(self.At.T @ self._solveK(np.asarray(self.At @ v)))

    def solve(self, r: np.ndarray, refine: bool = True) -> np.ndarray:
        x = self._raw(r)
        if not refine:
            return x
        # Iterative refinement against the exact operator: the Woodbury form cancels where
        # D⁻¹ is large (free variables near the end), a few steps recover the lost digits.
        D = self.D if r.ndim == 1 else self.D[:, None]
        scale = float(np.max(np.abs(r), initial=0.0)) or 1.0
        last = np.inf
        for _ in range(3):
            res = r - (self.Qt(x) + D * x)
            err = float(np.max(np.abs(res), initial=0.0))
            if err <= 1e-15 * scale or not err < 0.5 * last:
                break
            last = err
            x = x + self._raw(res)
        return x


def _sparse_K_solver(cols: _Columns, Dinv: np.ndarray, c, W: Optional[np.ndarray],
                     F: Optional[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``v -> K⁻¹ v`` for ``K = C + W F Wᵀ + Ã D⁻¹ Ãᵀ`` with sparse ``Ã``, where ``C`` is
    ``c I`` for a float ``c`` or ``diag(c)`` for a vector (``W`` None: ``C`` alone).

    ``K = S0 + U G Uᵀ``: ``S0 = C + Ã_s D_s⁻¹ Ã_sᵀ`` is sparse (sparse LU), and ``U = [Ã_d, W]``,
    ``G = diag(D_d⁻¹, F)`` hold the dense gradient columns and the metric's low-rank part.
    Woodbury in the form that allows a singular ``G``:
    ``K⁻¹ = S0⁻¹ - Z G (I + Uᵀ Z G)⁻¹ Uᵀ S0⁻¹`` with ``Z = S0⁻¹ U``.  Cost: a sparse
    factorization plus ``O(n p²)`` (``p`` columns in ``U``), against ``O(n³)`` for the dense
    ``K``.  For ``cols.sparse_K`` patterns only.
    """
    n = cols.At.shape[0]
    C = sp.identity(n, format="csr") * c if np.ndim(c) == 0 else sp.diags(c, format="csr")
    S0 = (cols.As @ sp.diags(Dinv[cols.sparse_idx]) @ cols.As.T + C).tocsc()
    # COLAMD: the same fill as MMD on A+Aᵀ for these arrow-like patterns (many columns
    # coupling a few dense rows), at an eighth of the ordering time (2 ms against 18 ms, n = 1021)
    lu = spla.splu(S0, permc_spec="COLAMD", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})
    p_d = cols.Ad.shape[1]
    parts = [cols.Ad] if p_d else []
    if W is not None and W.shape[1]:
        parts.append(W)
    if not parts:
        return lu.solve
    U = parts[0] if len(parts) == 1 else np.hstack(parts)
    p = U.shape[1]
    G = np.zeros((p, p))
    G[np.arange(p_d), np.arange(p_d)] = Dinv[cols.dense_idx]
    if p > p_d:
        G[p_d:, p_d:] = F
    ZG = lu.solve(np.asfortranarray(U)) @ G
    C_lu = sla.lu_factor(np.eye(p) + U.T @ ZG, check_finite=False)

    def solve(v: np.ndarray) -> np.ndarray:
        y = lu.solve(np.asarray(v, dtype=np.float64))
        return y - ZG @ sla.lu_solve(C_lu, U.T @ y, check_finite=False)

    return solve


def interior_point(qp: BoxQP, ops: Optional[StructuredOps] = None, *, tol: float = 1e-11,
                   max_iter: int = 100) -> Tuple[np.ndarray, bool, str]:
    """Primal-dual Mehrotra IPM on the box QP, linear algebra through the structure.

    Works on the scaled problem ``y = lb + (ub - lb)·t``, ``t ∈ [0, 1]`` (fixed variables
    removed), objective scaled to unit size.  Returns ``(y, converged, status)``.
    """
    out = (None, False, "no iterate")
    for out in interior_point_stages(qp, ops, tols=(tol,), max_iter=max_iter):
        pass
    return out


def interior_point_stages(qp: BoxQP, ops: Optional[StructuredOps] = None, *,
                          tols=(1e-12,), max_iter: int = 100, low_rank: bool = True):
    """:func:`interior_point` as a generator: yields ``(y, converged, status)`` each time the
    next tolerance of ``tols`` is reached (or once on failure, with the most accurate iterate
    it met), then resumes from there.

    ``low_rank``: use a registered low-rank form of ``M⁻¹`` (:func:`_low_rank_inverse`) when
    there is one; False: the dense ``M⁻¹``.
    """
    tols = list(tols)
    ops = StructuredOps(qp) if ops is None else ops
    k = qp.size
    lb, ub = qp.lb, qp.ub
    width = ub - lb
    J = np.flatnonzero(width > 0.0)
    y_base = lb.copy()
    if J.size == 0:
        yield y_base, True, "all variables fixed"
        return
    wJ = width[J]
    AJ = ops.columns(J)
    At = AJ @ sp.diags(wJ) if ops.sparse else AJ * wJ
    if ops.sparse:
        At = At.tocsc()
    cols = _Columns(At)
    Mz0 = ops.apply_M(np.asarray(ops.A @ lb))
    qt = wJ * (qp.q[J] + np.asarray(AJ.T @ Mz0))
    dt = ops.diag()[J] * wJ * wJ
    sigma = max(float(np.max(np.abs(qt), initial=0.0)), float(np.max(dt, initial=0.0)))
    sigma = sigma if sigma > 0.0 else 1.0
    qt = qt / sigma
    m_scalar = None if ops.M is not None else ops.M_scalar / sigma
    Minv = None
    Minv_diagonal = None
    Minv_low_rank = None
    form = None
    if ops.M is not None and cols.sparse and cols.sparse_K and low_rank:
        form = _low_rank_inverse(ops.M)
    ops.low_rank_used = form is not None
    if form is not None and form[1] is None:  # a diagonal M: M⁻¹ = diag(c)
        Minv_diagonal = sigma * form[0]
    elif form is not None:
        c_lr, W_lr, F_lr = form
        Minv_low_rank = (sigma * c_lr, W_lr, sigma * F_lr)
    elif ops.M is not None:
        Minv = sigma * _metric_inverse(ops.M)
    else:
        if not m_scalar > 0.0:
            raise QPSolverError("lifted QP: the metric scale must be positive.")
        Minv_diagonal = 1.0 / m_scalar

    def Qt(t):
        z = np.asarray(At @ t)
        Mz = m_scalar * z if ops.M is None else (ops.M @ z) / sigma
        return np.asarray(At.T @ Mz)

    a = qp.eq_coeffs
    at = bt = None
    if a is not None:
        at = a[J] * wJ
        bt = qp.eq_rhs - float(np.dot(a, lb))
        sc = float(np.max(np.abs(at), initial=0.0))
        if sc == 0.0:
            if abs(bt) > default_tolerance(k) * max(1.0, abs(qp.eq_rhs)):
                raise QPSolverError("lifted QP: the equality cannot hold (no free coefficient).")
            at = None
        else:
            at, bt = at / sc, bt / sc
    def _unscale(t, u):
        y = y_base.copy()
        y[J] = np.where(u < t, ub[J] - wJ * u, lb[J] + wJ * t)
        return np.clip(y, lb, ub)

    m = J.size
    t = np.full(m, 0.5)
    u = np.full(m, 0.5)  # 1 - t, kept as its own variable: near the upper bound 1 - t loses digits
    z1 = np.ones(m)
    z2 = np.ones(m)
    lam = 0.0
    status = "max iterations"
    ok = False
    stalls = 0
    best_merit, best_tu = np.inf, (t, u)  # (t, u) are new arrays at every step: no copies
    for it in range(max_iter):
        g = Qt(t) + qt
        rd = g - z1 + z2 + (lam * at if at is not None else 0.0)
        re = float(np.dot(at, t)) - bt if at is not None else 0.0
        s1, s2 = t, u
        mu = (float(np.dot(s1, z1)) + float(np.dot(s2, z2))) / (2 * m)
        if max(float(np.max(np.abs(rd))), abs(re)) <= tols[0] and mu <= tols[0]:
            yield _unscale(t, u), True, f"converged to {tols[0]:g} in {it} iterations"
            tols.pop(0)
            if not tols:
                return
            continue
        merit = max(float(np.max(np.abs(rd))), abs(re), mu)
        if merit < best_merit:
            best_merit, best_tu = merit, (t, u)
        if merit > 1e6 * best_merit:  # diverging (inaccurate Newton solves): give up early
            status = f"diverged at iteration {it} (residual {merit:.1e})"
            break
        D = z1 / s1 + z2 / s2
        try:
            ns = _NewtonSolver(cols, Minv, Minv_diagonal, D, Qt, Minv_low_rank)
        except (np.linalg.LinAlgError, RuntimeError, ValueError) as exc:
            status = f"factorization failed: {exc}"
            break
        xa = ns.solve(at) if at is not None else None

        def direction(rc1, rc2, refine=True):
            rhs = -rd + rc1 / s1 - rc2 / s2
            x = ns.solve(rhs, refine)
            dl = 0.0
            if at is not None:
                dl = (float(np.dot(at, x)) + re) / float(np.dot(at, xa))
                x = x - dl * xa
            return x, dl, (rc1 - z1 * x) / s1, (rc2 + z2 * x) / s2

        def max_step(v, dv):
            neg = dv < 0.0
            return min(1.0, float(np.min(-v[neg] / dv[neg]))) if np.any(neg) else 1.0

        dx, dl, dz1, dz2 = direction(-s1 * z1, -s2 * z2, refine=False)  # affine predictor
        ap = min(max_step(s1, dx), max_step(s2, -dx))
        ad = min(max_step(z1, dz1), max_step(z2, dz2))
        mu_aff = (float(np.dot(s1 + ap * dx, z1 + ad * dz1))
                  + float(np.dot(s2 - ap * dx, z2 + ad * dz2))) / (2 * m)
        cent = (mu_aff / mu) ** 3 if mu > 0.0 else 0.0
        rc1 = cent * mu - s1 * z1 - dx * dz1
        rc2 = cent * mu - s2 * z2 + dx * dz2
        dx, dl, dz1, dz2 = direction(rc1, rc2)
        eta = 0.995  # fraction to the boundary
        ap = eta * min(max_step(s1, dx), max_step(s2, -dx))
        ad = eta * min(max_step(z1, dz1), max_step(z2, dz2))
        if not (np.all(np.isfinite(dx)) and np.isfinite(dl)):
            status = "non-finite Newton direction"
            break
        stalls = stalls + 1 if ap < 1e-6 else 0
        if stalls >= 3:  # inaccurate Newton directions (ill-conditioned data): stop here
            status = f"stalled at iteration {it} (residual {max(float(np.max(np.abs(rd))), abs(re)):.1e}, mu {mu:.1e})"
            break
        t = np.maximum(t + ap * dx, np.finfo(float).tiny)
        u = np.maximum(u - ap * dx, np.finfo(float).tiny)
        z1 = np.maximum(z1 + ad * dz1, np.finfo(float).tiny)
        z2 = np.maximum(z2 + ad * dz2, np.finfo(float).tiny)
        lam = lam + ad * dl
    yield _unscale(*best_tu), ok, status  # on failure, the most accurate iterate met


# ------------------------------------------------------------------------------------ polishing
#: active-set rounds per guessed active set in :func:`polish_structured` (25: measured against
#: 12 and 6 in docs/large_qps.md, "Low-rank metric", and against 12 again in the thirteenth
#: session: equal progress on svm_N1000 over 360 s, slower late iterations with 12)
STRUCTURED_POLISH_ROUNDS = 25


def polish_structured(qp: BoxQP, y0: np.ndarray, ops: Optional[StructuredOps] = None, *,
                      tol: Optional[float] = None,
                      max_rounds: int = STRUCTURED_POLISH_ROUNDS) -> PolishOutcome:
    """:func:`~ncvx_ref.qp.polish.polish` for a structured QP (same algorithm and certificate)."""
    ops = StructuredOps(qp) if ops is None else ops
    y0 = np.asarray(y0, dtype=np.float64)
    k = qp.size
    tol = default_tolerance(k) if tol is None else tol
    res0 = kkt_residual_structured(qp, y0, ops)
    if not np.all(np.isfinite(y0)) or y0.shape != (k,):
        return PolishOutcome(y0, False, res0, res0, 0)
    if res0.total == 0.0:
        return PolishOutcome(y0, True, res0, res0, 0)
    w, s = _scales(qp, ops)
    yc = np.clip(y0, qp.lb, qp.ub)
    g0 = ops.Qv(yc) + qp.q
    lam0 = estimate_eq_multiplier(qp, yc, g0)
    best: Optional[tuple] = None
    seen: set = set()
    rounds_total = 0
    for at_lb, at_ub in _candidate_active_sets(qp, yc, g0, lam0, w, s):
        key = np.packbits(at_lb).tobytes() + np.packbits(at_ub).tobytes()
        if key in seen:
            continue
        seen.add(key)
        y, res, rounds = _rounds(qp, ops, yc, lam0, at_lb.copy(), at_ub.copy(), w, s, tol,
                                 max_rounds)
        rounds_total += rounds
        if best is None or res.total < best[1].total:
            best = (y, res)
        if res.total <= tol:
            break
    y, res = best
    if res.total <= tol:
        return PolishOutcome(y, True, res, res0, rounds_total)
    return PolishOutcome(y0, res0.total <= tol, res0, res0, rounds_total)


class _PivotedReducedKKT(_ReducedKKT):
    """:class:`~ncvx_ref.qp.polish._ReducedKKT` whose singular case uses a pivoted Cholesky.

    Structured QPs reach polishing with free blocks of hundreds to thousands of variables whose
    reduced Hessian is numerically singular in a few directions (late BFGS metrics); an
    eigendecomposition of such a block costs about nine Cholesky factorizations.  LAPACK's
    ``pstrf`` gives ``Pᵀ R P = L Lᵀ`` with rank ``r`` (pivots below the flat threshold stop it);
    the flat directions are the null space ``P [-L11⁻ᵀ L21ᵀ; I]`` (orthonormalized: ``f x (f - r)``,
    few columns), the Newton step the minimum-norm solution on the rest.
    """

    def _factor_singular(self, R: np.ndarray, diag: np.ndarray) -> None:
        m = R.shape[0]
        tol = _FLAT_REL_PIVOT * float(np.max(diag, initial=0.0))
        c, piv, r, info = _pstrf((R + R.T) / 2, tol=tol, lower=1)
        if info < 0:
            return super()._factor_singular(R, diag)
        piv = piv - 1  # LAPACK's 1-based pivots: (Pᵀ R P)_ij = R[piv_i, piv_j]
        L11 = np.tril(c[:r, :r])
        N = None
        if r < m:
            X = sla.solve_triangular(L11, c[r:, :r].T, lower=True, trans="T", check_finite=False)
            Np = np.vstack([-X, np.eye(m - r)])
            N = np.empty_like(Np)
            N[piv] = Np
            N, _ = np.linalg.qr(N)
        self.eig = ("pivoted", L11, piv, r, N)

    def _singular_step(self, zn: np.ndarray):
        _, L11, piv, r, N = self.eig
        flat = None
        z_range = zn
        if N is not None:
            cf = N.T @ zn
            if np.any(cf != 0.0):
                flat = N @ cf
                z_range = zn - flat
        b = z_range[piv[:r]]
        w = sla.solve_triangular(L11, sla.solve_triangular(L11, b, lower=True, check_finite=False),
                                 lower=True, trans="T", check_finite=False)
        step = np.zeros_like(zn)
        step[piv[:r]] = w
        if N is not None:
            step -= N @ (N.T @ step)  # the minimum-norm solution: no component in the flat space
        return step, flat


def _rounds(qp: BoxQP, ops: StructuredOps, y_start: np.ndarray, lam: float, at_lb, at_ub,
            w: float, s: float, tol: float, max_rounds: int):
    """The active-set rounds of the dense polishing, with structured ``Q`` products."""
    a = qp.eq_coeffs
    lb, ub = qp.lb, qp.ub
    y = y_start.copy()
    best_y, best_res = y, kkt_residual_structured(qp, y, ops)
    for rnd in range(1, max_rounds + 1):
        y = y.copy()
        y[at_lb] = lb[at_lb]
        y[at_ub] = ub[at_ub]
        free = ~(at_lb | at_ub)
        idx = np.flatnonzero(free)
        d_null = None
        if idx.size:
            a_f = None if a is None else a[idx]
            kkt = _PivotedReducedKKT(ops.sub(idx), a_f)
            Af = ops.columns(idx)
            for refine in range(2):  # one Newton step plus one refinement step
                g = np.asarray(Af.T @ ops.apply_M(np.asarray(ops.A @ y))) + qp.q[idx]
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
        gy = ops.Qv(y) + qp.q
        res = kkt_residual_structured(qp, y, ops, lam if a is not None else None, g=gy)
        if res.total < best_res.total:
            best_y, best_res = y, res
        if res.total <= tol:
            return y, res, rnd
        z = gy + (lam * a if a is not None else 0.0)
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
        p = None
        if d_null is not None:
            p = np.zeros_like(y)
            p[idx] = d_null
        hit = _line_step(qp, ops, y, z, p, idx, w)
        if hit is None:
            break
        y, blocked_lb, blocked_ub = hit
        at_lb |= blocked_lb
        at_ub |= blocked_ub
    return best_y, best_res, max_rounds


def _line_step(qp: BoxQP, ops: StructuredOps, y, z, p, idx, w: float):
    """The dense polishing's line step along ``p``, with ``pᵀQp`` from the structure."""
    return _dense_line_step(qp, y, z, p, idx, qp.lb, qp.ub, w, quad=ops.quad)


# ------------------------------------------------------------------------------------ solver
def check_structure(qp: BoxQP) -> None:
    """Raise :class:`QPSolverError` unless the structure ``A``/``M`` of ``qp`` is well formed."""
    A = qp.A
    if A is None:
        raise QPSolverError("lifted QP solver needs a structured QP (BoxQP with `A`, `M`).")
    if len(A.shape) != 2 or A.shape[1] != qp.size:
        raise QPSolverError(f"QP structure `A` must have shape (n, {qp.size}), got {A.shape}.")
    data = A.data if sp.issparse(A) else A
    if not np.all(np.isfinite(data)):
        raise QPSolverError("QP structure `A` contains inf or NaN; the QP data must be finite.")
    M = qp.M
    if M is not None:
        n = A.shape[0]
        if np.ndim(M) == 0:
            if not (np.isfinite(M) and M > 0.0):
                raise QPSolverError(f"QP structure `M` as a scalar must be positive, got {M}.")
        elif np.shape(M) != (n, n) or not np.all(np.isfinite(M)):
            raise QPSolverError(f"QP structure `M` must be a finite ({n}, {n}) array.")


def merge_duplicate_columns(qp: BoxQP):
    """Merge variables with identical data (column of ``A``, ``q``, bounds, equality coefficient).

    Such variables enter the QP only through their sum, which ranges over the summed bounds, so
    the QP with one variable per group is equivalent; an answer ``Y`` of it expands to
    ``y_j = Y_g / |g|`` for every member ``j`` of group ``g`` (inside every member's box).  This
    is exact, and it removes the exact singularity of ``Q`` on repeated gradients (the
    stationarity QP of a problem with linear constraints repeats the same Jacobian for every
    cached sample).  Returns ``(reduced_qp, expand)`` or ``(qp, None)`` when nothing repeats.
    """
    A = qp.A
    k = qp.size
    if k < 2:
        return qp, None
    rng = np.random.default_rng(12345)  # fixed: the grouping (hence the answer) is reproducible
    n = A.shape[0]
    R = rng.standard_normal((2, n))
    proj = np.asarray(R @ A) if not sp.issparse(A) else np.asarray((A.T @ R.T).T)
    a = qp.eq_coeffs if qp.eq_coeffs is not None else np.zeros(k)
    sig = np.vstack([proj, qp.q[None, :], qp.lb[None, :], qp.ub[None, :], a[None, :]]).T
    _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if first.size == k:
        return qp, None
    rep = first[inverse]  # each variable's representative (first member of its group)
    diff = (A - A[:, rep]) if sp.issparse(A) else (A - A[:, rep])
    if (abs(diff).max() if sp.issparse(A) else np.max(np.abs(diff))) != 0.0:
        return qp, None  # a projection collision: keep the QP as it is
    counts = np.bincount(inverse)
    lb = np.bincount(inverse, weights=qp.lb)
    ub = np.bincount(inverse, weights=qp.ub)
    reduced = BoxQP(None, qp.q[first], lb, ub,
                    None if qp.eq_coeffs is None else qp.eq_coeffs[first], qp.eq_rhs, qp.kind,
                    A=A[:, first], M=qp.M)

    def expand(Y: np.ndarray) -> np.ndarray:
        return np.clip(Y[inverse] / counts[inverse], qp.lb, qp.ub)

    return reduced, expand


def _dense_copy(qp: BoxQP) -> BoxQP:
    """The dense form of a structured QP (``Q = Aᵀ M A`` formed), leaving ``qp`` untouched."""
    return BoxQP(qp.dense_Q(), qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind)


class LiftedQPSolver:
    """Solves structured QPs (``Q = Aᵀ M A``) without forming ``Q``: interior point + polishing.

    Follows the adapters' rules (:class:`~ncvx_ref.qp.solvers.LibraryQPSolver`): validation,
    ``y = 0`` exactly when it is optimal, a certified polished answer, else the interior-point
    answer if it converged, else :class:`QPSolverError`.  A structured QP the lifted path cannot
    certify (ill-conditioned ``M``) is solved densely (``Q`` formed) as a fallback.  Dense QPs
    are passed to ``dense``
    (default: :class:`~ncvx_ref.qp.solvers.PIQPSolver`).  Stateless apart from the memoized
    ``M⁻¹`` (a pure function of ``M``), so one QP always gets the same answer.

    **Arguments:** ``tol`` (certification tolerance, default
    :func:`~ncvx_ref.qp.polish.default_tolerance`), ``min_k`` (:meth:`wants_structure`
    threshold, default :data:`LIFTED_MIN_K`), ``dense`` (solver for dense QPs), ``name``.
    """

    #: interior-point tolerances at which polishing is tried, in order (measured, large_qps.md,
    #: "Polishing from the accurate interior point" (thirteenth session): 1e-9 first cost 25
    #: failed polishing rounds per QP near degenerate SVM optima)
    ipm_stages = (1e-12,)

    def __init__(self, *, tol: Optional[float] = None, min_k: Optional[int] = None,
                 dense=None, name: str = "lifted") -> None:
        self.name = name
        self.tol = tol
        self.min_k = LIFTED_MIN_K if min_k is None else int(min_k)
        self._dense = dense
        self.last_polish: Optional[PolishOutcome] = None
        self.last_status = ""
        self.dense_fallbacks = 0  # structured QPs that needed the dense path (diagnostics)
        self.low_rank_retries = 0  # ... that were retried with the dense M⁻¹

    def __repr__(self) -> str:
        return f"LiftedQPSolver(tol={self.tol}, min_k={self.min_k})"

    def wants_structure(self, n: int, k: int) -> bool:
        """Structured QPs pay off when ``k > n`` (rank-deficient ``Q``) and ``k >= min_k``."""
        return k >= self.min_k and k > n

    @property
    def dense(self):
        if self._dense is None:
            from .solvers import PIQPSolver
            self._dense = PIQPSolver()
        return self._dense

    def solve(self, qp: BoxQP) -> np.ndarray:
        if qp.A is None:
            return self.dense.solve(qp)
        from .solvers import check_qp
        check_qp(qp)
        self.last_polish = None
        reduced, expand = merge_duplicate_columns(qp)
        if expand is not None:
            return expand(self._solve_structured(reduced))
        return self._solve_structured(qp)

    def _solve_structured(self, qp: BoxQP) -> np.ndarray:
        ops = StructuredOps(qp)
        k = qp.size
        zero = np.zeros(k)
        if (np.all(qp.lb <= 0.0) and np.all(qp.ub >= 0.0)
                and kkt_residual_structured(qp, zero, ops, g=qp.q.copy()).total == 0.0):
            self.last_status = "y = 0 exact"
            return zero
        # An accurate interior point identifies the active set; polishing makes the answer exact.
        # Ill-conditioned data (a nearly singular M) can defeat the interior point's Woodbury
        # solves.  Through a low-rank form of M⁻¹ (its F is indefinite) that happens on QPs the
        # dense M⁻¹ solves: those are retried with it.  The dense path (Q formed once) is the
        # exact fallback of both.
        out, ok, status = None, False, "no iterate"
        for low_rank in (True, False):
            if not low_rank:
                if not ops.low_rank_used:
                    break  # the first attempt already used the dense M⁻¹: nothing to retry
                self.low_rank_retries += 1
            try:
                for y, ok, status in interior_point_stages(qp, ops, tols=self.ipm_stages,
                                                           low_rank=low_rank):
                    self.last_status = status
                    if not np.all(np.isfinite(y)):
                        ok, status = False, f"no finite answer ({status})"
                        break
                    out = polish_structured(qp, y, ops, tol=self.tol)
                    self.last_polish = out
                    if out.certified:
                        return out.y
            except QPSolverError as exc:  # M not numerically positive definite
                ok, status = False, str(exc)
        try:
            y_dense = self.dense.solve(_dense_copy(qp))
        except QPSolverError as exc:
            status = f"{status}; dense fallback failed: {exc}"
        else:
            self.last_status = f"{status}; dense fallback"
            self.dense_fallbacks += 1
            return y_dense
        if ok and out is not None:  # converged, uncertified: its answer, as the adapters do
            return out.y
        residual = out.residual.total if out is not None else float("nan")
        raise QPSolverError(f"lifted QP: interior point failed ({status}) and its answer could "
                            f"not be certified (KKT residual {residual:.3g}).")


# ------------------------------------------------------------------------------------ builders
_PROBE_MAX_N = 4000  # metrics known only as a product are materialized (M·I) up to this n


def host_metric(apply_M: Callable, n: int, backend) -> Tuple[bool, Any]:
    """The QP metric behind ``apply_M`` as host data for a structured QP: ``(available, M)``.

    ``M`` is None (identity: ``apply_M`` returns its argument), a float (a scaled identity: the
    full-memory BFGS ``H`` before its first update), or an ``n x n`` float64 array (the BFGS
    ``H`` itself, or ``apply_M(I)`` for a metric known only as a product, e.g. the regularized
    ``H_QP``, when ``n <= 4000``).  Not available for L-BFGS (its ``H`` is never formed) and
    for larger product-only metrics: the caller then builds the dense QP.  The transfer is
    ``ncvx_ref.backend.to_host``.
    """
    from ..backend import to_host
    from ..hessian import BFGSInverseHessian, LBFGSInverseHessian

    probe = backend.zeros((1,)) if n == 0 else backend.zeros((n,))
    if apply_M(probe) is probe:
        return True, None
    owner = getattr(apply_M, "__self__", None)
    if isinstance(owner, LBFGSInverseHessian):
        return False, None
    if isinstance(owner, BFGSInverseHessian):
        if owner.identity_scale is not None:
            return True, float(owner.identity_scale)
        M = to_host(owner.metric_array())
        form = owner.low_rank_form()
        if form is not None and isinstance(M, np.ndarray):
            register_low_rank_metric(M, form[0], [to_host(v) for v in form[1]])
        return True, M
    if n > _PROBE_MAX_N:
        return False, None
    M = to_host(apply_M(backend.eye(n)))
    return True, (M + M.T) / 2
