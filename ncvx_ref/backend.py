"""Array-API plumbing: which namespace/device/dtype a run uses, and the one host transfer.

The solver core is written against the Python Array API standard.  The namespace, dtype and
device of a run come from ``x0`` (``array_api_compat.array_namespace``); every array the core
creates is created with that dtype on that device.  Scalars that steer control flow (penalty
values, violations, step lengths) are Python floats.  The only device->host transfer on the hot
path is the small QP data (``k x k`` with ``k`` = number of constraints or cached gradients),
done by :func:`to_host`; its answer comes back with :func:`from_host`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import array_api_compat as aac

Array = Any


@dataclass(frozen=True)
class Backend:
    """The namespace, dtype and device every array of one run lives in."""

    xp: Any
    dtype: Any
    device: Any

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
        return self.asarray(np.ascontiguousarray(a))

    # -- reductions returning Python scalars ------------------------------------------------
    def dot(self, a: Array, b: Array) -> float:
        return float(self.xp.vecdot(a, b))

    def norm(self, a: Array) -> float:
        return float(self.xp.linalg.vector_norm(a))

    def all_finite(self, a: Array) -> bool:
        return bool(self.xp.all(self.xp.isfinite(a)))


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
