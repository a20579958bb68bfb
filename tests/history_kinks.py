"""Where a run's history first reaches the l1 penalty's kink, for tests that compare runs.

At a constraint value that is zero to rounding, the step taken next depends on the sign of a
rounding error, so two runs whose arithmetic differs in the last bits may part there.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def first_kink(history: Sequence, tol: float) -> Optional[int]:
    """Index of the first history entry with a constraint value (``ci`` or ``ce``) within ``tol``
    of 0, or None if there is none."""
    for k, h in enumerate(history):
        if any(np.any(np.abs(np.ravel(np.asarray(c))) <= tol) for c in (h.ci, h.ce) if c is not None):
            return k
    return None
