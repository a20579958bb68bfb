"""The result of a run: scipy-style fields plus GRANSO's certificate (§16, OPTIONS.md §E)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

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


class Deferred:
    """A value formed on first read: :attr:`Result.H_final` of a full-BFGS run whose updates
    were still rank-2 terms at the end (``ncvx_ref/bfgs_factored.py``), so that a run whose
    caller never reads it never allocates the ``n x n`` matrix."""

    __slots__ = ("form",)

    def __init__(self, form: Callable[[], Any]) -> None:
        self.form = form


class _FormedOnRead:
    """A dataclass field whose stored value may be a :class:`Deferred`: the first read forms it
    and keeps the result.  No default (the class access raises ``AttributeError``, which tells
    ``dataclasses`` so); frozen dataclasses store it through ``__set__``."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            raise AttributeError(self.slot[1:])
        value = obj.__dict__[self.slot]
        if isinstance(value, Deferred):
            value = value.form()
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class Result:
    """What :func:`ncvx_ref.solve` returns.

    scipy-style: ``x``, ``fun``, ``success``, ``status``, ``message``, ``nit``, ``nfev``
    (``x``/``fun`` are the *best* point when there is one, else the final iterate).
    GRANSO-style: ``final``, ``best``, ``most_feasible``, ``termination_code``, ``mu_final``,
    ``stat_value`` (the stationarity certificate at ``final``), ``H_final``, ``bfgs_updates``,
    ``fn_evals``, ``iters``, ``quadprog_failure_rate``, ``error``, ``mu_lowest``, ``scalings``
    and the unscaled variants of the points when pre-scaling was applied.

    ``H_final`` of a full-BFGS run that never formed its ``n x n`` matrix (a short run at
    ``n >= 512``, see docs/deviations.md) is formed on first read, once.
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
    H_final: Any = _FormedOnRead()
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

    def __getstate__(self) -> dict:
        """For pickling: a deferred ``H_final`` is formed first (its recipe holds the run's
        device arrays and namespace)."""
        self.H_final  # noqa: B018 - forms it in place
        return dict(self.__dict__)

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
