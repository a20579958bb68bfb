"""Problems with contradictory constraints (FAMILIES.md §8): no feasible point exists."""
from __future__ import annotations

from dataclasses import dataclass


from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, namespace, device


@dataclass(frozen=True, eq=False)
class Infeasible(TestProblem):
    """``f = x1^2 + x2^2``; 'ineq': ``(x1 + 1, 1 - x1) <= 0``; 'eq': ``(x1 - 1, x1 + 1) = 0``."""

    variant: str = "ineq"

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        xp = namespace(x)
        dev = device(x)
        f = xp.sum(x * x)
        x1 = x[0]
        if self.variant == "ineq":
            ci = xp.stack([x1 + 1.0, 1.0 - x1])
            J = xp.asarray([[1.0, -1.0], [0.0, 0.0]], dtype=x.dtype, device=dev)
            return Evaluation(f=f, f_grad=2.0 * x, ci=ci, ci_grad=J)
        ce = xp.stack([x1 - 1.0, x1 + 1.0])
        J = xp.asarray([[1.0, 1.0], [0.0, 0.0]], dtype=x.dtype, device=dev)
        return Evaluation(f=f, f_grad=2.0 * x, ce=ce, ce_grad=J)


def make(variant: str = "ineq", x0=(0.5, 2.0)) -> Infeasible:
    """A fresh instance of the 'ineq' or 'eq' variant."""
    if variant not in ("ineq", "eq"):
        raise ValueError(f"`variant` must be 'ineq' or 'eq'; got {variant!r}.")
    return Infeasible(name=f"infeas_{variant}", n=2, n_ineq=2 if variant == "ineq" else 0,
                      n_eq=2 if variant == "eq" else 0, x0=as_float_vector(x0, 2, "x0"),
                      variant=variant)


def from_case(case: dict) -> Infeasible:
    p = make(case["variant"], case["x0"])
    return Infeasible(name=case["id"], n=2, n_ineq=p.n_ineq, n_eq=p.n_eq, x0=p.x0,
                      known_optimum=case.get("known_optimum"), variant=p.variant)
