"""The evaluation record: what every adapter hands the solver core at one point.

The core never calls a framework's autodiff itself.  A user function (or an adapter in
``ncvx_ref.adapters``) maps a point ``x`` (a 1-D array of length ``n`` in the core's
namespace) to one :class:`Evaluation`: the objective, the inequality and equality
constraint values, and their gradients, laid out as GRANSO lays them out (a constraint
Jacobian is an ``n x m`` matrix whose *columns* are the constraint gradients).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

Array = Any  # an array of any Array-API namespace (numpy, cupy, torch, jax, array_api_strict)


@dataclass(frozen=True)
class Evaluation:
    """Values and gradients of ``f``, ``c_I`` and ``c_E`` at one point.

    ``f`` is a Python float or a 0-d array; ``f_grad`` has shape ``(n,)``; ``ci``/``ce``
    have shape ``(m,)`` and ``ci_grad``/``ce_grad`` shape ``(n, m)`` (column ``j`` is the
    gradient of constraint ``j``).  An absent constraint group is ``None`` (both value
    and gradient).  Arrays must share the namespace, dtype and device of ``x``.
    """

    f: Union[float, Array]
    f_grad: Array
    ci: Array | None = None
    ci_grad: Array | None = None
    ce: Array | None = None
    ce_grad: Array | None = None


#: The function type the core consumes: ``x -> Evaluation``.
EvaluationFn = Callable[[Array], Evaluation]
