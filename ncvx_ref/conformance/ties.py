"""Rounding-level ties (ALGORITHM.md §19.19): the first iterate whose sign decisions rounding can flip.

At every iterate the algorithm takes sign decisions: ``c_I >= 0`` (is the constraint's gradient
in the penalty subgradient?), ``c_E >= 0`` (with which sign?) and, for nonsmooth families, which
piece of the objective is active (``TestProblem.kink_arguments``: a value of 0 is a kink).  When
such a value is within a few rounding errors of 0, the last bits of the iterate -- which no
re-implementation with another QP solver or BLAS reproduces -- decide it, and the runs may
separate from the next iteration on.  This module finds the first such iterate of a run.

The rule (:func:`is_tie`; its tolerance ``compare.TIE_RTOL`` and the justification are in
``compare.py``): a decision value ``v`` at iterate ``x_k`` is a tie when

    |v| <= TIE_RTOL * S(v),   S(v) = sum_j |dv/dx_j| (|x_{k-1,j}| + |x_{k,j} - x_{k-1,j}|)

and S(v) > 0 (for k = 0, ``x_{-1} = x_0``).  ``S`` is the magnitude of the terms ``v`` is
computed from, propagated to ``v``: ``x_k`` is computed as ``x_{k-1} + alpha d`` (each component
carries a rounding error of about eps (|x_{k-1,j}| + |alpha d_j|)), and first-order propagation
multiplies it by ``|dv/dx_j|``.  For a linear constraint ``a'x - b`` at 0 this is
``sum |a_j x_j|``, the textbook scale of the rounding error of the dot product, which also
bounds ``|b|`` there.  A value exactly 0 with S > 0 is a tie (a QP that lands exactly on a
bound, as an active-set solver does, against one that lands an ulp off: the hs071/PIQP case
of docs/conformance.md); a value computed from exact zeros only (S = 0, e.g. ``-x_j`` with
``x_j = 0`` since x0) is exact in any implementation, not a tie.

Exception: ``spectral_radius`` evaluates eigenvalues, which a backward-stable eigensolver
computes with an absolute error of about eps ||M|| (M = A + B X C) whatever their sensitivity
to x; its kink arguments (gaps between eigenvalues) use ``S = ||M||_F`` and its constraint
``S = max(S, ||M||_F)``.  Gradients of kink arguments come from central differences (only
their magnitude matters).

Constraint values are the run's own stored ones (those its decisions used); kink arguments
are evaluated by the rebuilt problem at the run's iterate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .compare import TIE_RTOL

EPS = float(np.finfo(np.float64).eps)
#: relative step of the central differences that give the gradients of kink arguments (only
#: their magnitude matters: S is a scale, not a value that decides anything)
_FD_RSTEP = 1e-6


@dataclass(frozen=True)
class Tie:
    """A decision value at rounding level of 0 at one iterate of one run."""

    iteration: int
    run: str            # "GRANSO" or "ours"
    kind: str           # "ci", "ce" or "kink"
    index: int
    value: float
    ulps: float         # |value| / (eps * S)

    def __str__(self) -> str:
        who = "GRANSO's" if self.run == "GRANSO" else "our"
        return (f"{self.kind}[{self.index}] = {self.value:.2e} ({self.ulps:.1f} ulps of its terms) "
                f"in {who} iterate {self.iteration}")


def _kink_gradients(prob: Any, x: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian (rows: kink arguments) of ``prob.kink_arguments`` at x."""
    k0 = np.asarray(prob.kink_arguments(x), dtype=float)
    J = np.zeros((k0.size, x.size))
    if k0.size == 0:
        return J
    for j in range(x.size):
        h = _FD_RSTEP * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = h
        J[:, j] = (np.asarray(prob.kink_arguments(x + e)) - np.asarray(prob.kink_arguments(x - e))) / (2 * h)
    return J


def _eigen_scale(prob: Any, x: np.ndarray) -> float:
    """||A + B X C||_F for spectral_radius (the eigensolver's absolute error scale / eps), else 0."""
    if not all(hasattr(prob, a) for a in ("A", "B", "C")) or getattr(prob, "C", None) is None:
        return 0.0
    p, m = prob.B.shape[1], prob.C.shape[0]
    return float(np.linalg.norm(prob.A + prob.B @ x.reshape(m, p).T @ prob.C))


def decision_values(prob: Any, x, x_prev, ci, ce) -> List[tuple]:
    """(kind, index, value, S) for every sign decision at iterate x (``x_prev``: the one before).

    ``ci``/``ce`` are the run's own stored constraint values (the ones its decisions used);
    their gradients and the kink arguments are evaluated by the rebuilt problem at x.
    """
    x = np.asarray(x, dtype=float)
    x_prev = x if x_prev is None else np.asarray(x_prev, dtype=float)
    spread = np.abs(x_prev) + np.abs(x - x_prev)           # the terms of x = x_prev + step
    eig = _eigen_scale(prob, x)
    out = []
    if (ci is not None and np.size(ci)) or (ce is not None and np.size(ce)):
        ev = prob.evaluate(x)
        for kind, vals, jac in (("ci", ci, ev.ci_grad), ("ce", ce, ev.ce_grad)):
            if vals is None or np.size(vals) == 0:
                continue
            jac = np.asarray(jac, dtype=float).reshape(x.size, -1)   # n x m, columns = gradients
            scales = np.abs(jac).T @ spread
            for i, v in enumerate(np.atleast_1d(np.asarray(vals, dtype=float))):
                out.append((kind, i, float(v), max(float(scales[i]), eig)))
    kinks = np.atleast_1d(np.asarray(prob.kink_arguments(x), dtype=float))
    if kinks.size:
        scales = np.full(kinks.size, eig) if eig > 0 else np.abs(_kink_gradients(prob, x)) @ spread
        out += [("kink", i, float(v), float(s)) for i, (v, s) in enumerate(zip(kinks, scales))]
    return out


def is_tie(value: float, scale: float) -> bool:
    """The rule of the module doc: |v| <= TIE_RTOL S with S > 0 (finite values only)."""
    return bool(np.isfinite(value) and scale > 0 and abs(value) <= TIE_RTOL * scale)


def ties_at(prob: Any, x, x_prev, ci, ce, iteration: int, run: str) -> List[Tie]:
    """Every decision value of iterate x that is a tie."""
    return [Tie(iteration, run, kind, i, v, abs(v) / (EPS * s))
            for kind, i, v, s in decision_values(prob, x, x_prev, ci, ce) if is_tie(v, s)]


def reference_iterate(case: Dict[str, Any], k: int):
    """(x_k, x_{k-1} or None, ci_k, ce_k) of GRANSO's stored history."""
    h = case["history"]
    return (np.asarray(h["x"][k], dtype=float), np.asarray(h["x"][k - 1], dtype=float) if k else None,
            np.asarray(h["ci"][k], dtype=float) if case["n_ineq"] else None,
            np.asarray(h["ce"][k], dtype=float) if case["n_eq"] else None)


def our_iterate(history: Sequence[Any], k: int):
    """(x_k, x_{k-1} or None, ci_k, ce_k) of our ``Result.history``."""
    e = history[k]
    return e.x, history[k - 1].x if k else None, e.ci, e.ce


def first_tie(case: Dict[str, Any], history: Sequence[Any], upto: Optional[int] = None,
              prob: Any = None) -> Optional[List[Tie]]:
    """The ties of the first iterate k <= ``upto`` at which GRANSO's or our run has one (None: none).

    ``upto`` defaults to the last iterate both runs have.  Scanning stops at the first tie: a
    later one cannot change where the runs may first separate.
    """
    if prob is None:
        from .. import problems
        prob = problems.from_case(case)
    n_common = min(len(case["history"]["x"]), len(history))
    last = n_common - 1 if upto is None else min(upto, n_common - 1)
    for k in range(last + 1):
        found = ties_at(prob, *reference_iterate(case, k), k, "GRANSO")
        found += ties_at(prob, *our_iterate(history, k), k, "ours")
        if found:
            return found
    return None
