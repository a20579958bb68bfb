"""Chained Rosenbrock function (FAMILIES.md §1): unconstrained, smooth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace, device


@dataclass(frozen=True, eq=False)
class Rosenbrock(TestProblem):
    """``f(x) = sum_i a (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum 0 at x = 1."""

    a: float = 100.0

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        head, tail = x[:-1], x[1:]
        r = tail - head * head
        one_m = 1.0 - head
        f = xp.sum(self.a * (r * r) + one_m * one_m)
        g_head = -4.0 * self.a * r * head - 2.0 * one_m
        g_tail = 2.0 * self.a * r
        zero = xp.zeros((1,), dtype=x.dtype, device=device(x))
        g = xp.concat([g_head, zero]) + xp.concat([zero, g_tail])
        return Evaluation(f=f, f_grad=g)


def from_case(case: dict) -> Rosenbrock:
    n = int(case["n"])
    return Rosenbrock(name=case["id"], n=n, n_ineq=0, n_eq=0,
                      x0=as_float_vector(case["x0"], n, "x0"),
                      known_optimum=case.get("known_optimum"), a=float(case["problem"]["a"]))


def chained(n: int, x0=None, a: float = 100.0) -> Rosenbrock:
    """The chained Rosenbrock function in ``n >= 2`` variables (x0 defaults to -1.2, 1, -1.2, ...)."""
    if n < 2:
        raise ValueError(f"`n` must be at least 2 for the chained Rosenbrock function; got {n}.")
    if x0 is None:
        x0 = np.where(np.arange(n) % 2 == 0, -1.2, 1.0)
    return Rosenbrock(name=f"rosenbrock_n{n}", n=n, n_ineq=0, n_eq=0,
                      x0=as_float_vector(x0, n, "x0"),
                      known_optimum={"f": 0.0, "x": [1.0] * n, "source": "analytic"}, a=float(a))
