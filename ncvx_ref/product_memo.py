"""Products ``H v`` that recur across iterations, kept current through rank-2 updates of ``H``.

A full-memory BFGS iteration multiplies ``H`` by the same gradient arrays more than once: the
stationarity QP at ``x_k`` needs ``H_{k-1} [∇f_k, J_k]`` (ALGORITHM.md §10.3, the matrix *before*
the update), the next steering QP ``H_k [∇f_k, J_k]`` (§7), and every cached sample of the
neighbourhood comes back iteration after iteration.  Each product is a pass over the
``n x n`` matrix.  Since the in-place update is ``H_k = H_{k-1} + s bᵀ + b sᵀ``
(:func:`~ncvx_ref.bfgs_kernels.add_symmetric_rank2`), a product already known is brought up to
date in ``O(n)`` per column::

    H_k v = H_{k-1} v + s (bᵀv) + b (sᵀv)

:class:`ProductMemo` keeps such products keyed by the array object (:class:`KeptPerArray`,
shared with compact L-BFGS's kept inner products), and checks the array's content on every
hit (a user function may hand back one buffer rewritten in place), so a hit is always the
product of the array as it is now.  The corrected product equals a fresh one up
to rounding (a few ulps per update), which is why only the in-place rank-2 path (``n >=
RANK2_MIN_N``, whose arithmetic already differs from the spec's elementwise form) uses it:
the reference cases keep GRANSO's arithmetic.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

Array = Any
_and_reduce = np.logical_and.reduce  # ``.all()`` without its Python wrapper (~2 µs a call)

#: an entry not asked for during this many consecutive updates is dropped (a sample that has
#: left the neighbourhood, the previous point's gradients): memory stays at about the arrays of
#: the current neighbourhood
MAX_IDLE_UPDATES = 2


def _blas_dot(a, b) -> float:
    return float(np.dot(a, b))


class KeptPerArray:
    """Values kept per array object across updates of ``H``, for arrays that come back.

    An entry is found again only for the same array object with the same content: each entry
    holds the array (so its ``id`` stays unique) and a private copy, and every lookup compares
    the two (a user function may hand back one buffer rewritten in place).  :meth:`age` counts
    one more update; an entry not looked up for more than ``max_idle`` updates is dropped, so
    memory stays at about the arrays still in use.  Used by :class:`ProductMemo` (products
    ``H v`` of full BFGS) and by compact L-BFGS (``lbfgs_compact``: inner products with the
    stored pairs).
    """

    def __init__(self, backend, max_idle: int) -> None:
        self._b = backend
        self.max_idle = max_idle
        self._entries: Dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _unchanged(self, e: "_Entry", v: Array) -> bool:
        if isinstance(v, np.ndarray):  # np.array_equal's values at a third of its cost
            return e.copy.shape == v.shape and bool(_and_reduce(e.copy == v, axis=None))
        return bool(self._b.xp.all(e.copy == v))

    def get(self, v: Array) -> Optional["_Entry"]:
        """The entry of ``v`` (its ``value`` may be updated in place), or None when ``v`` is
        new or its content changed."""
        e = self._entries.get(id(v))
        if e is None or e.array is not v or not self._unchanged(e, v):
            return None
        e.idle = 0
        return e

    def put(self, v: Array, value: Any) -> None:
        # a private copy of v: the content check needs v as it was
        self._entries[id(v)] = _Entry(v, self._b.xp.asarray(v, copy=True), value)

    def entries(self):
        return self._entries.values()

    def age(self) -> None:
        """One more update (made or skipped): entries idle for too long are dropped."""
        stale = []
        for key, e in self._entries.items():
            e.idle += 1
            if e.idle > self.max_idle:
                stale.append(key)
        for key in stale:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


class _Entry:
    __slots__ = ("array", "copy", "value", "idle")

    def __init__(self, array: Array, copy: Array, value: Any) -> None:
        self.array, self.copy, self.value, self.idle = array, copy, value, 0


class ProductMemo:
    """``H v`` for arrays ``v`` (``(n,)`` or ``(n, m)``) seen before, updated with ``H``.

    ``products(arrays, compute)`` returns the product of every array, computing (with
    ``compute``) only those not known (the products are shared with the memo: read them, never
    write into them); ``rank2(s, b)`` follows ``H += s bᵀ + b sᵀ``; ``age()`` marks a skipped
    update; ``clear()`` forgets everything (any other change of ``H``).
    """

    def __init__(self, backend) -> None:
        self._b = backend
        self._kept = KeptPerArray(backend, MAX_IDLE_UPDATES)

    def __len__(self) -> int:
        return len(self._kept)

    def products(self, arrays: List[Array], compute: Callable[[Array], Array]) -> List[Array]:
        out = []
        for v in arrays:
            e = self._kept.get(v)
            if e is None:
                hv = compute(v)
                self._kept.put(v, hv)
                out.append(hv)
            else:
                out.append(e.value)
        return out

    def age(self) -> None:
        """One more update requested (made or skipped): entries idle for too long are dropped,
        so the memo cannot grow over a run of skipped updates either."""
        self._kept.age()

    def rank2(self, s: Array, b: Array) -> None:
        """Follow ``H ← H + s bᵀ + b sᵀ``; entries idle for too long are dropped."""
        dot = _blas_dot if self._b.host_f64 else self._b.dot
        self.age()
        for e in self._kept.entries():
            v, hv = e.copy, e.value
            # a new array (not +=): a product handed out earlier never changes under its holder
            if len(v.shape) == 1:
                e.value = hv + (dot(b, v) * s + dot(s, v) * b)
            else:
                e.value = hv + (s[:, None] * (b @ v)[None, :] + b[:, None] * (s @ v)[None, :])

    def clear(self) -> None:
        self._kept.clear()
