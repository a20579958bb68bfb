"""L-BFGS products ``H V`` in the compact form of Byrd, Nocedal & Schnabel (1994), for large ``n``.

The two-loop recursion (§11.4) makes ``4p`` passes over an ``n x k`` working matrix for ``p``
pairs; at ``n = 1e5`` that was half of an iteration.  With the scaled identity ``H0 = γI`` the
same operator is

    H = γI + [S  γY] [[R⁻ᵀ(D + γYᵀY)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]] [S  γY]ᵀ

(``S``, ``Y`` the pairs as columns, oldest first; ``R`` the upper triangle of ``SᵀY`` with
``D = diag(sᵢᵀyᵢ)`` on its diagonal), so ``H V`` is two thin matrix products with the stored
pairs plus ``p x p`` work:

    w = R⁻¹ (SᵀV),    t = R⁻ᵀ((D + γYᵀY) w - γ YᵀV),    H V = γV + S t - γ Y w.

The pairs live in one preallocated ``(2 p_max, n)`` buffer (a new pair overwrites the oldest
slot) together with ``SᵀY`` and ``YᵀY``, extended by one matrix-vector product per update.
The diagonal ``D`` is the ``sᵀy`` the method passed (``1/ρ`` of the recursion), so both forms
apply the same operator; they differ by rounding only.  Used on eager backends (NumPy, torch,
CuPy) with ``n >= COMPACT_MIN_N`` (all reference cases are smaller, so they keep the
recursion's exact arithmetic); see docs/deviations.md.

Arrays that come back (the gradients the stationarity QP multiplies at the end of an iteration
are the ones the next steering QP multiplies, after one update) keep their inner products with
the stored pairs (:meth:`CompactPairs.apply_each`): after an update only the new pair's two
rows are dotted with them, so such a product reads the pairs once (the output) instead of twice.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
from scipy.linalg.lapack import dtrtrs as _trtrs

from .backend import Backend, to_host
from .product_memo import KeptPerArray
from .thin_products import by_column, columnwise, columnwise_plus

__all__ = ["CompactPairs", "COMPACT_MIN_N"]

#: from this many variables on, L-BFGS products use the compact form (no reference case is that
#: large; at n = 512, 10 pairs, a product is 3-6x faster than the recursion: 22 against 130 µs)
COMPACT_MIN_N = 512

#: kept inner products of an array not asked for during this many consecutive pushes are
#: dropped (an array of an earlier point).  An array is asked for again after one push (the
#: stationarity QP's gradients by the next steering QP) or at every iteration (cached samples
#: of the neighbourhood), so 1 keeps every reuse and the private copies of at most two
#: iterations' arrays (n = 1e6: 48 MB)
MAX_IDLE_PUSHES = 1

#: :meth:`CompactPairs.rayleigh_bound` is not given when the 1-norm condition number of ``R``
#: exceeds this
MAX_BOUND_CONDITION = 1e8

#: ... nor below this many stored entries (pairs x n): the bound's 2p x 2p work (~60-100 µs)
#: then costs as much as the ``H s`` it would save (n = 1e4, 10 pairs: ~80 µs)
BOUND_MIN_ENTRIES = 100_000

Array = Any


class CompactPairs:
    """At most ``capacity`` pairs of length ``n`` and their inner products, for ``H V``.

    The pairs stay on the run's device (any eager Array-API backend: NumPy, torch, CuPy); the
    ``p x p`` algebra runs on the host in float64 (``p <= capacity``, a few dozen numbers).
    """

    def __init__(self, capacity: int, n: int, backend: Backend) -> None:
        # One buffer, pairs interleaved (row 2i = s, row 2i + 1 = y of slot i): the used rows are
        # one contiguous block, so each product reads every stored vector once.
        self.P = backend.zeros((2 * capacity, n))
        self.StY = np.zeros((capacity, capacity))  # [i, j] = s_i · y_j, slot-indexed
        self.YtY = np.zeros((capacity, capacity))
        self.sty = np.zeros(capacity)  # the sᵀy given with each pair (1/ρ)
        self.sts = np.zeros(capacity)  # sᵀs of each pair (for rayleigh_bound)
        self.slots: list[int] = []  # slots holding pairs, oldest first
        self.capacity = capacity
        self.backend = backend
        self._factors_gamma = None  # the γ of the cached small factors; None: none valid
        self._factors = None
        self._known = KeptPerArray(backend, MAX_IDLE_PUSHES)  # -> _InnerRows, see apply_each

    def push(self, s: Array, y: Array, sty: float) -> Tuple[Array, Array]:
        """Store the newest pair (dropping the oldest when full); returns its stored rows."""
        capacity = self.capacity
        slot = self.slots.pop(0) if len(self.slots) == capacity else len(self.slots)
        P = self.P
        P[2 * slot, :] = s  # full Array-API indexing (no implicit trailing axes)
        P[2 * slot + 1, :] = y
        self.slots.append(slot)
        self._factors_gamma = None  # the pairs changed
        self._age_known(slot)
        used = len(self.slots)
        products = to_host(P[: 2 * used, :] @ P[2 * slot + 1, :])
        self.StY[:used, slot] = products[0::2]  # s_i · y_new for every stored s_i
        yy = products[1::2]
        self.YtY[:used, slot] = yy
        self.YtY[slot, :used] = yy
        self.sty[slot] = sty
        self.sts[slot] = float(to_host(P[2 * slot, :] @ P[2 * slot, :]))
        return P[2 * slot, :], P[2 * slot + 1, :]

    def _small_factors(self, gamma: float):
        """``(order, R, D + γYᵀY)`` in age order: the ``p x p`` matrices of the products,
        computed once per set of pairs and ``γ`` (an iteration makes about five products)."""
        if self._factors_gamma != gamma:  # None after every push
            order = np.asarray(self.slots)
            used = len(self.slots)
            R = np.triu(self.StY[np.ix_(order, order)], 1)
            d = self.sty[order]
            R[np.diag_indices(used)] = d
            inner = self.YtY[np.ix_(order, order)] * gamma
            inner[np.diag_indices(used)] += d
            self._factors, self._factors_gamma = (order, R, inner), gamma
        return self._factors

    def rayleigh_bound(self, gamma: float) -> Optional[float]:
        """An upper bound on ``vᵀHv / vᵀv``, or None where rounding could defeat it.

        ``H = γI + W M Wᵀ`` with ``W = [S  γY]`` and ``M`` the ``2p x 2p`` middle matrix of the
        module docstring, so ``vᵀHv <= (γ + max(λmax(M), 0) ‖W‖²) ‖v‖²`` with ``‖W‖²`` at most
        ``Σ sᵢᵀsᵢ + γ² Σ yᵢᵀyᵢ``; the bound carries a margin for rounding and is not given
        when ``R`` is ill-conditioned (``M``'s entries then lose their accuracy), nor where
        ``H s`` is cheaper than the bound (:data:`BOUND_MIN_ENTRIES`).  It lets damping skip
        ``H s`` (a product of two passes over the pairs) when ``sᵀy`` is large.
        """
        if not self.slots:
            return gamma
        if len(self.slots) * self.P.shape[1] < BOUND_MIN_ENTRIES:
            return None
        order, R, inner = self._small_factors(gamma)
        p = len(order)
        R_inv = _upper_solve(R, np.eye(p), trans=0)
        if np.linalg.norm(R, 1) * np.linalg.norm(R_inv, 1) > MAX_BOUND_CONDITION:
            return None  # the 1-norm condition number of R
        M = np.zeros((2 * p, 2 * p))
        M[:p, :p] = R_inv.T @ inner @ R_inv
        M[p:, :p] = -R_inv  # eigvalsh reads the lower triangle only
        lam = np.linalg.eigvalsh(M)
        top = max(lam[-1] + 64 * np.finfo(float).eps * max(-lam[0], lam[-1]), 0.0)
        W_frobenius2 = float(self.sts[order].sum() + gamma ** 2 * self.YtY[order, order].sum())
        return 1.01 * (gamma + top * W_frobenius2)

    def apply(self, V: Array, gamma: float) -> Array:
        """``H V`` for ``V`` of shape ``(n,)`` or ``(n, k)`` (a new array)."""
        if not self.slots:
            return gamma * V
        return self._finish(self._inner(V), V, gamma)

    def apply_each(self, arrays: List[Array], gamma: float) -> List[Array]:
        """``[H v for v in arrays]`` for arrays that may come back after later pushes: the inner
        products of each with the stored pairs are kept, and on a later call only the rows of
        pairs pushed since are computed.  A kept array's content is compared with a private
        copy on every use (a user function may rewrite one buffer in place), so the result is
        always the product of the array as it is now."""
        if not self.slots:
            return [gamma * v for v in arrays]
        return [self._finish(self._inner_kept(v), v, gamma) for v in arrays]

    def _inner(self, V: Array) -> np.ndarray:
        """``P V`` on the host, ``(2 used, k)`` or ``(2 used,)``: every stored vector dotted with
        every column of ``V``, in slot order (row ``2i`` = ``s_i``, ``2i + 1`` = ``y_i``)."""
        P = self.P[: 2 * len(self.slots), :]  # slots 0..used-1 are the used ones
        return columnwise(P, V) if by_column(P, V) else to_host(P @ V)

    def _inner_kept(self, v: Array) -> np.ndarray:
        """:meth:`_inner` of ``v`` from the kept rows, the rows of newer pairs computed now."""
        entry = self._known.get(v)
        if entry is None:
            inner = self._inner(v)
            self._known.put(v, _InnerRows(inner, self.capacity))
            return inner
        known = entry.value
        for slot in self.slots:
            if not known.current[slot]:
                rows = self.P[2 * slot: 2 * slot + 2, :]
                known.rows[2 * slot: 2 * slot + 2] = (columnwise(rows, v) if by_column(rows, v)
                                                      else to_host(rows @ v))
                known.current[slot] = True
        return known.rows[: 2 * len(self.slots)]

    def _age_known(self, slot: int) -> None:
        """A pair was pushed into ``slot``: its rows of every kept array are out of date, and
        arrays idle for more than :data:`MAX_IDLE_PUSHES` pushes are dropped."""
        for entry in self._known.entries():
            entry.value.current[slot] = False
        self._known.age()

    def implicit(self, arrays: List[Array], gamma: float) -> "ImplicitProduct":
        """``H A`` for ``A`` the arrays side by side, without forming it (:class:`ImplicitProduct`);
        the inner products ``P A`` are kept as in :meth:`apply_each`."""
        PA = [self._inner_kept(a) for a in arrays]
        PA = np.concatenate([p if p.ndim == 2 else p[:, None] for p in PA], axis=1)
        return ImplicitProduct(arrays, PA, self._coefficients(PA, gamma), gamma,
                               self.P[: 2 * len(self.slots), :], self.backend)

    def _coefficients(self, PV: np.ndarray, gamma: float) -> np.ndarray:
        """``C`` with ``H V = γV + Pᵀ C`` from ``PV = P V``: the stacked ``(t, −γ w)`` of the
        module docstring, in slot order (host, ``p x p`` work)."""
        order, R, inner = self._small_factors(gamma)
        SV, YV = PV[0::2][order], PV[1::2][order]  # age order from here on
        w = _upper_solve(R, SV, trans=0)
        t = _upper_solve(R, inner @ w - gamma * YV, trans=1)
        coef = np.empty(PV.shape)
        coef[0::2][order] = t
        coef[1::2][order] = -gamma * w
        return coef

    def _finish(self, PV: np.ndarray, V: Array, gamma: float) -> Array:
        """``H V = γV + Pᵀ C`` from ``PV = P V`` (see the module docstring)."""
        P = self.P[: 2 * len(self.slots), :]
        coef = self._coefficients(PV, gamma)
        if by_column(P, V):
            return columnwise_plus(P.T, coef, gamma, V)
        out = P.T @ self.backend.from_host(coef)
        out += gamma * V
        return out


class ImplicitProduct:
    """``H A`` for ``A = [a_1 | a_2 | ...]`` (vectors and ``n x m`` blocks side by side), held as
    ``γA + Pᵀ C``: the QPs of an iteration need only ``Aᵀ H A`` (a small matrix) and ``H A y``
    (one vector), and neither needs ``H A`` itself.

    ``Aᵀ H A = γ AᵀA + (P A)ᵀ C`` comes from the inner products ``P A`` (kept across updates by
    :meth:`CompactPairs.implicit`) and a pass over ``A``; ``H A y = γ A y + Pᵀ (C y)`` is one
    pass over the stored pairs.  Forming ``H A`` would take a pass over the pairs per column.
    It reads the pairs' buffer when asked, so it is valid until the next push (one QP's use).
    """

    def __init__(self, arrays: List[Array], PA: np.ndarray, coef: np.ndarray, gamma: float,
                 P: Array, backend: Backend) -> None:
        self.arrays, self.PA, self.coef, self.gamma = arrays, PA, coef, gamma
        self._P, self._b = P, backend
        self._AtA = None

    def plain_gram(self) -> np.ndarray:
        """``AᵀA`` on the host (``k x k``).  A few NumPy columns are dotted pairwise: joining
        them would copy them, and OpenBLAS's ``gemm`` with a few columns is several times
        slower than the dots."""
        if self._AtA is None:
            arrays = self.arrays
            numpy = all(isinstance(a, np.ndarray) for a in arrays)
            cols = [c for a in arrays for c in ((a,) if a.ndim == 1 else a.T)] if numpy else []
            if numpy and len(cols) <= DOT_MAX_COLUMNS:
                k = len(cols)
                AtA = np.empty((k, k))
                for i in range(k):
                    for j in range(i, k):
                        AtA[i, j] = AtA[j, i] = cols[i] @ cols[j]
            else:
                xp = self._b.xp
                A = xp.concat([xp.reshape(a, (-1, 1)) if len(a.shape) == 1 else a
                               for a in arrays], axis=1)
                AtA = to_host(A.T @ A)
            self._AtA = AtA
        return self._AtA

    def gram(self) -> np.ndarray:
        """``Aᵀ H A`` on the host (``k x k``, symmetric up to rounding)."""
        return self.gamma * self.plain_gram() + self.PA.T @ self.coef

    def times(self, y: np.ndarray) -> Array:
        """``H A y`` on the device for the host vector ``y`` (one entry per column of ``A``)."""
        b = self._b
        out = self._P.T @ b.from_host(self.coef @ y)
        j = 0
        for a in self.arrays:
            if len(a.shape) == 1:
                out += (self.gamma * float(y[j])) * a
                j += 1
            else:
                m = int(a.shape[1])
                out += a @ b.from_host(self.gamma * y[j:j + m])
                j += m
        return out


class _InnerRows:
    """An array's kept inner products with the stored pairs (rows in slot order, as ``P``) and
    which slots they are current for."""

    __slots__ = ("rows", "current")

    def __init__(self, inner: np.ndarray, capacity: int) -> None:
        self.rows = np.zeros((2 * capacity,) + inner.shape[1:])
        self.rows[: inner.shape[0]] = inner
        self.current = np.zeros(capacity, dtype=bool)
        self.current[: inner.shape[0] // 2] = True


def _upper_solve(R: np.ndarray, b: np.ndarray, trans: int) -> np.ndarray:
    """``R⁻¹ b`` (``trans=0``) or ``R⁻ᵀ b`` (``trans=1``) for the upper-triangular ``R``: LAPACK
    ``trtrs``, the routine ``scipy.linalg.solve_triangular`` calls, without its ~20 µs of
    argument handling (five products an iteration, two solves each)."""
    x, info = _trtrs(R, b, lower=0, trans=trans)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular factor in the L-BFGS product (trtrs info {info})")
    return x


#: :meth:`ImplicitProduct.plain_gram` dots NumPy columns pairwise up to this many columns
DOT_MAX_COLUMNS = 8
