"""QPs whose one equality names a single variable: that variable is fixed, the rest is a box QP.

The stationarity QP (ALGORITHM.md §10.3) with one gradient sample has one objective weight,
and its equality ``weight = mu`` fixes it, at its upper bound ``mu``.  Constrained runs meet
this QP at most iterations (eigen n = 1000: 190 of 274).  Whole, it is degenerate for an
active-set solver (an equality and a bound active on the same variable) and costs DAQP plus
polishing 140-190 µs; without the fixed variable it is a box QP of ``k - 1`` variables, often a
closed form (70-100 µs for the whole call, mostly validation).

The reduced QP's KKT conditions are the full QP's on the other variables; the fixed variable's
own stationarity row is met by the equality's multiplier, which is free.  So an answer
certified for the reduced QP, with the fixed value put back, is one for the full QP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .interface import BoxQP


@dataclass(frozen=True)
class PinnedVariable:
    """Variable ``index`` fixed at ``value`` by the equality; ``reduced`` is the QP in the others."""

    index: int
    value: float
    reduced: BoxQP

    @classmethod
    def of(cls, qp: BoxQP) -> Optional["PinnedVariable"]:
        """The reduction of a validated dense ``qp`` whose equality has exactly one nonzero
        coefficient and which has other variables, else None.

        The fixed value ``eq_rhs / a_j`` is clipped into the variable's bounds: the validation
        (``check_qp``) accepts an equality up to a rounding-level slack past them, and the
        clip leaves an equality residual of that size.
        """
        a = qp.eq_coeffs
        if a is None or qp.structured:
            return None
        k = qp.size
        nonzero = np.flatnonzero(a)
        if k < 2 or nonzero.shape[0] != 1:
            return None
        j = int(nonzero[0])
        value = min(max(qp.eq_rhs / float(a[j]), float(qp.lb[j])), float(qp.ub[j]))
        rest = np.array([i for i in range(k) if i != j])  # take: a fraction of fancy indexing's cost
        Q = qp.Q
        reduced = BoxQP(Q.take(rest, 0).take(rest, 1), qp.q.take(rest) + Q[:, j].take(rest) * value,
                        qp.lb.take(rest), qp.ub.take(rest), kind=qp.kind,
                        guess=None if qp.guess is None else qp.guess.take(rest))
        return cls(j, value, reduced)

    def expand(self, y_reduced: np.ndarray) -> np.ndarray:
        """The full QP's answer: ``y_reduced`` with the fixed value put back at ``index``."""
        j = self.index
        y = np.empty(y_reduced.shape[0] + 1)
        y[:j] = y_reduced[:j]
        y[j] = self.value
        y[j + 1:] = y_reduced[j:]
        return y
