"""Inverse-Hessian approximations of the penalty function (ALGORITHM.md §11).

:class:`BFGSInverseHessian` (full memory, ``limited_mem_size = 0``) and
:class:`LBFGSInverseHessian` share one narrow interface: ``apply(V)`` (``V`` is ``(n,)`` or
``(n, k)``), ``update(s, y, sty, damped) -> code`` and ``state()`` (GRANSO's ``H_final``).
Update codes: 0 updated, 1 updated without scaling, 2 skipped (``sᵀy <= 0``), 3 skipped
(inf/NaN).  :func:`damp` is GRANSO's damping rule (§11.3), applied before ``update``.
"""
from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Any, Callable, List, Optional, Tuple
from array_api_compat import array_namespace, is_jax_array

from .backend import Backend
from . import bfgs_kernels
from .bfgs_factored import RankTwoTerms, term_capacity
from .bfgs_kernels import (add_symmetric_rank2, blas_operand, bfgs_matrix, rank2_kind,
                           scaled_identity, symmetric_product, symmetrize_lower)
from .lbfgs_compact import COMPACT_MIN_N, CompactPairs
from .product_memo import ProductMemo
from .result import BFGSCounts, Deferred

Array = Any

UPDATED, UPDATED_UNSCALED, SKIPPED_STY, SKIPPED_INFNAN = 0, 1, 2, 3
_AS_TERM = object()  # _rank2_update's answer when the update became a rank-2 term

#: full BFGS keeps the vectors of ``H - γ0 I`` (2 per update) while there are at most this
#: fraction of ``n`` of them: the lifted QP path then factors its Newton matrix in O(n r²)
#: instead of O(n³) (docs/large_qps.md, "Low-rank metric")
LOW_RANK_MAX_FRACTION = 0.25
LOW_RANK_MAX_VECTORS = 512  # and at most this many (memory: 512 n floats)


class _Counters:
    def __init__(self) -> None:
        self.requests = self.updates = self.damped_requests = self.damped_updates = 0
        self.scaling_skips = self.sty_fails = self.infnan_fails = 0

    def freeze(self) -> BFGSCounts:
        return BFGSCounts(self.requests, self.updates, self.damped_requests, self.damped_updates,
                          self.scaling_skips, self.sty_fails, self.infnan_fails)


def damp(s: Array, y: Array, sty: float, apply_H: Callable[[Array], Array], delta: float,
         backend: Backend, rayleigh_bound: Optional[float] = None) -> Tuple[Array, float, bool]:
    """GRANSO's damping (§11.3): Powell's rule with the *inverse* approximation ``H``.

    ``rayleigh_bound`` (an upper bound on ``vᵀHv / vᵀv``, or None): when ``sᵀy`` is at least
    ``delta`` times that bound times ``sᵀs``, the rule cannot fire and ``H s`` (a pass over an
    ``n x n`` ``H``) is not computed; the outcome is the same either way.
    """
    if rayleigh_bound is not None and sty >= delta * rayleigh_bound * backend.dot(s, s):
        return y, sty, False
    Hs = apply_H(s)
    sHs = backend.dot(s, Hs)
    if sty < delta * sHs:
        theta = ((1 - delta) * sHs) / (sHs - sty)
        return theta * y + (1 - theta) * Hs, theta * sty + (1 - theta) * sHs, True
    return y, sty, False


class BFGSInverseHessian:
    """Full-memory inverse BFGS with first-update scaling (§11.2).

    Until the first real update ``H`` may be a scaled identity (GRANSO's sparse identity ``H0``),
    held as a scalar, so nothing ``n x n`` exists before it is needed.  ``is_initial_sparse``
    tells the regularization step to skip work while ``H`` is still the (sparse) ``H0`` (§19.11).
    On the in-place rank-2 path (``n >= RANK2_MIN_N``, identity ``H0``) the first updates are
    kept as rank-2 terms (:mod:`~ncvx_ref.bfgs_factored`) and the matrix is formed only when
    they fill their buffer or when something reads the whole matrix.
    """

    def __init__(self, n: int, backend: Backend, H0: Optional[Array] = None, scaleH0: bool = True,
                 H0_is_sparse: bool = True):
        self._b = backend
        self.n = n
        self._gamma_identity: Optional[float] = 1.0 if H0 is None else None
        self._H = H0
        self.is_initial_sparse = H0_is_sparse
        self._scale_pending = scaleH0
        self.counts = _Counters()
        self._abs_bound: Optional[float] = None  # an upper bound on max|H_ij| (rank-2 path)
        self._owns_H = False  # H is this object's array (so the rank-2 path may update it in place)
        self._in_place_kind: Optional[str] = None  # rank2_kind of the last in-place update
        self._lower_only = False  # only H's lower triangle is current (BLAS syr2 updates)
        self._generation_view = None  # see metric_array
        # H = γ0 I (or diag(d0), a diagonal NumPy H0) + rank-2 terms in span{s_i, u_i}: the
        # vectors of those terms, kept while few enough to be useful (see low_rank_form)
        self._diag0 = None if H0 is None else _positive_diagonal(H0)
        self._low_rank: Optional[List[Array]] = [] if H0 is None or self._diag0 is not None else None
        self._gamma0: Optional[float] = None
        self._memo = ProductMemo(backend)  # products of recurring arrays (rank-2 path only)
        # H = γ I + rank-2 terms while they are few (see bfgs_factored): None when not (yet)
        # used; _terms_allowed turns False for good once the matrix is formed
        self._terms: Optional[RankTwoTerms] = None
        self._terms_allowed = H0 is None and term_capacity(n) > 0

    @property
    def identity_scale(self) -> Optional[float]:
        """``γ`` while ``H`` is still the scaled identity ``γ I`` (nothing ``n x n`` formed), else None."""
        return self._gamma_identity if self._H is None and self._terms is None else None

    @property
    def dense(self) -> Array:
        """``H`` as a dense ``n x n`` array (materializes a scaled identity).  The live array:
        from ``n = RANK2_MIN_N`` on (NumPy, torch, CuPy) later updates change it in place;
        :meth:`state` gives a copy."""
        if self._H is None and self._terms is None:
            return self._gamma_identity * self._b.eye(self.n)
        return self._whole()

    def _whole(self) -> Array:
        """``self._H`` with both triangles current (the first read after BLAS updates copies the
        lower triangle over the upper one; rank-2 terms are formed into the matrix first)."""
        if self._terms is not None:
            self._form_matrix()
        if self._lower_only:
            symmetrize_lower(self._H)
            self._lower_only = False
        return self._H

    def _form_matrix(self) -> None:
        """``γI`` plus the rank-2 terms as the ``n x n`` matrix, from now on updated in place."""
        kind = self._in_place_kind
        self._H = self._terms.materialize(self._gamma_identity, kind)
        self._lower_only = kind == "blas"
        self._owns_H = True
        self._gamma_identity = None
        self._terms = None
        self._terms_allowed = False
        self._generation_view = None

    def apply(self, V: Array) -> Array:
        if self._H is None:
            if self._terms is not None:
                return self._terms.apply(V, self._gamma_identity)
            return V if self._gamma_identity == 1.0 else self._gamma_identity * V
        if self._in_place_kind == "blas" and blas_operand(V):  # NumPy float64, symmetric H
            return symmetric_product(self._H, V, lower_only=self._lower_only)
        return self._whole() @ V

    @property
    def memoizes(self) -> bool:
        """Whether :meth:`apply_each` keeps products across updates (the in-place rank-2 path,
        ``n >= RANK2_MIN_N``); otherwise callers keep their one product of a joined matrix,
        whose rounding the reference cases depend on."""
        return self._terms is not None or (self._H is not None and self._in_place_kind is not None)

    def apply_each(self, arrays: List[Array]) -> List[Array]:
        """``[H v for v in arrays]``, for arrays that may come back in later iterations (gradients
        of the current point and of cached samples): on the rank-2 path a product known from an
        earlier call is updated in ``O(n)`` per column instead of recomputed
        (:mod:`~ncvx_ref.product_memo`).  The products are shared: never write into them."""
        if not self.memoizes:
            return [self.apply(v) for v in arrays]
        return self._memo.products(arrays, self.apply)

    def rayleigh_bound(self) -> Optional[float]:
        """An upper bound on ``vᵀHv / vᵀv`` (the trace of the positive definite ``H``, times a
        margin for rounding) on the rank-2 path, else None: it lets damping skip ``H s`` when
        ``sᵀy`` is large enough whatever ``sᵀHs`` is."""
        if not self.memoizes:
            return None
        if self._terms is not None:
            return 1.01 * self._terms.trace(self._gamma_identity)
        xp = self._b.xp
        return 1.01 * float(xp.sum(xp.linalg.diagonal(self._H)))

    def update(self, s: Array, y: Array, sty: float, damped: bool) -> int:
        c = self.counts
        c.requests += 1
        c.damped_requests += int(damped)
        if sty <= 0:  # (a NaN sty goes on and is caught by the inf/NaN test, as in GRANSO)
            c.sty_fails += 1
            self._memo.age()
            return SKIPPED_STY
        b = self._b
        code = UPDATED
        if self._scale_pending:
            gamma = sty / b.dot(y, y) if b.dot(y, y) != 0 else math.inf
            if math.isinf(gamma) or math.isnan(gamma):
                code = UPDATED_UNSCALED
                c.scaling_skips += 1
            elif self._H is None:  # the scaled identity (no rank-2 term precedes the scaling)
                self._gamma_identity *= gamma
            else:
                self._H = gamma * self._H
                self._owns_H = True
                self._memo.clear()
                if self._diag0 is not None:
                    self._diag0 = gamma * self._diag0
                if self._abs_bound is not None:
                    self._abs_bound *= gamma
            self._scale_pending = False
        rho = 1.0 / sty
        Hy = self.apply(y)
        u = rho * Hy
        yHy = b.dot(y, Hy)
        kappa = max(rho * rho * yHy + rho, 0.0)
        kind = rank2_kind(s, self._H)
        if kind is not None:
            H_new = self._rank2_update(u, s, kappa, kind)
        else:
            w = math.sqrt(kappa) * s
            H_new = bfgs_matrix(self._H, u, s, w, b, identity_scale=self._gamma_identity)
            self._memo.clear()
        if H_new is None:
            c.infnan_fails += 1
            self._memo.age()
            return SKIPPED_INFNAN
        self._record_low_rank(s, u)
        if H_new is not _AS_TERM:
            self._H = H_new
            self._owns_H = True  # either path's result is this object's array (never the user's H0)
            self._gamma_identity = None
        self._generation_view = None
        self.is_initial_sparse = False
        c.updates += 1
        c.damped_updates += int(damped)
        return code

    def _record_low_rank(self, s: Array, u: Array) -> None:
        """Keep the vectors of an applied update while ``H - γ0 I`` (or ``H - diag(d0)``) has
        low rank.

        Every update adds ``-(u sᵀ + s uᵀ) + κ s sᵀ``, so ``H - γ0 I`` stays in the span of
        the recorded ``s`` and ``u``.  Beyond ``LOW_RANK_MAX_FRACTION·n`` vectors the low-rank
        form costs more than a dense factorization (and beyond ``LOW_RANK_MAX_VECTORS`` more
        memory than it is worth); the rank only grows, so recording then stops for good.
        """
        if self._low_rank is None:
            return
        if self._gamma0 is None and self._diag0 is None:
            self._gamma0 = self._gamma_identity
        if len(self._low_rank) + 2 > min(LOW_RANK_MAX_FRACTION * self.n, LOW_RANK_MAX_VECTORS):
            self._low_rank = None
            return
        # s may be the caller's array; u is this update's own (rho * H y): no copy needed
        self._low_rank += [self._b.xp.asarray(s, copy=True), u]

    def low_rank_form(self) -> Optional[Tuple[Any, List[Array]]]:
        """``(base, vectors)`` with ``H - B`` in the span of ``vectors``: ``B = γ0 I`` for a float
        ``base`` (``H`` grown from the scaled identity; at least one vector), ``B = diag(base)``
        for a host vector (``H`` grown from a diagonal NumPy ``H0``; no vector before the first
        update).  None for any other ``H0``, before the first update from the identity, or after
        too many updates for the form to pay."""
        if self._low_rank is None or self._H is None:
            return None
        if self._diag0 is not None:
            return self._diag0, list(self._low_rank)
        if not self._low_rank:
            return None
        return self._gamma0, list(self._low_rank)

    def state(self, snapshot: bool = True) -> Array:
        """GRANSO's ``H_final``: a copy when later updates would change ``H`` in place (unless
        ``snapshot=False``: the end of the run hands over the live array, no copy).  Rank-2
        terms are formed into a new matrix: for good at the end, else a snapshot of them."""
        if self._terms is not None and snapshot:
            return self._terms.matrix(self._gamma_identity, self._in_place_kind)
        if snapshot and self._H is not None and self._may_update_in_place():
            return self._b.xp.asarray(self._whole(), copy=True)
        return self.dense

    def final_state(self):
        """``H_final`` for the result: :meth:`state` at the end of the run, or, while the updates
        are still rank-2 terms, a :class:`~ncvx_ref.result.Deferred` that forms the matrix when
        the caller first reads it (a short run whose ``H_final`` is never read then never
        allocates ``n x n``; the recipe holds the terms alone, not this object)."""
        if self._terms is None:
            return self.state(snapshot=False)
        return Deferred(partial(self._terms.matrix, self._gamma_identity, self._in_place_kind))

    def _may_update_in_place(self) -> bool:
        """Whether a later update may write into the current ``H`` (so views of it would change)."""
        return self._owns_H and rank2_kind(self._H[0, :], self._H) is not None

    def metric_array(self) -> Array:
        """``H`` as an array object that is new after every update (a view, no copy), so that
        caches keyed by array identity (the lifted QP path's ``M⁻¹``) see each ``H`` once."""
        if self._H is None and self._terms is None:
            return self.dense
        if self._generation_view is None:
            import numpy as np

            H = self._whole()
            self._generation_view = H.view() if isinstance(H, np.ndarray) else H
        return self._generation_view

    def _rank2_update(self, u, s, kappa: float, kind: str):
        """The update as ``H + s bᵀ + b sᵀ`` with ``b = (κ/2) s - u`` (the same matrix as
        ``H − (u sᵀ + s uᵀ) + κ s sᵀ``), in place once ``H`` is this object's own array: no
        ``n x n`` temporary (the elementwise form needs about four).  ``kind`` "blas": one BLAS
        ``syr2`` on the lower triangle (NumPy float64; the upper one is refreshed only when the
        whole matrix is read, see :meth:`_whole`); "inplace": torch's ``addr_`` or, elsewhere
        (CuPy), row blocks updated in place.
        Inf/NaN is ruled out by a bound on ``max|H_ij|``; only when the bound nears overflow is
        the update made on a copy and checked entry by entry.
        While the matrix has not been formed the update becomes a rank-2 term instead
        (:meth:`_add_term`; answer ``_AS_TERM``)."""
        xp = self._b.xp
        b = (0.5 * kappa) * s - u
        s_max = float(xp.max(xp.abs(s)))
        b_max = float(xp.max(xp.abs(b)))
        if not (math.isfinite(s_max) and math.isfinite(b_max)):
            return None
        if self._H is None and self._terms_allowed and self._add_term(s, b, s_max * b_max, kind):
            return _AS_TERM
        if self._H is None:
            out = scaled_identity(self.n, self._gamma_identity, self._b)
            bound = abs(self._gamma_identity)
        else:
            bound = self._abs_bound
            if bound is None:
                bound = float(xp.max(xp.abs(self._H)))
            out = self._H if self._owns_H else xp.asarray(self._H, copy=True)
        bound = bound + 2.0 * s_max * b_max
        checked = not bound < _overflow_limit(xp, out.dtype)
        if checked and out is self._H:
            out = xp.asarray(out, copy=True)  # a failed update must leave H as it was
        out = add_symmetric_rank2(out, s, b, kind)
        if checked:
            if not bool(xp.all(xp.isfinite(out))):
                return None
            bound = float(xp.max(xp.abs(out)))
        self._lower_only = kind == "blas"  # syr2 wrote the lower triangle alone
        if self._H is None:
            self._memo.clear()  # H was the scaled identity: nothing memoized follows it
        else:
            self._memo.rank2(s, b)
        self._abs_bound = bound
        self._in_place_kind = kind
        return out

    def _add_term(self, s, b, sb_max: float, kind: str) -> bool:
        """Record ``s bᵀ + b sᵀ`` as a term of ``H = γI + terms``; False (after forming the
        matrix of the terms so far) when the buffer is full or the bound on ``max|H_ij|`` nears
        overflow: the caller then updates the matrix in place."""
        if self._terms is None:
            self._terms = RankTwoTerms(term_capacity(self.n), self.n, self._b)
            self._in_place_kind = kind
        terms = self._terms
        bound = (abs(self._gamma_identity) if len(terms) == 0 else self._abs_bound) + 2.0 * sb_max
        if terms.full or not bound < _overflow_limit(self._b.xp, self._b.dtype):
            self._form_matrix()
            return False
        if len(terms) == 0:
            self._memo.clear()  # H was the scaled identity: nothing memoized follows it
        else:
            self._memo.rank2(s, b)
        terms.append(s, b)
        self._abs_bound = bound
        return True


def _positive_diagonal(H0: Array):
    """The diagonal of ``H0`` (a NumPy copy) when ``H0`` is a diagonal float64 NumPy matrix with
    a positive, finite diagonal, else None (one pass over ``H0``, no temporary)."""
    import numpy as np

    if not (isinstance(H0, np.ndarray) and H0.dtype == np.float64 and H0.ndim == 2
            and H0.shape[0] == H0.shape[1]):
        return None
    d = np.array(np.diagonal(H0))
    if np.count_nonzero(H0) != np.count_nonzero(d):
        return None
    if not (np.all(np.isfinite(d)) and np.min(d, initial=1.0) > 0.0):
        return None
    return d


def _overflow_limit(xp, dtype) -> float:
    """Past this bound on ``max|H_ij|`` an in-place update is checked entry by entry (and rank-2
    terms are first formed into the matrix)."""
    return bfgs_kernels.RANK2_EXACT_CHECK_FRACTION * float(xp.finfo(dtype).max)


class LBFGSInverseHessian:
    """Limited-memory inverse BFGS with at most ``m`` pairs, oldest first (§11.4)."""

    @property
    def memoizes(self) -> bool:
        """Whether :meth:`apply_each` keeps what it can of products across updates: in compact
        form (``n >= COMPACT_MIN_N``), the arrays' inner products with the stored pairs."""
        return self._compact is not None

    def apply_each(self, arrays: List[Array]) -> List[Array]:
        """``[H v for v in arrays]``, for arrays that may come back after the next update (see
        :meth:`CompactPairs.apply_each`).  The recursion keeps nothing: the reference cases
        keep the product of their one joined matrix."""
        if self._compact is not None and self._S:
            return self._compact.apply_each(arrays, self.gamma)
        return [self.apply(v) for v in arrays]

    def implicit(self, arrays: List[Array]):
        """``H A`` (``A`` the arrays side by side) as a
        :class:`~ncvx_ref.lbfgs_compact.ImplicitProduct`, in compact form only (see
        :attr:`memoizes`)."""
        return self._compact.implicit(arrays, self.gamma)

    def rayleigh_bound(self) -> Optional[float]:
        """An upper bound on ``vᵀHv / vᵀv`` in compact form (see
        :meth:`CompactPairs.rayleigh_bound`), else None: the recursion's damping keeps computing
        ``H s``, as the reference cases do."""
        if self._compact is None or not self._S:
            return None
        return self._compact.rayleigh_bound(self.gamma)

    def __init__(self, n: int, m: int, backend: Backend, H0: Optional[Array] = None,
                 scaleH0: bool = True, fixed_scaling: bool = True, warm_start: Optional[dict] = None):
        self._b = backend
        self.n, self.m = n, m
        self._H0 = H0  # None = identity
        self._S: List[Array] = []
        self._Y: List[Array] = []
        self._rho: List[float] = []
        self._jax_pairs: Optional[Tuple[Array, Array, Array]] = None  # see _padded_pairs_jax
        self._compact: Optional[CompactPairs] = None  # eager backends, n >= COMPACT_MIN_N, identity H0
        self.gamma = 1.0
        self._update_gamma = scaleH0
        self._fixed_scaling = fixed_scaling
        self.counts = _Counters()
        self.is_initial_sparse = True
        if warm_start is not None:
            self._load(warm_start)

    def _load(self, ws: dict) -> None:
        S, Y = self._b.asarray(ws["S"]), self._b.asarray(ws["Y"])
        rho = [float(r) for r in _flat_list(ws["rho"])]
        c = min(int(S.shape[1]), self.m)
        self._S, self._Y, self._compact = [], [], None
        for j in range(c):
            self._append_pair(S[:, j], Y[:, j], 1.0 / rho[j])
        self._rho = rho[:c]
        self._jax_pairs = None
        self.gamma = float(ws["gamma"])

    def _wants_compact(self, s) -> bool:
        """Whether products use the compact form (:mod:`ncvx_ref.lbfgs_compact`): vectors of at
        least ``COMPACT_MIN_N`` entries with the identity ``H0``, on an eager backend (JAX has
        its own compiled recursion)."""
        return (self._H0 is None and not is_jax_array(s) and len(s.shape) == 1
                and s.shape[0] >= COMPACT_MIN_N)

    def _append_pair(self, s, y, sty: float) -> None:
        """Drop the oldest pair when full and append ``(s, y)``; in compact form the pair is
        copied into the buffers and ``_S``/``_Y`` hold views of the stored rows."""
        if len(self._S) == self.m:
            del self._S[0], self._Y[0]
        if self._compact is None and self._wants_compact(s):
            self._compact = CompactPairs(self.m, s.shape[0], self._b)
        if self._compact is not None:
            s, y = self._compact.push(s, y, sty)
        self._S.append(s)
        self._Y.append(y)

    @property
    def pairs(self) -> int:
        return len(self._S)

    def apply(self, V: Array) -> Array:
        if self._compact is not None and self._S:
            return self._compact.apply(V, self.gamma)
        if self._S and _numpy_in_place_ok(V, self._S[0]):
            return _two_loop_numpy(self._S, self._Y, self._rho, self.gamma, self._H0, V)
        if self._S and self._H0 is None and is_jax_array(V):
            if self._jax_pairs is None:  # stacked once per update, not once per product
                self._jax_pairs = _padded_pairs_jax(self._S, self._Y, self._rho, self.m, V.dtype)
            return _compiled_two_loop_jax(self._jax_pairs, self.gamma, V)
        return _two_loop(self._S, self._Y, self._rho, self.gamma, self._H0, V)

    def update(self, s: Array, y: Array, sty: float, damped: bool) -> int:
        c = self.counts
        b = self._b
        c.requests += 1
        c.damped_requests += int(damped)
        if sty <= 0:
            c.sty_fails += 1
            return SKIPPED_STY
        if not (b.all_finite(s) and b.all_finite(y)):
            c.infnan_fails += 1
            return SKIPPED_INFNAN
        rho = 1.0 / sty
        code = UPDATED
        if self._update_gamma:
            yy = b.dot(y, y)
            gamma = 1.0 / (rho * yy) if rho * yy != 0 else math.inf
            if math.isinf(gamma) or math.isnan(gamma):
                code = UPDATED_UNSCALED
                c.scaling_skips += 1
            else:
                self.gamma = gamma
                if self._fixed_scaling:
                    self._update_gamma = False
        if len(self._rho) == self.m:
            del self._rho[0]
        self._rho.append(rho)
        self._jax_pairs = None
        self._append_pair(s, y, sty)
        c.updates += 1
        c.damped_updates += int(damped)
        return code

    def final_state(self) -> dict:
        """``H_final`` for the result (see ``BFGSInverseHessian.final_state``)."""
        return self.state(snapshot=False)

    def state(self, snapshot: bool = True) -> dict:
        """GRANSO's L-BFGS ``H_final``: ``S``, ``Y`` (``n x c``, oldest first), ``rho``, ``gamma``."""
        xp = self._b.xp
        if self._S:
            S, Y = xp.stack(self._S, axis=1), xp.stack(self._Y, axis=1)
        else:
            S = Y = self._b.zeros((self.n, 0))
        return {"S": S, "Y": Y, "rho": self._b.asarray(self._rho) if self._rho else self._b.zeros((0,)),
                "gamma": self.gamma}


def _two_loop(S, Y, RHO, gamma, H0, V):
    """The two-loop recursion ``H V`` (§11.4) in any namespace (``V`` is ``(n,)`` or ``(n, k)``).

    Outer products are written with ``reshape`` rather than ``[:, None]`` indexing: the same
    values, but JAX's indexing machinery costs ~0.2 ms per call, more than the arithmetic.
    """
    xp = array_namespace(V)
    vector = len(V.shape) == 1
    Q = xp.reshape(V, (-1, 1)) if vector else V

    def column(v):
        return xp.reshape(v, (-1, 1))

    def row(v):
        return xp.reshape(v, (1, -1))

    alphas = []
    for s, y, rho in zip(reversed(S), reversed(Y), reversed(RHO)):
        a = rho * (s @ Q)  # (k,)
        Q = Q - column(y) * row(a)
        alphas.append(a)
    R = gamma * (Q if H0 is None else H0 @ Q)
    for s, y, rho, a in zip(S, Y, RHO, reversed(alphas)):
        beta = rho * (y @ R)
        R = R + column(s) * row(a - beta)
    return xp.reshape(R, (-1,)) if vector else R


def _two_loop_jax(S, Y, RHO, gamma, V, capacity: int):
    """:func:`_two_loop` (identity ``H0``) as one XLA computation on JAX arrays.

    Eager JAX dispatches every operation separately (~0.1 ms each, ~6 per pair), which made the
    recursion half of an iteration's time; compiled, it is one dispatch.  The pairs are padded
    to ``capacity`` (:func:`_padded_pairs_jax`), so there is one compilation per shape of ``V``
    for the whole run (memory stays flat).  The arithmetic is the generic recursion's; XLA may
    fuse it differently (rounding-level differences, as between any two backends).
    """
    return _compiled_two_loop_jax(_padded_pairs_jax(S, Y, RHO, capacity, V.dtype), gamma, V)


def _padded_pairs_jax(S, Y, RHO, capacity: int, dtype):
    """``(S, Y, rho)`` stacked as ``(capacity, n)``, ``(capacity, n)``, ``(capacity,)``, oldest
    first, led by zero pairs (``s = y = 0``, ``rho = 0``: no-ops, every update adds a zero)."""
    import jax.numpy as jnp

    pad = capacity - len(S)
    zero = [jnp.zeros_like(S[0])] * pad
    return (jnp.stack(zero + list(S)), jnp.stack(zero + list(Y)),
            jnp.asarray([0.0] * pad + list(RHO), dtype=dtype))


def _compiled_two_loop_jax(pairs, gamma, V):
    """The jit-compiled recursion on :func:`_padded_pairs_jax`'s stacked pairs."""
    import jax.numpy as jnp

    S, Y, rho = pairs
    return _jax_two_loop_kernel()(S, Y, rho, jnp.asarray(gamma, dtype=V.dtype), V)


@lru_cache(maxsize=None)
def _jax_two_loop_kernel():
    """``jax.jit`` of the generic recursion on stacked pairs (built once, on first use)."""
    import jax

    def recursion(S, Y, rho, gamma, V):
        p = S.shape[0]
        return _two_loop([S[i] for i in range(p)], [Y[i] for i in range(p)],
                         [rho[i] for i in range(p)], gamma, None, V)
    return jax.jit(recursion)


#: up to this many columns the NumPy two-loop recursion updates column by column (long
#: contiguous loops); wider blocks use one broadcast operation per update (long rows).
_COLUMN_WISE_MAX = 8


def _numpy_in_place_ok(V, s) -> bool:
    """Whether :func:`_two_loop_numpy` applies: NumPy arrays, ``V`` C-contiguous (a vector or
    ``(n, k)``), so its working matrix has the layout the generic recursion's arrays have."""
    import numpy as np

    return (isinstance(V, np.ndarray) and isinstance(s, np.ndarray) and V.ndim in (1, 2)
            and V.flags.c_contiguous and V.dtype == s.dtype)


def _two_loop_numpy(S, Y, RHO, gamma, H0, V):
    """:func:`_two_loop` on NumPy, bit for bit.

    The same operations on the same values as the generic code — every ``s @ Q`` on a
    C-contiguous ``(n, k)`` matrix, every update ``Q_ij − y_i a_j`` / ``R_ij + s_i c_j`` as one
    product and one sum — but written into one working matrix instead of two new arrays per
    pair, and column by column for narrow ``V`` (NumPy's broadcast loops over rows of 1-3
    elements cost ~5x the arithmetic).
    """
    import numpy as np

    vector = V.ndim == 1
    Q = V[:, None] if vector else V
    n, k = Q.shape
    by_column = k <= _COLUMN_WISE_MAX
    W = np.empty((n, k), dtype=V.dtype)  # the working matrix: Q, then R
    T = np.empty(n if by_column else (n, k), dtype=V.dtype)

    def add_outer(out, src, v, c, subtract):  # out = src ∓ v cᵀ, elementwise
        op = np.subtract if subtract else np.add
        if by_column:
            for j in range(k):
                np.multiply(v, c[j], out=T)
                op(src[:, j], T, out=out[:, j])
        else:
            np.multiply(v[:, None], c[None, :], out=T)
            op(src, T, out=out)

    alphas = []
    for s, y, rho in zip(reversed(S), reversed(Y), reversed(RHO)):
        a = rho * (s @ Q)  # (k,)
        add_outer(W, Q, y, a, subtract=True)
        Q = W
        alphas.append(a)
    if H0 is None:
        R = np.multiply(gamma, W, out=W)
    else:
        R = gamma * (H0 @ W)
    for s, y, rho, a in zip(S, Y, RHO, reversed(alphas)):
        beta = rho * (y @ R)
        add_outer(R, R, s, a - beta, subtract=False)
    return R[:, 0] if vector else R


def _flat_list(a) -> list:
    if hasattr(a, "tolist"):
        out = a.tolist()
    else:
        out = list(a)
    flat = []
    for v in out if isinstance(out, list) else [out]:
        flat.extend(v if isinstance(v, list) else [v])
    return flat
