"""Strictly convex QP with linear inequalities (FAMILIES.md §3): smooth, constrained."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace


@dataclass(frozen=True, eq=False)
class QPIneq(TestProblem):
    """``f = 0.5 x'Qx + q'x``, ``ci = A x - b`` (row j of A is constraint j); Jacobian ``A'``."""

    Q: Optional[np.ndarray] = None
    q: Optional[np.ndarray] = None
    A: Optional[np.ndarray] = None
    b: Optional[np.ndarray] = None

    @property
    def At(self) -> np.ndarray:
        return self.A.T

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        Qx = self._data("Q", x) @ x
        q = self._data("q", x)
        f = 0.5 * xp.vecdot(x, Qx) + xp.vecdot(q, x)
        ci = self._data("A", x) @ x - self._data("b", x)
        return Evaluation(f=f, f_grad=Qx + q, ci=ci, ci_grad=self._data("At", x))


def _make(name, Q, q, A, b, x0, known_optimum=None) -> QPIneq:
    Q, q, A, b = (np.asarray(v, dtype=np.float64) for v in (Q, q, A, b))
    n, m = Q.shape[0], A.shape[0]
    if Q.shape != (n, n) or q.shape != (n,) or A.shape != (m, n) or b.shape != (m,):
        raise ValueError(f"qp_ineq data shapes disagree: Q {Q.shape}, q {q.shape}, A {A.shape}, "
                         f"b {b.shape}; expected (n,n), (n,), (m,n), (m,).")
    return QPIneq(name=name, n=n, n_ineq=m, n_eq=0, x0=as_float_vector(x0, n, "x0"),
                  known_optimum=known_optimum, Q=Q, q=q, A=A, b=b)


def from_case(case: dict) -> QPIneq:
    p = case["problem"]
    return _make(case["id"], p["Q"], p["q"], p["A"], p["b"], case["x0"], case.get("known_optimum"))


def random(n: int, m: int, seed: int) -> QPIneq:
    """A fresh instance drawn as the reference set draws them (x = 0 strictly feasible)."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    Q = G.T @ G / n + 0.5 * np.eye(n)
    Q = 0.5 * (Q + Q.T)
    q = 2.0 * rng.standard_normal(n)
    A = rng.standard_normal((m, n))
    b = rng.uniform(0.1, 1.0, m)
    x0 = rng.standard_normal(n)
    return _make(f"qp_n{n}_m{m}_s{seed}", Q, q, A, b, x0)
