"""The result of a run: scipy-style fields plus GRANSO's certificate (§16, OPTIONS.md §E)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .termination import TerminationCode

Array = Any


@dataclass(frozen=True)
class PointRecord:
    """A point the run reports (final, best, most feasible), with its values and violations.

    For unconstrained problems ``ci``/``ce`` are None, the violations are 0 and
    ``feasible_to_tol`` is True.  ``mu`` is the penalty parameter in force when the point was
    evaluated.
    """

    x: Array
    f: float
    ci: Optional[Array] = None
    ce: Optional[Array] = None
    tvi: float = 0.0
    tve: float = 0.0
    tv: float = 0.0
    feasible_to_tol: bool = True
    mu: float = 1.0


@dataclass(frozen=True)
class BFGSCounts:
    """How the (L-)BFGS update requests went (GRANSO's ``BFGS_updates``)."""

    requests: int = 0
    updates: int = 0
    damped_requests: int = 0
    damped_updates: int = 0
    scaling_skips: int = 0
    sty_fails: int = 0
    infnan_fails: int = 0


@dataclass(frozen=True)
class Result:
    """What :func:`ncvx_ref.solve` returns.

    scipy-style: ``x``, ``fun``, ``success``, ``status``, ``message``, ``nit``, ``nfev``
    (``x``/``fun`` are the *best* point when there is one, else the final iterate).
    GRANSO-style: ``final``, ``best``, ``most_feasible``, ``termination_code``, ``mu_final``,
    ``stat_value`` (the stationarity certificate at ``final``), ``H_final``, ``bfgs_updates``,
    ``fn_evals``, ``iters``, ``quadprog_failure_rate``, ``error``, ``mu_lowest``, ``scalings``
    and the unscaled variants of the points when pre-scaling was applied.
    """

    final: PointRecord
    best: Optional[PointRecord]
    most_feasible: Optional[PointRecord]
    termination_code: TerminationCode
    message: str
    iters: int
    fn_evals: int
    stat_value: float
    mu_final: float
    H_final: Any
    bfgs_updates: BFGSCounts
    quadprog_failure_rate: float
    constrained: bool
    error: Optional[BaseException] = None
    mu_lowest: Optional[float] = None
    scalings: Optional[dict] = None
    final_unscaled: Optional[PointRecord] = None
    best_unscaled: Optional[PointRecord] = None
    most_feasible_unscaled: Optional[PointRecord] = None
    history: Optional[list] = field(default=None, repr=False)

    # -- scipy.optimize.OptimizeResult-like views ------------------------------------------
    @property
    def _reported(self) -> PointRecord:
        return self.best if self.best is not None else self.final

    @property
    def x(self) -> Array:
        return self._reported.x

    @property
    def fun(self) -> float:
        return self._reported.f

    @property
    def status(self) -> int:
        return int(self.termination_code)

    @property
    def success(self) -> bool:
        return self.termination_code.success

    @property
    def nit(self) -> int:
        return self.iters

    @property
    def nfev(self) -> int:
        return self.fn_evals
