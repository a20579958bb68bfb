"""The test-problem record shared by every family, and Array-API helpers for writing them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import array_api_compat as aac

from ..evaluation import Evaluation

Array = Any


@dataclass(frozen=True, eq=False)
class TestProblem:
    """One instance of a test-problem family: ``min f(x) s.t. c_I(x) <= 0, c_E(x) = 0``.

    Subclasses (one per family) hold the problem data as NumPy arrays and implement
    :meth:`evaluate`.  ``x0`` is a NumPy float64 vector; ``known_optimum`` is None or a dict
    with at least ``f`` (and usually ``x``), as stored in the reference cases.

    ``evaluate(x)`` accepts a 1-D array of any Array-API namespace and returns an
    :class:`ncvx_ref.Evaluation` in that namespace, dtype and device, with GRANSO's layout
    (constraint Jacobians ``n x m``, columns = gradients) and exactly the subgradient choices
    of ``FAMILIES.md``.
    """

    __test__ = False  # not a pytest test class, despite its name

    name: str
    n: int
    n_ineq: int
    n_eq: int
    x0: np.ndarray
    known_optimum: Optional[dict] = field(default=None, compare=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def constrained(self) -> bool:
        return self.n_ineq + self.n_eq > 0

    def kink_arguments(self, x) -> np.ndarray:
        """Host values whose sign decides a subgradient choice at ``x`` (empty if f, c are smooth).

        A value within rounding of 0 marks a point where two implementations may pick different
        (sub)gradients; conformance diagnostics use it to explain departing trajectories.
        """
        return np.zeros(0)

    def evaluate(self, x: Array) -> Evaluation:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: Array) -> Evaluation:
        return self.evaluate(x)

    def _data(self, key: str, x: Array) -> Array:
        """Problem data ``key`` (a NumPy attribute) in ``x``'s namespace/dtype/device, cached.

        A NumPy ``x`` is keyed by its dtype alone (one namespace, one device): building the
        general key (namespace name, dtype and device as strings) took about 20 µs, several
        times per evaluation, which the benchmarks count as the user's time.
        """
        if type(x) is np.ndarray:
            ck = (key, x.dtype)
        else:
            ck = (key, aac.array_namespace(x).__name__, str(x.dtype), str(aac.device(x)))
        hit = self._cache.get(ck)
        if hit is None:
            hit = self._cache[ck] = like(getattr(self, key), x)
        return hit

    def _check(self, x: Array) -> None:
        if getattr(x, "ndim", None) != 1 or x.shape[0] != self.n:
            raise ValueError(f"`x` must be a 1-D array of length n = {self.n} for problem "
                             f"{self.name!r}; got shape {getattr(x, 'shape', None)}.")


_NUMPY_NAMESPACE = aac.array_namespace(np.empty(0))


def namespace(x: Array):
    """``array_api_compat.array_namespace(x)``, without its checks for a plain NumPy array."""
    return _NUMPY_NAMESPACE if type(x) is np.ndarray else aac.array_namespace(x)


def device(x: Array):
    """``array_api_compat.device(x)``, without its dispatch for a plain NumPy array."""
    return "cpu" if type(x) is np.ndarray else aac.device(x)


def like(data: np.ndarray, x: Array) -> Array:
    """NumPy problem data as an array of ``x``'s namespace, dtype and device."""
    xp = namespace(x)
    a = np.asarray(data)
    if not a.flags.c_contiguous:   # (np.ascontiguousarray would turn a 0-d array into 1-d)
        a = a.copy(order="C")
    return xp.asarray(a, dtype=x.dtype, device=device(x))


def as_float_vector(v, n: int, what: str) -> np.ndarray:
    """``v`` as a float64 NumPy vector of length ``n`` (for x0 and data checks)."""
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"`{what}` must have shape ({n},); got {a.shape}.")
    return a


def one_hot_first_max(xp, v: Array) -> Array:
    """0/1 weights (dtype of ``v``) selecting the FIRST maximal entry of ``v``.

    The Array API's ``argmax`` returns the first index among ties (MATLAB's ``max`` rule);
    selecting by weights instead of indexing keeps the computation on the device and
    functional (JAX), and ``w @ M`` reproduces the chosen row exactly (all other terms are 0).
    """
    idx = xp.arange(v.shape[0], device=device(v))
    return xp.astype(idx == xp.argmax(v), v.dtype)
