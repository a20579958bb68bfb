"""GRANSO's QP call rule (ALGORITHM.md §13): count every request, and count as a failure an
exception, an empty answer or a non-finite answer.

Deviation, documented in docs/deviations.md: an exactly-zero answer is accepted.  GRANSO 1.6.4
treats it as a failure, which with an exact solver turns a valid ``y = 0`` (no multiplier needed)
into a spurious fallback; the reference outputs were produced the same way (see the reference
README, "Exactly-zero QP solutions").
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import host_all_finite
from .interface import BoxQP, QPSolver, QPSolverError

_FLOAT64 = np.dtype(np.float64)


class CountingQPSolver:
    """Wraps a :class:`QPSolver`; keeps ``requests`` and ``failures`` for the failure rate."""

    def __init__(self, solver: QPSolver):
        self.solver = solver
        self.requests = 0
        self.failures = 0

    @property
    def name(self) -> str:
        return getattr(self.solver, "name", type(self.solver).__name__)

    def solve(self, qp: BoxQP) -> np.ndarray:
        self.requests += 1
        try:
            y = self.solver.solve(qp)
        except Exception as exc:  # any solver exception is a failed QP call, by GRANSO's rule
            self.failures += 1
            raise QPSolverError(f"{self.name} failed on a {qp.kind} QP of size {qp.size}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if (y.__class__ is np.ndarray and y.dtype is _FLOAT64 and y.shape == qp.q.shape
                and y.ndim == 1 and host_all_finite(y)):
            return y  # the usual answer: float64, of the QP's size, finite
        y = np.asarray(y, dtype=np.float64).reshape(-1) if y is not None else np.zeros(0)
        if y.size != qp.size or np.count_nonzero(np.isfinite(y)) != y.size:
            self.failures += 1
            what = "an empty answer" if y.size == 0 else (
                f"an answer of size {y.size}" if y.size != qp.size else "a non-finite answer")
            raise QPSolverError(f"{self.name} returned {what} for a {qp.kind} QP of size {qp.size}")
        return y

    @property
    def failure_rate(self) -> float:
        """100 · failures / requests (NaN when no QP was requested), as GRANSO reports it."""
        return 100.0 * self.failures / self.requests if self.requests else math.nan
