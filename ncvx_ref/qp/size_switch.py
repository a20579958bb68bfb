"""The default dense strategy: an exact active-set solver for small QPs, an interior-point one for
larger QPs and as a fallback.

DAQP (dual active set) returns the exact solution of the active set it identifies, so a QP whose
data move by one ulp (the same problem evaluated by NumPy or by torch) gets an answer that moves by
about one ulp too; trajectories then agree as long as no constraint sits on a rounding-level tie.
PIQP + polishing is certified to a KKT tolerance but may pick a different (equally certified)
active set, and it is much faster than DAQP on large, singular QPs, where DAQP's proximal
iterations crawl.  Measured in docs/qp_solvers.md.
"""
from __future__ import annotations

import numpy as np

from .interface import BoxQP, QPSolverError


class SizeSwitchedQPSolver:
    """``small`` for QPs with at most ``max_small`` variables (``large`` if it fails), else ``large``."""

    def __init__(self, small, large, max_small: int = 64, name: str = "daqp+piqp"):
        self.small, self.large, self.max_small, self.name = small, large, max_small, name

    def solve(self, qp: BoxQP) -> np.ndarray:
        if qp.size <= self.max_small:
            try:
                return self.small.solve(qp)
            except QPSolverError:
                # e.g. DAQP on a QP whose equality pins a variable at its bound: PIQP copes.
                # A guess has been tried already, and would fail again the same way.
                qp = qp.without_guess()
        return self.large.solve(qp)
