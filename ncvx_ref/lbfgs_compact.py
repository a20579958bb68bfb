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
CuPy) with ``n >= COMPACT_MIN_N`` (all reference cases are far smaller, so they keep the
recursion's exact arithmetic); see docs/deviations.md.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
from scipy.linalg.lapack import dtrtrs as _trtrs

from .backend import Backend, to_host

__all__ = ["CompactPairs", "COMPACT_MIN_N"]

#: from this many variables on, L-BFGS products use the compact form
COMPACT_MIN_N = 4096

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
        self.slots: list[int] = []  # slots holding pairs, oldest first
        self.capacity = capacity
        self.backend = backend
        self._factors_gamma = None  # the γ of the cached small factors; None: none valid
        self._factors = None

    def push(self, s: Array, y: Array, sty: float) -> Tuple[Array, Array]:
        """Store the newest pair (dropping the oldest when full); returns its stored rows."""
        capacity = self.capacity
        slot = self.slots.pop(0) if len(self.slots) == capacity else len(self.slots)
        P = self.P
        P[2 * slot, :] = s  # full Array-API indexing (no implicit trailing axes)
        P[2 * slot + 1, :] = y
        self.slots.append(slot)
        self._factors_gamma = None  # the pairs changed
        used = len(self.slots)
        products = to_host(P[: 2 * used, :] @ P[2 * slot + 1, :])
        self.StY[:used, slot] = products[0::2]  # s_i · y_new for every stored s_i
        yy = products[1::2]
        self.YtY[:used, slot] = yy
        self.YtY[slot, :used] = yy
        self.sty[slot] = sty
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

    def apply(self, V: Array, gamma: float) -> Array:
        """``H V`` for ``V`` of shape ``(n,)`` or ``(n, k)`` (a new array)."""
        used = len(self.slots)
        if used == 0:
            return gamma * V
        P = self.P[: 2 * used, :]  # slots 0..used-1 are the used ones
        by_column = _by_column(P, V)
        PV = _columnwise(P, V) if by_column else to_host(P @ V)
        order, R, inner = self._small_factors(gamma)
        SV, YV = PV[0::2][order], PV[1::2][order]  # age order from here on
        w = _upper_solve(R, SV, trans=0)
        t = _upper_solve(R, inner @ w - gamma * YV, trans=1)
        coef = np.empty(PV.shape)
        coef[0::2][order] = t
        coef[1::2][order] = -gamma * w
        if by_column:
            return _columnwise_plus(P.T, coef, gamma, V)
        out = P.T @ self.backend.from_host(coef)
        out += gamma * V
        return out


def _upper_solve(R: np.ndarray, b: np.ndarray, trans: int) -> np.ndarray:
    """``R⁻¹ b`` (``trans=0``) or ``R⁻ᵀ b`` (``trans=1``) for the upper-triangular ``R``: LAPACK
    ``trtrs``, the routine ``scipy.linalg.solve_triangular`` calls, without its ~20 µs of
    argument handling (five products an iteration, two solves each)."""
    x, info = _trtrs(R, b, lower=0, trans=trans)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular factor in the L-BFGS product (trtrs info {info})")
    return x


#: NumPy products of the stored pairs with up to this many columns are made column by column:
#: OpenBLAS's ``gemm`` with 3 columns takes ~6x its matrix-vector time (n = 1e5, 10 pairs:
#: 2.8 ms against 0.46 ms), twice the cost of three ``gemv``
GEMV_MAX_COLUMNS = 4


def _by_column(P, V) -> bool:
    return (isinstance(P, np.ndarray) and isinstance(V, np.ndarray) and V.ndim == 2
            and 1 < V.shape[1] <= GEMV_MAX_COLUMNS
            and P.dtype == np.float64 and V.dtype == np.float64)


def _columnwise(A: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``A @ V`` (NumPy float64, ``V`` with a few columns) as one matrix-vector product per column."""
    out = np.empty((A.shape[0], V.shape[1]))
    for j in range(V.shape[1]):
        out[:, j] = A @ V[:, j]
    return out


def _columnwise_plus(A: np.ndarray, C: np.ndarray, gamma: float, V: np.ndarray) -> np.ndarray:
    """``A @ C + gamma V`` column by column into a column-major array (contiguous columns: each
    ``gemv`` writes its own, and ``gamma V`` is added while the column is in cache; n = 1e5, 3
    columns: 3.1 ms against 6.8 ms for the row-major result plus ``gamma V`` as a temporary)."""
    out = np.empty((A.shape[0], C.shape[1]), order="F")
    for j in range(C.shape[1]):
        col = out[:, j]
        np.matmul(A, C[:, j], out=col)
        col += gamma * V[:, j]
    return out
