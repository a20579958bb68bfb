"""Array-API plumbing: which namespace/device/dtype a run uses, and the one host transfer.

The solver core is written against the Python Array API standard.  The namespace, dtype and
device of a run come from ``x0`` (``array_api_compat.array_namespace``); every array the core
creates is created with that dtype on that device.  Scalars that steer control flow (penalty
values, violations, step lengths) are Python floats.  The only device->host transfer on the hot
path is the small QP data (``k x k`` with ``k`` = number of constraints or cached gradients),
done by :func:`to_host`; its answer comes back with :func:`from_host`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import array_api_compat as aac
# The NumPy namespace wrapper is imported with the package: array_namespace() would import it
# inside the first solve of a process (~13 ms, more than a whole small run).
import array_api_compat.numpy  # noqa: F401

Array = Any

_F64 = np.dtype(np.float64)
_add_reduce = np.add.reduce
_max_reduce = np.maximum.reduce
_or_reduce = np.logical_or.reduce
_FEW = 16  # arrays of at most this many entries are checked on Python floats


def _is_host_f64(a) -> bool:
    return type(a) is np.ndarray and a.dtype == _F64


@dataclass(frozen=True)
class Backend:
    """The namespace, dtype and device every array of one run lives in."""

    xp: Any
    dtype: Any
    device: Any
    # NumPy float64 runs: the scalar reductions below call NumPy's ufuncs directly, computing
    # exactly what the Array-API functions compute (the same ufunc loops) without their
    # per-call overhead, which dominates on small problems.
    host_f64: bool = field(init=False, repr=False, compare=False, default=False)
    # torch runs: array_api_compat's ``vecdot`` wraps its one matmul in dtype promotion,
    # ``moveaxis`` and broadcasting (~30 µs a call on the CPU); :meth:`dot` makes the same
    # matmul on the same views, so the same value, directly.
    torch_namespace: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        fast = aac.is_numpy_namespace(self.xp) and np.dtype(self.dtype) == _F64
        object.__setattr__(self, "host_f64", bool(fast))
        object.__setattr__(self, "torch_namespace", bool(aac.is_torch_namespace(self.xp)))

    @classmethod
    def of(cls, x: Array) -> "Backend":
        xp = aac.array_namespace(x)
        return cls(xp=xp, dtype=x.dtype, device=aac.device(x))

    @property
    def eps(self) -> float:
        return float(self.xp.finfo(self.dtype).eps)

    # -- creation -------------------------------------------------------------------------
    def zeros(self, shape) -> Array:
        return self.xp.zeros(shape, dtype=self.dtype, device=self.device)

    def ones(self, shape) -> Array:
        return self.xp.ones(shape, dtype=self.dtype, device=self.device)

    def eye(self, n: int) -> Array:
        return self.xp.eye(n, dtype=self.dtype, device=self.device)

    def full(self, shape, value: float) -> Array:
        return self.xp.full(shape, value, dtype=self.dtype, device=self.device)

    def asarray(self, a) -> Array:
        """Bring ``a`` (host data or an array of this namespace) to this run's dtype and device."""
        return self.xp.asarray(a, dtype=self.dtype, device=self.device)

    def from_host(self, a: np.ndarray) -> Array:
        """Host float64 data (a QP answer, a random direction) to the run's device and dtype."""
        a = np.ascontiguousarray(a)
        if self.host_f64 and a.dtype == _F64:
            return a  # what ``asarray`` returns for it (no copy)
        return self.asarray(a)

    # -- reductions returning Python scalars ------------------------------------------------
    def dot(self, a: Array, b: Array) -> float:
        if (self.torch_namespace and a.ndim == 1 and b.ndim == 1 and a.dtype == b.dtype
                and not a.dtype.is_complex):
            return float((a[None, :] @ b[:, None])[0, 0])  # vecdot's own matmul (see above)
        return float(self.xp.vecdot(a, b))

    def norm(self, a: Array) -> float:
        if self.host_f64 and _is_host_f64(a) and a.ndim == 1:
            return math.sqrt(float(_add_reduce(a * a)))  # NumPy's vector_norm of a vector
        return float(self.xp.linalg.vector_norm(a))

    def sum(self, a: Array) -> float:
        """Sum of all entries, as a Python float."""
        if self.host_f64 and _is_host_f64(a) and a.ndim == 1:
            return float(_add_reduce(a))
        return float(self.xp.sum(a))

    def max(self, a: Array) -> float:
        """Largest entry (NaN if any is NaN), as a Python float."""
        if self.host_f64 and _is_host_f64(a) and a.ndim == 1:
            return float(_max_reduce(a))
        return float(self.xp.max(a))

    def any(self, mask: Array) -> bool:
        """Whether any entry of the boolean array ``mask`` is true (``xp.any`` as a bool)."""
        if self.host_f64 and type(mask) is np.ndarray:
            return bool(_or_reduce(mask, axis=None))  # np.any's value without its wrapper (~3 µs)
        return bool(self.xp.any(mask))

    def all_finite(self, a: Array) -> bool:
        if self.host_f64 and type(a) is np.ndarray:
            return host_all_finite(a)
        return bool(self.xp.all(self.xp.isfinite(a)))


def host_all_finite(a: np.ndarray) -> bool:
    """Whether a NumPy array has no inf or NaN.  Up to :data:`_FEW` entries on Python floats
    (NumPy's two calls cost ~2 µs): one sum, non-finite exactly when an entry is or the sum
    overflows, and only then the test entry by entry."""
    if a.size <= _FEW:
        values = a.ravel().tolist()
        return math.isfinite(sum(values)) or all(map(math.isfinite, values))
    return bool(np.isfinite(a).all())


def to_host(a: Array) -> np.ndarray:
    """Any Array-API array -> a float64 NumPy array on the host (explicit, documented copy)."""
    if isinstance(a, np.ndarray):
        return np.asarray(a, dtype=np.float64)
    if aac.is_torch_array(a):
        return a.detach().to("cpu").double().numpy()
    if aac.is_cupy_array(a):
        return a.get().astype(np.float64)
    if aac.is_jax_array(a):
        return np.asarray(a, dtype=np.float64)
    try:  # array_api_strict and other DLPack producers on the CPU
        return np.from_dlpack(a).astype(np.float64)
    except Exception:  # pragma: no cover - last resort for exotic namespaces
        return np.asarray(a, dtype=np.float64)
