"""Nonsmooth Rosenbrock with constraints, GRANSO's example 2 (FAMILIES.md §2)."""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace, device

_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True, eq=False)
class NonsmoothRosenbrock(TestProblem):
    """``f = w |x1^2 - x2| + (1 - x1)^2``; ``variant`` 'max' (one max-constraint) or 'split' (two).

    Subgradient choices: ``s = +1`` when ``x1^2 - x2 >= 0`` (else -1); for 'max' the gradient
    of ``max(sqrt2 x1, 2 x2) - 1`` is that of the first piece when ``sqrt2 x1 >= 2 x2``.
    """

    w: float = 8.0
    variant: str = "max"

    def kink_arguments(self, x) -> np.ndarray:
        """``x1^2 - x2`` (objective) and, for 'max', ``sqrt2 x1 - 2 x2`` (which constraint piece)."""
        x = np.asarray(x, dtype=float)
        k = [x[0] * x[0] - x[1]]
        if self.variant == "max":
            k.append(_SQRT2 * x[0] - 2.0 * x[1])
        return np.asarray(k)

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        dev = device(x)
        x1, x2 = x[0], x[1]
        t = x1 * x1 - x2
        s = 2.0 * xp.astype(t >= 0, x.dtype) - 1.0      # +1 at the kink (t == 0)
        one_m = 1.0 - x1
        f = self.w * xp.abs(t) + one_m * one_m
        g = xp.stack([2.0 * self.w * s * x1 - 2.0 * one_m, -self.w * s])
        a, b = _SQRT2 * x1, 2.0 * x2
        if self.variant == "max":
            first = xp.astype(a >= b, x.dtype)              # ties pick the first piece
            ci = xp.reshape(xp.where(a >= b, a, b) - 1.0, (1,))
            ci_grad = xp.reshape(xp.stack([_SQRT2 * first, 2.0 * (1.0 - first)]), (2, 1))
        else:
            ci = xp.stack([a - 1.0, b - 1.0])
            ci_grad = xp.asarray([[_SQRT2, 0.0], [0.0, 2.0]], dtype=x.dtype, device=dev)
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=ci_grad)


_OPT = {"f": (1.0 - 1.0 / _SQRT2) ** 2, "x": [1.0 / _SQRT2, 0.5], "source": "analytic"}


def from_case(case: dict) -> NonsmoothRosenbrock:
    variant = case["variant"]
    if variant not in ("max", "split"):
        raise ValueError(f"unknown nonsmooth_rosenbrock variant {variant!r}; expected 'max' or 'split'.")
    return NonsmoothRosenbrock(name=case["id"], n=2, n_ineq=1 if variant == "max" else 2, n_eq=0,
                               x0=as_float_vector(case["x0"], 2, "x0"),
                               known_optimum=case.get("known_optimum"),
                               w=float(case["problem"]["w"]), variant=variant)


def make(variant: str = "max", x0=(5.5, 5.5), w: float = 8.0) -> NonsmoothRosenbrock:
    """A fresh instance ('max': one constraint, 'split': GRANSO's two constraints)."""
    if variant not in ("max", "split"):
        raise ValueError(f"`variant` must be 'max' or 'split'; got {variant!r}.")
    return NonsmoothRosenbrock(name=f"nsrosen_{variant}", n=2, n_ineq=1 if variant == "max" else 2,
                               n_eq=0, x0=as_float_vector(x0, 2, "x0"), known_optimum=dict(_OPT),
                               w=float(w), variant=variant)
