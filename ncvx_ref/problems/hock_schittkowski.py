"""Hock-Schittkowski problems 35 and 71 (FAMILIES.md §7): smooth NLPs with known solutions."""
from __future__ import annotations

from dataclasses import dataclass


from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace, device


@dataclass(frozen=True, eq=False)
class HS071(TestProblem):
    """HS071: ``x1 x4 (x1+x2+x3) + x3`` s.t. ``x1x2x3x4 >= 25``, ``1 <= x <= 5``, ``||x||^2 = 40``."""

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        dev = device(x)
        x1, x2, x3, x4 = x[0], x[1], x[2], x[3]
        s = x1 + x2 + x3
        f = x1 * x4 * s + x3
        g = xp.stack([x4 * s + x1 * x4, x1 * x4, x1 * x4 + 1.0, x1 * s])
        prod_grad = xp.stack([x2 * x3 * x4, x1 * x3 * x4, x1 * x2 * x4, x1 * x2 * x3])
        ci = xp.concat([xp.reshape(25.0 - x1 * x2 * x3 * x4, (1,)), 1.0 - x, x - 5.0])
        eye = xp.eye(4, dtype=x.dtype, device=dev)
        ci_grad = xp.concat([xp.reshape(-prod_grad, (4, 1)), -eye, eye], axis=1)
        ce = xp.reshape(xp.sum(x * x) - 40.0, (1,))
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=ci_grad, ce=ce,
                          ce_grad=xp.reshape(2.0 * x, (4, 1)))


@dataclass(frozen=True, eq=False)
class HS035(TestProblem):
    """HS035: a convex quadratic with ``x1 + x2 + 2 x3 <= 3`` and ``x >= 0``."""

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        x1, x2, x3 = x[0], x[1], x[2]
        f = (9.0 - 8.0 * x1 - 6.0 * x2 - 4.0 * x3 + 2.0 * x1 * x1 + 2.0 * x2 * x2 + x3 * x3
             + 2.0 * x1 * x2 + 2.0 * x1 * x3)
        g = xp.stack([-8.0 + 4.0 * x1 + 2.0 * x2 + 2.0 * x3, -6.0 + 4.0 * x2 + 2.0 * x1,
                      -4.0 + 2.0 * x3 + 2.0 * x1])
        ci = xp.concat([xp.reshape(x1 + x2 + 2.0 * x3 - 3.0, (1,)), -x])
        ci_grad = xp.asarray([[1.0, -1.0, 0.0, 0.0], [1.0, 0.0, -1.0, 0.0], [2.0, 0.0, 0.0, -1.0]],
                             dtype=x.dtype, device=device(x))
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=ci_grad)


_HS071_OPT = {"f": 17.0140172891563, "x": [1.0, 4.7429996, 3.8211500, 1.3794083],
              "source": "Hock & Schittkowski (1981), problem 71"}
_HS035_OPT = {"f": 1.0 / 9.0, "x": [4.0 / 3.0, 7.0 / 9.0, 4.0 / 9.0],
              "source": "Hock & Schittkowski (1981), problem 35"}


def hs071(x0=(1.0, 5.0, 5.0, 1.0)) -> HS071:
    """HS071 from the standard start (1, 5, 5, 1) unless ``x0`` is given."""
    return HS071(name="hs071", n=4, n_ineq=9, n_eq=1, x0=as_float_vector(x0, 4, "x0"),
                 known_optimum=dict(_HS071_OPT))


def hs035(x0=(0.5, 0.5, 0.5)) -> HS035:
    """HS035 from the standard start (0.5, 0.5, 0.5) unless ``x0`` is given."""
    return HS035(name="hs035", n=3, n_ineq=4, n_eq=0, x0=as_float_vector(x0, 3, "x0"),
                 known_optimum=dict(_HS035_OPT))


def from_case(case: dict) -> TestProblem:
    variant = case["variant"]
    makers = {"hs071": hs071, "hs035": hs035}
    if variant not in makers:
        raise ValueError(f"unknown hock_schittkowski variant {variant!r}; expected one of {sorted(makers)}.")
    p = makers[variant](case["x0"])
    return type(p)(name=case["id"], n=p.n, n_ineq=p.n_ineq, n_eq=p.n_eq, x0=p.x0,
                   known_optimum=case.get("known_optimum"))
