"""Products of a few stored rows with a few columns, on NumPy float64.

The large-n Hessians keep their vectors as rows of one buffer (``P``, ``2p x n``): the
compact L-BFGS pairs (:mod:`~ncvx_ref.lbfgs_compact`) and full BFGS's rank-2 terms
(:mod:`~ncvx_ref.bfgs_factored`).  Their products ``P V`` and ``Pᵀ C`` with 2-4 columns are
made one matrix-vector product per column, because OpenBLAS's ``gemm`` is several times slower
than ``gemv`` for such thin shapes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["GEMV_MAX_COLUMNS", "by_column", "columnwise", "columnwise_plus"]

#: NumPy products with up to this many columns are made column by column:
#: OpenBLAS's ``gemm`` with 3 columns takes ~6x its matrix-vector time (n = 1e5, 10 pairs:
#: 2.8 ms against 0.46 ms), twice the cost of three ``gemv``
GEMV_MAX_COLUMNS = 4


def by_column(P, V) -> bool:
    """Whether ``P @ V`` goes column by column: NumPy float64, ``V`` with 2 to
    :data:`GEMV_MAX_COLUMNS` columns."""
    return (isinstance(P, np.ndarray) and isinstance(V, np.ndarray) and V.ndim == 2
            and 1 < V.shape[1] <= GEMV_MAX_COLUMNS
            and P.dtype == np.float64 and V.dtype == np.float64)


def columnwise(A: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``A @ V`` (NumPy float64, ``V`` with a few columns) as one matrix-vector product per column."""
    out = np.empty((A.shape[0], V.shape[1]))
    for j in range(V.shape[1]):
        out[:, j] = A @ V[:, j]
    return out


def columnwise_plus(A: np.ndarray, C: np.ndarray, gamma: float, V: np.ndarray) -> np.ndarray:
    """``A @ C + gamma V`` column by column into a column-major array (contiguous columns: each
    ``gemv`` writes its own, and ``gamma V`` is added while the column is in cache; n = 1e5, 3
    columns: 3.1 ms against 6.8 ms for the row-major result plus ``gamma V`` as a temporary)."""
    out = np.empty((A.shape[0], C.shape[1]), order="F")
    for j in range(C.shape[1]):
        col = out[:, j]
        np.matmul(A, C[:, j], out=col)
        col += gamma * V[:, j]
    return out
