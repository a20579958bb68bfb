"""The QP interface: the only QP shape the method builds, and what a solver must provide.

Both QPs of GRANSO's method (the steering dual, ALGORITHM.md §7, and the stationarity QP,
§10.3) are small dense convex QPs with box bounds and at most one linear equality::

    minimize   ½ yᵀ Q y + qᵀ y
    subject to lb <= y <= ub,   [ eq_coeffs · y == eq_rhs ]

QPs are solved on the host in float64 NumPy arrays: this is the one explicit device->host
transfer of the solver core (``k``, the number of QP variables, is the number of
constraints or of cached gradients, never ``n``).  ``Q`` is symmetric positive
*semi*-definite, often singular; solvers must cope with that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Protocol, runtime_checkable

import numpy as np


class QPSolverError(RuntimeError):
    """A QP solver could not produce an answer (GRANSO's "QP failure", §13)."""


@dataclass(frozen=True)
class BoxQP:
    """``min ½ yᵀQy + qᵀy  s.t.  lb <= y <= ub  [and eq_coeffs·y == eq_rhs]`` on the host."""

    Q: np.ndarray  # (k, k) float64, symmetric PSD
    q: np.ndarray  # (k,)
    lb: np.ndarray  # (k,), finite
    ub: np.ndarray  # (k,), finite
    eq_coeffs: Optional[np.ndarray] = None  # (k,) or None: at most one equality row
    eq_rhs: float = 0.0
    kind: Literal["steering", "stationarity", "other"] = "other"

    @property
    def size(self) -> int:
        return int(self.q.shape[0])


@runtime_checkable
class QPSolver(Protocol):
    """Anything with ``solve(qp) -> y``; raise :class:`QPSolverError` (or any exception) on failure.

    The answer must be a float64 array of shape ``(k,)``.  The core applies GRANSO's failure
    rule on top (an exception, an empty or non-finite answer counts as a failed QP call).
    """

    name: str

    def solve(self, qp: BoxQP) -> np.ndarray: ...
