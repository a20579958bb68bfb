"""Per-iteration records: what the callback receives and what a history keeps (§18.1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from .backend import to_host
from .penalty import PenaltyPoint

Array = Any


@dataclass(frozen=True)
class IterationState:
    """The frozen state after iteration ``iteration`` (0 = at x0), as GRANSO's halt_log_fn sees it.

    ``point`` is the snapshot at the accepted iterate; ``direction`` the search direction that
    produced it (zeros at iteration 0); ``ls_evals`` the function evaluations this iteration
    spent (all fallbacks included; 1 at iteration 0); ``n_grads`` the gradient samples in the
    stationarity QP; ``n_qp`` which stationarity-QP attempt succeeded (0 = smooth shortcut);
    ``fallback_level`` 0 S, 1 SI, 2 QN, 3 GD, 4 random (``n_random`` random tries);
    ``qp_H`` the regularized inverse Hessian used by this iteration's QPs, or None when it
    equals ``H``; ``get_H()`` returns the (L-)BFGS state after this iteration's update.
    """

    iteration: int
    point: PenaltyPoint
    direction: Array
    alpha: float
    ls_evals: int
    n_grads: int
    stat_vec: Array
    stat_val: float
    n_qp: int
    fallback_level: int
    n_random: int
    qp_H: Optional[Array]
    get_H: Callable[[], Any]

    @property
    def x(self) -> Array:
        return self.point.x


@dataclass(frozen=True)
class HistoryEntry:
    """A host-side (NumPy) copy of the fields a conformance check compares, for one iteration."""

    iteration: int
    x: Any
    direction: Any
    f: float
    ci: Any
    ce: Any
    mu: float
    penalty: float
    tv: float
    tvi: float
    tve: float
    tv_l1: float
    feasible_to_tol: bool
    alpha: float
    ls_evals: int
    n_grads: int
    stat_val: float
    fallback_level: int


class HistoryRecorder:
    """A callback that keeps one :class:`HistoryEntry` per iteration (never asks to halt)."""

    def __init__(self) -> None:
        self.entries: List[HistoryEntry] = []

    def __call__(self, state: IterationState) -> bool:
        pt = state.point
        self.entries.append(HistoryEntry(
            iteration=state.iteration, x=to_host(pt.x), direction=to_host(state.direction),
            f=pt.f, ci=None if pt.ci is None else to_host(pt.ci),
            ce=None if pt.ce is None else to_host(pt.ce), mu=pt.mu, penalty=pt.p, tv=pt.tv,
            tvi=pt.tvi, tve=pt.tve, tv_l1=pt.tv_l1, feasible_to_tol=pt.feasible_to_tol,
            alpha=state.alpha, ls_evals=state.ls_evals, n_grads=state.n_grads,
            stat_val=state.stat_val, fallback_level=state.fallback_level))
        return False
