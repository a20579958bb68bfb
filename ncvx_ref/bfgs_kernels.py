"""The ``n x n`` kernels of full-memory BFGS (§11.2): the update and the product ``H V``.

Two forms of the same update ``H − (u sᵀ + s uᵀ) + κ s sᵀ``:

- :func:`bfgs_matrix`, the spec's elementwise expression, bit for bit (NumPy: in cache-sized
  row blocks into one new matrix, never forming a scaled identity); used below
  :data:`RANK2_MIN_N`, so every reference case keeps GRANSO's arithmetic;
- :func:`add_symmetric_rank2`, ``H + s bᵀ + b sᵀ`` with ``b = (κ/2) s − u`` added to ``H`` in
  place (one BLAS ``syr2`` on the lower triangle on NumPy float64, ``addr_`` on torch, row
  blocks elsewhere); the caller (:class:`~ncvx_ref.hessian.BFGSInverseHessian`) owns the
  matrix and the inf/NaN check, and :func:`symmetrize_lower` refreshes the upper triangle when
  the whole matrix is read.

:func:`symmetric_product` is ``H V`` through BLAS ``symv`` (on the lower triangle) for the
in-place NumPy path; :func:`scaled_identity` is ``γI`` as a new matrix.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
from array_api_compat import is_cupy_array, is_torch_array

from .backend import Backend

#: from this many variables on, full-BFGS updates are made in place (NumPy float64: BLAS syr2
#: on the lower triangle; torch, CuPy: see :meth:`BFGSInverseHessian._rank2_update`); the reference
#: cases (n <= 200) keep the elementwise form of the spec, bit for bit
RANK2_MIN_N = 512
RANK2_EXACT_CHECK_FRACTION = 1e-8  # of the dtype's largest value: above, check entry by entry
RANK2_BLOCK_ELEMENTS = 1 << 22  # row blocks of the generic in-place update (32 MB in float64)


def rank2_kind(s, H) -> Optional[str]:
    """How the update is made: "blas" (NumPy float64), "inplace" (torch, CuPy), or None (the
    elementwise form: small ``n``, JAX, NumPy float32, a non-contiguous NumPy ``H0``)."""
    if len(s.shape) != 1 or s.shape[0] < RANK2_MIN_N:
        return None
    if isinstance(s, np.ndarray):
        if s.dtype == np.float64 and (H is None or (isinstance(H, np.ndarray) and H.dtype == np.float64
                                                    and H.flags.c_contiguous)):
            return "blas"
        return None
    if is_torch_array(s) or is_cupy_array(s):
        return "inplace"
    return None


def add_symmetric_rank2(H, s, b, kind: str):
    """``H + s bᵀ + b sᵀ`` written into ``H`` (returned; NumPy's BLAS may hand back a new
    array only if ``H`` were not contiguous, which :func:`rank2_kind` rules out).

    ``kind`` "blas" writes the **lower triangle only** (row-major; diagonal included), by one
    BLAS ``syr2``: half the memory traffic of two rank-1 updates (n = 4000: 7.8 ms against
    19 ms).  The upper triangle keeps older values until :func:`symmetrize_lower` copies the
    lower one over it; :func:`symmetric_product` with ``lower_only=True`` reads the lower
    triangle alone."""
    if kind == "blas":
        from scipy.linalg.blas import dsyr2

        t = H.T  # Fortran-ordered view: its upper triangle is H's lower one
        return dsyr2(1.0, s, b, a=t, lower=0, overwrite_a=1).T
    if is_torch_array(H):
        H.addr_(s, b)
        H.addr_(b, s)
        return H
    n = int(H.shape[0])
    rows = max(1, RANK2_BLOCK_ELEMENTS // max(n, 1))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        H[i0:i1, :] += s[i0:i1, None] * b[None, :] + b[i0:i1, None] * s[None, :]
    return H


#: up to this many columns, ``H V`` on the rank-2 path is one BLAS ``symv`` per column
SYMV_MAX_COLUMNS = 4


def blas_operand(V) -> bool:
    """Whether :func:`symmetric_product` takes ``V``: a float64 NumPy vector or matrix."""
    return isinstance(V, np.ndarray) and V.dtype == np.float64 and V.ndim in (1, 2)


def symmetric_product(H, V, lower_only: bool = False):
    """``H V`` for the symmetric float64 ``H`` of the rank-2 path (``V`` float64, ``(n,)`` or
    ``(n, k)``).  OpenBLAS's ``gemm`` with a few columns runs at a fraction of its
    matrix-vector speed here (``n = 4000``, 3 columns: 27 ms, against 3 x 4 ms by ``symv``,
    which also reads one triangle only); wider ``V`` goes through ``(Vᵀ H)ᵀ`` (~1.3x faster
    than ``H @ V``), or ``symm`` on the lower triangle when only that one is current
    (``lower_only``, see :func:`add_symmetric_rank2`).  Rounding differs from ``H @ V``.
    ``V`` must be a :func:`blas_operand`; the caller multiplies anything else by the whole
    ``H`` (``BFGSInverseHessian.apply``)."""
    from scipy.linalg.blas import dsymm, dsymv

    Hf = H.T  # Fortran-ordered view for BLAS (its upper triangle is H's lower one)
    if V.ndim == 1:
        return dsymv(1.0, Hf, V, lower=0)
    k = V.shape[1]
    if k <= SYMV_MAX_COLUMNS:
        out = np.empty(V.shape)
        for j in range(k):
            out[:, j] = dsymv(1.0, Hf, V[:, j], lower=0)
        return out
    if lower_only:
        return np.ascontiguousarray(dsymm(1.0, Hf, np.asfortranarray(V), lower=0))
    return np.ascontiguousarray((V.T @ H).T)


#: rows (and columns) per block of :func:`symmetrize_lower`'s transposed copies
SYMMETRIZE_BLOCK = 256


def symmetrize_lower(H) -> None:
    """Copy the lower triangle of the row-major ``H`` over its upper one, in place (a pass
    over the matrix; needed only where the whole ``H`` is read: ``dense``, ``state()``, the
    lifted QP path's metric)."""
    n = int(H.shape[0])
    strictly_upper = _strictly_upper_mask(min(n, SYMMETRIZE_BLOCK))
    for i0 in range(0, n, SYMMETRIZE_BLOCK):
        i1 = min(n, i0 + SYMMETRIZE_BLOCK)
        H[i0:i1, i1:] = H[i1:, i0:i1].T
        diag_block = H[i0:i1, i0:i1]
        r = i1 - i0
        np.copyto(diag_block, diag_block.T.copy(), where=strictly_upper[:r, :r])


@lru_cache(maxsize=4)
def _strictly_upper_mask(size: int):
    return np.triu(np.ones((size, size), dtype=bool), 1)


#: rows per block * n of the blocked NumPy update: the block and its temporaries (~4 arrays of
#: this many elements) stay in a core's L2 cache, so each element of ``H`` is read once and
#: the new matrix written once.
BLOCK_ELEMENTS = 1 << 14


def bfgs_matrix(H, u, s, w, backend: Backend, identity_scale: Optional[float] = None):
    """``H − (Mᵀ + M) + w wᵀ`` with ``M = u sᵀ`` (§11.2), or None if it has an inf/NaN.

    Elementwise this is ``(H_ij − (u_j s_i + u_i s_j)) + w_i w_j`` — the exact arithmetic of the
    spec.  ``H`` None means ``H = identity_scale · I`` (never formed).  On NumPy it is computed
    in cache-sized row blocks into one new ``n x n`` array, so no other ``n x n`` array exists
    (GRANSO's form needs about five) and the rows of a scaled identity are formed block by
    block; other namespaces use the direct expression.
    """
    if not isinstance(u, np.ndarray):
        if H is None:
            H = identity_scale * backend.eye(int(u.shape[0]))
        M = u[:, None] * s[None, :]
        out = H - (M.T + M) + w[:, None] * w[None, :]
        return out if backend.all_finite(out) else None
    n = u.shape[0]
    if n <= TINY_MAX_N and u.dtype == np.float64 and (H is None or H.dtype == np.float64):
        return _bfgs_matrix_floats(H, u, s, w, identity_scale)
    out = np.empty((n, n), dtype=u.dtype if H is None else H.dtype)
    rows = max(1, min(n, BLOCK_ELEMENTS // max(n, 1)))
    tmp = np.empty((rows, n), dtype=out.dtype)
    finite = np.empty((rows, n), dtype=bool)
    eye_rows = None if H is not None else np.empty((rows, n), dtype=out.dtype)
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        r = i1 - i0
        block, t, fin = out[i0:i1], tmp[:r], finite[:r]
        if H is None:  # rows i0:i1 of identity_scale * I, exactly as the formed matrix has them
            h = eye_rows[:r]
            h.fill(0.0)
            h[np.arange(r), np.arange(i0, i1)] = 1.0
            np.multiply(identity_scale, h, out=h)
        else:
            h = H[i0:i1]
        np.multiply(s[i0:i1, None], u[None, :], out=block)  # (Mᵀ)_ij = u_j s_i
        np.multiply(u[i0:i1, None], s[None, :], out=t)  # M_ij = u_i s_j
        block += t
        np.subtract(h, block, out=block)
        np.multiply(w[i0:i1, None], w[None, :], out=t)
        block += t
        if not np.isfinite(block, out=fin).all():
            return None
    return out


#: up to this many variables :func:`bfgs_matrix` works on Python floats: its blocked NumPy
#: form makes about fifteen calls, whose fixed cost dominates on a 2 x 2 or 4 x 4 matrix
TINY_MAX_N = 4


def _bfgs_matrix_floats(H, u, s, w, identity_scale: Optional[float]):
    """:func:`bfgs_matrix` of NumPy float64 data on Python floats (``n <= TINY_MAX_N``).

    The same elementwise IEEE operations in the same order, so the same values; the scaled
    identity's entries are ``identity_scale * 1.0`` and ``identity_scale * 0.0``, as there.
    """
    ul, sl, wl = u.tolist(), s.tolist(), w.tolist()
    n = len(ul)
    if H is None:
        Hl = [[identity_scale * (1.0 if i == j else 0.0) for j in range(n)] for i in range(n)]
    else:
        Hl = H.tolist()
    out = [[(Hl[i][j] - (sl[i] * ul[j] + ul[i] * sl[j])) + wl[i] * wl[j] for j in range(n)]
           for i in range(n)]
    if not all(math.isfinite(v) for row in out for v in row):
        return None
    return np.array(out)


def scaled_identity(n: int, gamma: float, backend: Backend):
    """``γ I`` as a new dense array, the values of ``eye(n) * γ``.  On NumPy the zeros come
    from fresh (lazily zeroed) pages and only the diagonal is written: the first in-place
    update then touches only the lower triangle, where ``eye * γ`` made a pass over all
    ``n²`` entries (n = 4000: ~100 ms, once per run)."""
    if backend.host_f64:
        out = np.zeros((n, n))
        out.reshape(-1)[:: n + 1] = gamma  # the diagonal (a strided view: no copy)
        return out
    out = backend.eye(n)
    out *= gamma
    return out
