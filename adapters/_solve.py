"""The adapters' common ``solve``: run the core on an adapted problem, give the variables back by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

Array = Any


@dataclass(frozen=True)
class Solution:
    """What an adapter's ``solve`` returns: the core's :class:`ncvx_ref.Result` plus named variables.

    ``x`` is the reported point (``result.x``: the best point when there is one, else the final
    iterate) in the user's structure (a ``{name: array}`` mapping, a JAX pytree, or the flat
    vector for a flat problem), on the device and with the dtype of ``x0``.  ``final_x``,
    ``best_x`` and ``most_feasible_x`` give the other points the same way (None when absent).
    """

    result: Any
    unflatten: Callable[[Array], Any]

    def _named(self, record) -> Any:
        return None if record is None else self.unflatten(record.x)

    @property
    def x(self) -> Any:
        return self.unflatten(self.result.x)

    @property
    def final_x(self) -> Any:
        return self._named(self.result.final)

    @property
    def best_x(self) -> Any:
        return self._named(self.result.best)

    @property
    def most_feasible_x(self) -> Any:
        return self._named(self.result.most_feasible)

    @property
    def fun(self) -> float:
        return self.result.fun

    @property
    def success(self) -> bool:
        return self.result.success


def run_solve(fun: Callable, x0: Array, unflatten: Callable[[Array], Any], *, options=None,
              qp_solver=None, callback: Optional[Callable] = None, record_history: bool = False,
              **option_kwargs) -> Solution:
    """Call :func:`ncvx_ref.solve` on ``fun`` from the flat ``x0`` and wrap the answer."""
    import ncvx_ref  # the core; imported here so that importing an adapter stays cheap

    result = ncvx_ref.solve(fun, x0, options=options, qp_solver=qp_solver, callback=callback,
                            record_history=record_history, **option_kwargs)
    return Solution(result=result, unflatten=unflatten)
