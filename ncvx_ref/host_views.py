"""Runs from a CPU torch tensor go through the core on NumPy views of the same memory.

A CPU torch tensor and a NumPy array can share their memory (``Tensor.numpy()``,
``torch.from_numpy``), so nothing is copied either way.  On small problems the core's cost is
per operation, and torch's is several times NumPy's (2-3 µs on a 2-element tensor, plus
array-api-compat's wrappers): on the nonsmooth Rosenbrock example the core took 1.68 ms per
iteration on torch tensors against 0.72 on NumPy arrays.  So a run whose ``x0`` is a float64 or
float32 CPU torch tensor runs the core on NumPy views, and everything the user sees stays torch:

- the user's function receives ``x`` as a torch tensor (a view of the core's array) and returns
  torch tensors, checked here as the core checks arrays of its own namespace (type, dtype,
  device) and handed to the core as views;
- ``H0`` and ``limited_mem_warm_start`` given as tensors are viewed as NumPy;
- callbacks get their :class:`~ncvx_ref.history.IterationState` with torch views of every
  array, and the :class:`~ncvx_ref.result.Result` (its points, ``H_final``, ``scalings``) holds
  torch views; ``Result.history`` stays NumPy copies, as documented for every backend.

CUDA tensors keep the core on torch (their arrays stay on the device).  :data:`ENABLED` off
runs CPU tensors through the torch core as well (tests use it to keep that path covered).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Optional

import numpy as np

from .evaluation import Evaluation
from .evaluator import ProblemDefinitionError, as_evaluation
from .result import Deferred

Array = Any

#: route CPU torch runs through NumPy views (False: the core runs on the torch tensors)
ENABLED = True


def _is_tensor(a) -> bool:
    torch = _torch()
    return torch is not None and isinstance(a, torch.Tensor)


def _torch():
    return sys.modules.get("torch")  # never imported here: a tensor exists only if torch is


class TorchViews:
    """The conversions of one run whose ``x0`` is a CPU torch tensor (see the module docstring)."""

    def __init__(self, x0) -> None:
        self.dtype = x0.dtype

    @classmethod
    def of(cls, x0) -> Optional["TorchViews"]:
        """The views of a run from ``x0``, or None when the core should run on ``x0`` as it is."""
        if not ENABLED or not _is_tensor(x0) or x0.device.type != "cpu":
            return None
        torch = _torch()
        if x0.dtype not in (torch.float64, torch.float32):
            return None  # e.g. bfloat16, which NumPy has no dtype for: the core stays on torch
        return cls(x0)

    # -- into the core -----------------------------------------------------------------------
    @staticmethod
    def to_core(a):
        """A CPU tensor as a NumPy view of its memory (anything else unchanged)."""
        if _is_tensor(a) and a.device.type == "cpu":
            return a.detach().numpy()
        if isinstance(a, dict):
            return {k: TorchViews.to_core(v) for k, v in a.items()}
        return a

    def function(self, fun: Callable) -> Callable:
        """``fun`` on NumPy views: torch ``x`` in, its torch outputs checked and viewed as NumPy."""
        def on_views(x: np.ndarray) -> Evaluation:
            ev = as_evaluation(fun(self.to_user(x)))
            return Evaluation(self._output(ev.f, "f", scalar=True), self._output(ev.f_grad, "f_grad"),
                              self._output(ev.ci, "ci"), self._output(ev.ci_grad, "ci_grad"),
                              self._output(ev.ce, "ce"), self._output(ev.ce_grad, "ce_grad"))

        return on_views

    def _output(self, a, name: str, scalar: bool = False):
        """One output of the user's function as the core's NumPy view, or the reason it cannot be.

        The objective (``scalar``) is only read as a number, as the core reads it on any
        backend: a tensor of any dtype or device, a Python or NumPy number."""
        if a is None:
            return a
        if scalar:
            return a.detach().cpu().numpy() if _is_tensor(a) else a
        if not _is_tensor(a):
            if not hasattr(a, "shape"):
                return a  # not an array at all: the core's checks say what is wrong
            raise ProblemDefinitionError(
                f"{name} is a {type(a).__module__.split('.')[0]} array but x0 is a torch tensor: "
                "return arrays of x's namespace (use an adapter from ncvx_ref.adapters to convert)")
        if a.device.type != "cpu":
            raise ProblemDefinitionError(f"{name} is on device {a.device} but x0 is on cpu: keep "
                                         "every array on x's device")
        if a.dtype != self.dtype:
            raise ProblemDefinitionError(f"{name} has dtype {a.dtype} but x0 has dtype {self.dtype}: "
                                         "return arrays of x's dtype")
        return a.detach().numpy()

    def callback(self, callback: Optional[Callable]) -> Optional[Callable]:
        """``callback`` seeing the iteration state with torch views of its arrays."""
        if callback is None:
            return None
        return lambda state: callback(self.state(state))

    # -- out to the user ---------------------------------------------------------------------
    @staticmethod
    def to_user(a):
        """NumPy arrays (also inside dicts, lists and tuples) as torch views of their memory."""
        if isinstance(a, np.ndarray):
            return _torch().from_numpy(a if a.flags.writeable else a.copy())
        if isinstance(a, dict):
            return {k: TorchViews.to_user(v) for k, v in a.items()}
        if isinstance(a, (list, tuple)) and not hasattr(a, "_fields"):
            return type(a)(TorchViews.to_user(v) for v in a)
        return a

    def point(self, p):
        """A :class:`~ncvx_ref.result.PointRecord` or :class:`~ncvx_ref.penalty.PenaltyPoint`
        with torch views of its arrays (None stays None)."""
        if p is None:
            return None
        return dataclasses.replace(p, **{f.name: self.to_user(getattr(p, f.name))
                                         for f in dataclasses.fields(p)
                                         if isinstance(getattr(p, f.name), np.ndarray)})

    def state(self, state):
        """An :class:`~ncvx_ref.history.IterationState` with torch views of its arrays."""
        get_H = state.get_H
        return dataclasses.replace(
            state, point=self.point(state.point), direction=self.to_user(state.direction),
            stat_vec=self.to_user(state.stat_vec), qp_H=self.to_user(state.qp_H),
            get_H=lambda: self.to_user(get_H()))

    def result(self, result):
        """The run's :class:`~ncvx_ref.result.Result` with torch views of every array but the
        history (NumPy copies, as on every backend); ``H_final`` is converted when first read,
        so a core result that forms it on first read still does (and only then)."""
        H = Deferred(lambda: self.to_user(result.H_final))
        points = {name: self.point(getattr(result, name))
                  for name in ("final", "best", "most_feasible", "final_unscaled", "best_unscaled",
                               "most_feasible_unscaled")}
        return dataclasses.replace(result, H_final=H, scalings=self.to_user(result.scalings),
                                   **points)
