"""Test problems of the GRANSO reference set, importable like scipy's test functions.

Every family of ``granso_reference/FAMILIES.md`` is rebuilt exactly from a case's stored data
by :func:`from_case`; each family module also has constructors for fresh instances (for
property tests and benchmarks), e.g. ``qp_ineq.random(n, m, seed)``.  A problem's
``evaluate(x)`` returns an :class:`ncvx_ref.Evaluation` in ``x``'s Array-API namespace
(``spectral_radius`` computes on the host with NumPy; see its module).

Example::

    from ncvx_ref import problems
    p = problems.qp_ineq.random(10, 5, seed=0)
    ev = p.evaluate(p.x0)
"""
from __future__ import annotations

from typing import Callable, Dict

from ._base import TestProblem
from . import (hock_schittkowski, infeasible, l1_box, maxq, nonsmooth_rosenbrock, qp_ineq,
               rosenbrock, spectral_radius, sphere_eig, svm_soft_margin)

#: family name (as in the case JSON) -> builder ``case dict -> TestProblem``
REGISTRY: Dict[str, Callable[[dict], TestProblem]] = {
    "rosenbrock": rosenbrock.from_case,
    "nonsmooth_rosenbrock": nonsmooth_rosenbrock.from_case,
    "qp_ineq": qp_ineq.from_case,
    "sphere_eig": sphere_eig.from_case,
    "l1_box": l1_box.from_case,
    "maxq": maxq.from_case,
    "hock_schittkowski": hock_schittkowski.from_case,
    "infeasible": infeasible.from_case,
    "svm_soft_margin": svm_soft_margin.from_case,
    "spectral_radius": spectral_radius.from_case,
}

FAMILIES = tuple(REGISTRY)


def from_case(case: dict) -> TestProblem:
    """The problem of a reference case (a decoded case JSON dict), rebuilt from its stored data."""
    family = case.get("family")
    if family not in REGISTRY:
        raise ValueError(f"unknown problem family {family!r} in case {case.get('id')!r}; "
                         f"known families: {', '.join(FAMILIES)}.")
    p = REGISTRY[family](case)
    if (p.n, p.n_ineq, p.n_eq) != (case["n"], case["n_ineq"], case["n_eq"]):
        raise ValueError(f"case {case.get('id')!r} declares (n, n_ineq, n_eq) = "
                         f"({case['n']}, {case['n_ineq']}, {case['n_eq']}) but its data give "
                         f"({p.n}, {p.n_ineq}, {p.n_eq}).")
    return p


__all__ = ["TestProblem", "REGISTRY", "FAMILIES", "from_case", "hock_schittkowski", "infeasible",
           "l1_box", "maxq", "nonsmooth_rosenbrock", "qp_ineq", "rosenbrock", "spectral_radius",
           "sphere_eig", "svm_soft_margin"]
