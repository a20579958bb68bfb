"""MAXQ and MAXQUAD (FAMILIES.md §6): nonsmooth, unconstrained pointwise maxima."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, one_hot_first_max, namespace


@dataclass(frozen=True, eq=False)
class MaxQ(TestProblem):
    """``f = max_i x_i^2``, gradient ``2 x_j e_j`` for the first maximizing index j."""

    def kink_arguments(self, x) -> np.ndarray:
        """Gap between the largest and second-largest ``x_i^2`` (0 = a tie in the max)."""
        s = np.sort(np.asarray(x, dtype=float) ** 2)
        return np.asarray([s[-1] - s[-2]]) if s.size > 1 else np.zeros(0)

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        sq = x * x
        return Evaluation(f=xp.max(sq), f_grad=2.0 * x * one_hot_first_max(xp, sq))


@dataclass(frozen=True, eq=False)
class MaxQuad(TestProblem):
    """``f = max_k 0.5 x'Q_k x + qs_k'x + cs_k``, gradient ``Q_j x + qs_j`` for the first max j."""

    Qs: Optional[np.ndarray] = None   # (K, n, n)
    qs: Optional[np.ndarray] = None   # (K, n)
    cs: Optional[np.ndarray] = None   # (K,)

    def kink_arguments(self, x) -> np.ndarray:
        """Gaps between the largest piece and every other piece (0 = a tie in the max)."""
        x = np.asarray(x, dtype=float)
        vals = 0.5 * np.einsum("kij,i,j->k", self.Qs, x, x) + self.qs @ x + self.cs
        return np.delete(vals.max() - vals, int(np.argmax(vals)))

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        Qx = self._data("Qs", x) @ x                       # (K, n): row k = Q_k x
        qs = self._data("qs", x)
        vals = 0.5 * xp.vecdot(Qx, x) + qs @ x + self._data("cs", x)
        w = one_hot_first_max(xp, vals)
        return Evaluation(f=xp.max(vals), f_grad=w @ Qx + w @ qs)


def maxq(n: int) -> MaxQ:
    """The classic MAXQ in ``n`` variables from its standard start (i for i <= n/2, else -i)."""
    i = np.arange(1, n + 1, dtype=np.float64)
    x0 = np.where(np.arange(1, n + 1) <= n // 2, i, -i)
    return MaxQ(name=f"maxq_n{n}", n=n, n_ineq=0, n_eq=0, x0=x0,
                known_optimum={"f": 0.0, "x": [0.0] * n, "source": "analytic"})


def _maxquad(name, Qs, qs, cs, x0, known_optimum=None) -> MaxQuad:
    Qs, qs, cs = (np.asarray(v, dtype=np.float64) for v in (Qs, qs, cs))
    K, n = qs.shape
    if Qs.shape != (K, n, n) or cs.shape != (K,):
        raise ValueError(f"maxquad data shapes disagree: Qs {Qs.shape}, qs {qs.shape}, cs {cs.shape}; "
                         "expected (K,n,n), (K,n), (K,).")
    return MaxQuad(name=name, n=n, n_ineq=0, n_eq=0, x0=as_float_vector(x0, n, "x0"),
                   known_optimum=known_optimum, Qs=Qs, qs=qs, cs=cs)


def maxquad_random(n: int, K: int, seed: int) -> MaxQuad:
    """A fresh MAXQUAD: ``Q_k = G'G/n + 0.1 I``, qs, cs standard normal, x0 standard normal."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((K, n, n))
    Qs = np.einsum("kji,kjl->kil", G, G) / n + 0.1 * np.eye(n)
    Qs = 0.5 * (Qs + np.transpose(Qs, (0, 2, 1)))
    return _maxquad(f"maxquad_K{K}_n{n}_s{seed}", Qs, rng.standard_normal((K, n)),
                    rng.standard_normal(K), rng.standard_normal(n))


def from_case(case: dict) -> TestProblem:
    variant, n = case["variant"], int(case["n"])
    if variant == "maxq":
        return MaxQ(name=case["id"], n=n, n_ineq=0, n_eq=0, x0=as_float_vector(case["x0"], n, "x0"),
                    known_optimum=case.get("known_optimum"))
    if variant == "maxquad":
        p = case["problem"]
        return _maxquad(case["id"], p["Qs"], p["qs"], p["cs"], case["x0"], case.get("known_optimum"))
    raise ValueError(f"unknown maxq variant {variant!r}; expected 'maxq' or 'maxquad'.")
