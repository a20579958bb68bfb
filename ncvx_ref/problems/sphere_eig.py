"""Smallest eigenvalue as ``min x'Ax s.t. x'x = 1`` (FAMILIES.md §4): smooth, one equality."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace


@dataclass(frozen=True, eq=False)
class SphereEig(TestProblem):
    """``f = x'Ax`` (grad ``2Ax``), ``ce = x'x - 1`` (grad ``2x``)."""

    A: Optional[np.ndarray] = None

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        Ax = self._data("A", x) @ x
        f = xp.vecdot(x, Ax)
        ce = xp.reshape(xp.vecdot(x, x) - 1.0, (1,))
        return Evaluation(f=f, f_grad=2.0 * Ax, ce=ce, ce_grad=xp.reshape(2.0 * x, (self.n, 1)))


def _make(name, A, x0, known_optimum=None) -> SphereEig:
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"sphere_eig `A` must be square; got {A.shape}.")
    return SphereEig(name=name, n=n, n_ineq=0, n_eq=1, x0=as_float_vector(x0, n, "x0"),
                     known_optimum=known_optimum, A=A)


def from_case(case: dict) -> SphereEig:
    return _make(case["id"], case["problem"]["A"], case["x0"], case.get("known_optimum"))


def random(n: int, seed: int) -> SphereEig:
    """A fresh instance: ``A = (G + G')/2`` with G standard normal; x0 standard normal."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    A = 0.5 * (G + G.T)
    x0 = rng.standard_normal(n)
    w = np.linalg.eigvalsh(A)
    return _make(f"sphere_n{n}_s{seed}", A, x0,
                 {"f": float(w[0]), "source": "smallest eigenvalue of A (numpy.linalg.eigvalsh)"})
