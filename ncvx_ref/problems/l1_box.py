"""Least absolute deviations in a box (FAMILIES.md §5): nonsmooth objective, 2n inequalities."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace


@dataclass(frozen=True, eq=False)
class L1Box(TestProblem):
    """``f = ||Ax - b||_1`` with subgradient ``A' sign(Ax - b)`` (sign(0) = 0);
    ``ci = (x - 1, -x - 1)``, Jacobian ``[I, -I]``."""

    A: Optional[np.ndarray] = None
    b: Optional[np.ndarray] = None

    @property
    def At(self) -> np.ndarray:
        return self.A.T

    @property
    def box_jacobian(self) -> np.ndarray:
        eye = np.eye(self.n)
        return np.concatenate([eye, -eye], axis=1)

    def kink_arguments(self, x) -> np.ndarray:
        """The residuals ``Ax - b`` (sign(0) = 0 drops a row from the subgradient)."""
        return self.A @ np.asarray(x, dtype=float) - self.b

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        r = self._data("A", x) @ x - self._data("b", x)
        f = xp.sum(xp.abs(r))
        g = self._data("At", x) @ xp.sign(r)
        ci = xp.concat([x - 1.0, -x - 1.0])
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=self._data("box_jacobian", x))


def _make(name, A, b, x0, known_optimum=None) -> L1Box:
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m, n = A.shape
    if b.shape != (m,):
        raise ValueError(f"l1_box `b` must have shape ({m},); got {b.shape}.")
    return L1Box(name=name, n=n, n_ineq=2 * n, n_eq=0, x0=as_float_vector(x0, n, "x0"),
                 known_optimum=known_optimum, A=A, b=b)


def from_case(case: dict) -> L1Box:
    p = case["problem"]
    return _make(case["id"], p["A"], p["b"], case["x0"], case.get("known_optimum"))


def random(n: int, m: int, seed: int) -> L1Box:
    """A fresh instance: A, b standard normal (b scaled by 3 so the box binds); x0 in the box."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = 3.0 * rng.standard_normal(m)
    x0 = rng.uniform(-0.5, 0.5, n)
    return _make(f"l1box_n{n}_m{m}_s{seed}", A, b, x0)
