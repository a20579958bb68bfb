"""Warm starts of the stationarity QP (ALGORITHM.md §10.3) from the previous iteration's answer.

Opt-in (``qp_warm_start=True``): it pays where the stationarity QPs are degenerate and costly,
and costs where the QP library answers cheaply (``docs/qp_solvers.md``).

Consecutive iterations solve nearly the same stationarity QP: the cache gains the new point's
sample and may drop old ones, the rest of the samples and their weights' meaning stay.  The
previous answer, read per sample, is therefore a good guess of the next one, and its active
set often the exact one.  The QP carries that guess (``BoxQP.guess``); the library adapters
first try to certify it by active-set polishing and call the library only when that fails
(``docs/qp_solvers.md``).  On the reference runs' ill-conditioned, degenerate QPs (many nearly
equal gradients) this replaces an interior-point or proximal solve plus a long active-set
fallback by a few reduced KKT solves from a nearby point.

A guessed answer is accepted only when it certifies to a hundredth of the usual tolerance: a
degenerate QP has many answers that meet the certificate, some well above the optimal value,
and the stricter test made the warm answers closer to it than the cold ones on the measured runs
(``docs/qp_solvers.md``).  Warm and cold answers agree to that accuracy, not bit for bit; a run
stays bit-for-bit reproducible, since the guess depends only on the run's own history.

Weights are kept in the *plain layout* of §10.3: for ``l`` samples with ``m_e`` equality and
``m_i`` inequality constraints, ``[ce weights of each sample | the l objective weights | ci
weights of each sample]``.  Objective weights are stored divided by ``mu`` (they sum to
``mu``), so a guess stays feasible for the equality when ``mu`` changes.  A QP with merged
columns (:class:`~ncvx_ref.stationarity.MergedColumns`) maps its answer to and from this layout
through its ``groups``.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["StationarityWarmStart"]


class StationarityWarmStart:
    """The latest stationarity QP answer of a run, per gradient sample.

    Samples are held by weak reference: an evicted sample is not kept alive by its weights
    (at ``n = 1e7`` one sample is tens of MB), and a new sample that reuses a dead one's
    ``id`` is not mistaken for it.
    """

    def __init__(self) -> None:
        self._weights: Dict[int, Tuple[Any, np.ndarray, float, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._weights)

    def _lookup(self, sample) -> Optional[Tuple[np.ndarray, float, np.ndarray]]:
        entry = self._weights.get(id(sample))
        if entry is None or entry[0]() is not sample:
            return None
        return entry[1], entry[2], entry[3]

    def guess(self, samples: List[Any], m_e: int, m_i: int, mu: float) -> Optional[np.ndarray]:
        """The guess for the QP over ``samples`` (plain layout), or None when none of them
        was in the previous QP.  A new sample's weights are guessed 0 (at its objective
        weight's bound; polishing releases it when its multiplier says so)."""
        if not self._weights or not mu > 0.0:
            return None
        l = len(samples)
        ce = np.zeros((l, m_e))
        f = np.zeros(l)
        ci = np.zeros((l, m_i))
        found = False
        for j, s in enumerate(samples):
            w = self._lookup(s)
            if w is None:
                continue
            found = True
            ce[j], f[j], ci[j] = w
        if not found:
            return None
        return np.concatenate([ce.ravel(), f * mu, ci.ravel()])

    def remember(self, samples: List[Any], y: np.ndarray, m_e: int, m_i: int, mu: float) -> None:
        """Keep ``y`` (plain layout, ``len(samples) * (1 + m_e + m_i)`` entries) as the latest
        answer; the previous one is dropped."""
        l = len(samples)
        if not mu > 0.0 or y.shape != (l * (1 + m_e + m_i),) or not np.isfinite(y).all():
            self._weights = {}
            return
        y = np.array(y, dtype=np.float64)  # a private copy: the rows below are views of it
        ce = y[:l * m_e].reshape(l, m_e)
        f = y[l * m_e:l * (m_e + 1)] / mu
        ci = y[l * (m_e + 1):].reshape(l, m_i)
        self._weights = {id(s): (weakref.ref(s), ce[j], float(f[j]), ci[j])
                         for j, s in enumerate(samples)}

    def clear(self) -> None:
        self._weights = {}
