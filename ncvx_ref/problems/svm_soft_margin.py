"""Soft-margin linear SVM in primal form (FAMILIES.md §9): smooth objective, 2N linear inequalities."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace, device


@dataclass(frozen=True, eq=False)
class SVMSoftMargin(TestProblem):
    """x = (w, b, zeta); ``f = 0.5||w||^2 + C sum zeta``;
    ``ci = (1 - zeta_i - y_i (w'x_i + b), -zeta_i)``."""

    X: Optional[np.ndarray] = None   # (N, d)
    y: Optional[np.ndarray] = None   # (N,)
    C: float = 1.0

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def N(self) -> int:
        return self.X.shape[0]

    @property
    def jacobian(self) -> np.ndarray:
        """The constant ``n x 2N`` constraint Jacobian (columns = constraint gradients)."""
        N, d = self.N, self.d
        J = np.zeros((self.n, 2 * N))
        J[:d, :N] = -(self.y[:, None] * self.X).T
        J[d, :N] = -self.y
        J[d + 1:, :N] = -np.eye(N)
        J[d + 1:, N:] = -np.eye(N)
        return J

    @property
    def yX(self) -> np.ndarray:
        return self.y[:, None] * self.X

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        d = self.d
        w, b, zeta = x[:d], x[d], x[d + 1:]
        f = 0.5 * xp.vecdot(w, w) + self.C * xp.sum(zeta)
        g = xp.concat([w, xp.zeros((1,), dtype=x.dtype, device=device(x)),
                       xp.full(zeta.shape, self.C, dtype=x.dtype, device=device(x))])
        y = self._data("y", x)
        margin = y * (self._data("X", x) @ w + b)
        ci = xp.concat([1.0 - zeta - margin, -zeta])
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=self._data("jacobian", x))


def _make(name, X, y, C, x0, known_optimum=None) -> SVMSoftMargin:
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    N, d = X.shape
    if y.shape != (N,):
        raise ValueError(f"svm `y` must have shape ({N},); got {y.shape}.")
    n = d + 1 + N
    return SVMSoftMargin(name=name, n=n, n_ineq=2 * N, n_eq=0, x0=as_float_vector(x0, n, "x0"),
                         known_optimum=known_optimum, X=X, y=y, C=float(C))


def from_case(case: dict) -> SVMSoftMargin:
    p = case["problem"]
    return _make(case["id"], p["X"], p["y"], p["C"], case["x0"], case.get("known_optimum"))


def random(N: int, d: int, seed: int, C: float = 1.0) -> SVMSoftMargin:
    """A fresh instance: labels alternate +1/-1, samples N(0, I) shifted by y_i u (u a random unit vector)."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    X = rng.standard_normal((N, d)) + y[:, None] * u[None, :]
    x0 = 0.5 * rng.standard_normal(d + 1 + N)
    return _make(f"svm_N{N}_d{d}_s{seed}", X, y, C, x0)
