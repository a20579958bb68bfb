"""Full BFGS held as ``γI`` plus its rank-2 terms while they are few (``n >= RANK2_MIN_N``).

From the scaled identity, every in-place update adds ``s bᵀ + b sᵀ``
(:func:`~ncvx_ref.bfgs_kernels.add_symmetric_rank2`), so after ``k`` updates

    H = γI + Σⱼ (sⱼ bⱼᵀ + bⱼ sⱼᵀ) = γI + Pᵀ E P,

``P`` the ``2k x n`` matrix of the rows ``s₁, b₁, s₂, b₂, ...`` and ``E`` the pairwise swap.
While ``k`` is small that form is cheaper than the ``n x n`` matrix in every respect: an update
writes two rows instead of a pass over ``n²/2`` entries, a product ``H V = γV + Pᵀ E (P V)``
reads ``4k`` vectors instead of the matrix, and nothing ``n x n`` is allocated, which on this
project's machines is the larger cost of a short run (first touches of fresh memory).
:class:`RankTwoTerms` holds the rows; ``BFGSInverseHessian`` forms the matrix from them
(:meth:`RankTwoTerms.materialize`, one ``syr2k``) when the terms fill their buffer or when
something reads the whole matrix (regularization, the lifted QP path), and goes on in place
from there.  A run that ends in terms hands :meth:`RankTwoTerms.matrix` to its result, which
forms ``H_final`` when the caller first reads it (``ncvx_ref.result.Deferred``).

The operator is the one the in-place path builds, up to rounding; no reference case reaches
``n = 512`` (docs/deviations.md).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend
from .bfgs_kernels import scaled_identity, symmetrize_lower
from .thin_products import by_column, columnwise, columnwise_plus

__all__ = ["RankTwoTerms", "term_capacity"]

Array = Any

#: at most this many terms are kept (memory: 2 x 256 vectors of n, an eighth of the matrix at
#: n = 4096) ...
MAX_TERMS = 256
#: ... and at most n / this many: beyond, forming the matrix at the end (``n² k`` flops) and the
#: products (``4k n``) stop paying for the updates they save (``n²`` each)
TERMS_PER_N = 8


def term_capacity(n: int) -> int:
    """How many terms a run of ``n`` variables keeps before it forms the matrix."""
    return min(MAX_TERMS, n // TERMS_PER_N)


class RankTwoTerms:
    """``H = γI + Σⱼ (sⱼ bⱼᵀ + bⱼ sⱼᵀ)`` with at most ``capacity`` terms, as rows of one buffer
    (row ``2j`` = ``sⱼ``, ``2j + 1`` = ``bⱼ``) on the run's device; ``γ`` is the caller's."""

    def __init__(self, capacity: int, n: int, backend: Backend) -> None:
        self.P = backend.zeros((2 * capacity, n))  # NumPy: untouched rows cost no memory
        self.capacity, self.n = capacity, n
        self.count = 0
        self.trace_terms = 0.0  # Σ 2 sⱼᵀbⱼ, the terms' part of trace(H)
        self._b = backend

    def __len__(self) -> int:
        return self.count

    @property
    def full(self) -> bool:
        return self.count == self.capacity

    def append(self, s: Array, b: Array) -> None:
        j = self.count
        self.P[2 * j, :] = s
        self.P[2 * j + 1, :] = b
        self.count += 1
        self.trace_terms += 2.0 * self._b.dot(s, b)

    def trace(self, gamma: float) -> float:
        return self.n * gamma + self.trace_terms

    def apply(self, V: Array, gamma: float) -> Array:
        """``H V = γV + Pᵀ E (P V)`` for ``V`` of shape ``(n,)`` or ``(n, m)`` (a new array)."""
        P = self.P[: 2 * self.count, :]
        if by_column(P, V):  # NumPy float64, 2-4 columns: one gemv per column
            return columnwise_plus(P.T, _swapped(columnwise(P, V)), gamma, V)
        if isinstance(P, np.ndarray):
            out = P.T @ _swapped(P @ V)
        else:
            S, B = P[0::2, :], P[1::2, :]
            out = S.T @ (B @ V) + B.T @ (S @ V)
        out += gamma * V
        return out

    def matrix(self, gamma: float, kind: str) -> Array:
        """``H`` as a new symmetric ``n x n`` array (both triangles), for a snapshot or
        ``H_final``; the terms stay as they are."""
        H = self.materialize(gamma, kind)
        if kind == "blas":
            symmetrize_lower(H)
        return H

    def materialize(self, gamma: float, kind: str) -> Array:
        """``H`` as a new ``n x n`` array.  ``kind`` "blas" (NumPy float64): the lower triangle
        only (one ``syr2k``; the caller refreshes the upper one when it reads the whole
        matrix, as after ``syr2``); otherwise the whole matrix."""
        k = self.count
        S, B = self.P[0: 2 * k: 2, :], self.P[1: 2 * k: 2, :]
        H = scaled_identity(self.n, gamma, self._b)
        if k == 0:
            return H
        if kind == "blas":
            from scipy.linalg.blas import dsyr2k

            # Fortran view of H: its upper triangle is H's lower one; S.T, B.T are n x k
            return dsyr2k(1.0, S.T, B.T, beta=1.0, c=H.T, trans=0, lower=0, overwrite_c=1).T
        from array_api_compat import is_torch_array

        if is_torch_array(H):
            H.addmm_(S.T, B)
            H.addmm_(B.T, S)
            return H
        return H + (S.T @ B + B.T @ S)


def _swap_order(rows: int) -> np.ndarray:
    """``[1, 0, 3, 2, ...]``: row ``2j`` of ``E X`` is row ``2j + 1`` of ``X`` and vice versa."""
    order = np.arange(rows)
    order[0::2] += 1
    order[1::2] -= 1
    return order


def _swapped(X: np.ndarray) -> np.ndarray:
    return X[_swap_order(X.shape[0])]
