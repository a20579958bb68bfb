"""The weak Wolfe line search with bracketing by doubling and bisection (ALGORITHM.md §8.1).

It searches along ``d`` from ``x0`` on the penalty function as the evaluator currently defines
it (the evaluator's ``mu``).  Outcomes: ``fail = 0`` accepted; ``1`` bracketed but no weak
Wolfe point before the bracket became too small (or the budget ran out); ``2`` never
bracketed (expansion limit or budget): the function may be unbounded below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .backend import Backend
from .evaluator import PenaltyEvaluator

Array = Any

ACCEPTED, BRACKETED_FAILED, NOT_BRACKETED = 0, 1, 2


@dataclass(frozen=True)
class WolfeParameters:
    c1: float = 1e-4
    c2: float = 0.5
    fvalquit: float = -math.inf
    step_tol: float = 1e-12


@dataclass(frozen=True)
class LineSearchResult:
    """The accepted point (``fail == 0``) or the lower end of the search (``fail > 0``)."""

    alpha: float
    x: Array
    F: float
    G: Array
    fail: int


def round_half_away(v: float) -> int:
    """MATLAB's ``round`` (half away from zero), not Python's banker's rounding."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def weak_wolfe(ev: PenaltyEvaluator, x0: Array, f0: float, g0: Array, d: Array,
               params: WolfeParameters, backend: Backend, limit: float = math.inf) -> LineSearchResult:
    """HANSO-style weak Wolfe search on ``p(x0 + t d)`` (§8.1, exact comparison directions §19.3)."""
    a, xa, fa, ga = 0.0, x0, f0, g0
    b = math.inf
    s0 = backend.dot(g0, d)
    dn = backend.norm(d)
    if not dn > 0:  # GRANSO's loop test is then inf > inf (or NaN): no evaluation, not bracketed
        return LineSearchResult(a, xa, fa, ga, NOT_BRACKETED)
    nexp_max = max(10, round_half_away(math.log2(1e5 / dn)))
    t = 1.0
    nev = nexp = 0
    xa_norm = backend.norm(x0)  # ‖x0 + a d‖; xa is exactly that vector, so its norm is reused
    while (b - a) > (xa_norm / dn) * params.step_tol and nev < limit:
        xt = x0 + t * d
        pt = ev.evaluate(xt)
        nev += 1
        ft, gt = pt.p, pt.p_grad
        if pt.feasible_to_tol and ft <= params.fvalquit and math.isfinite(ft):
            return LineSearchResult(t, xt, ft, gt, ACCEPTED)  # early accept, no Wolfe test
        st = backend.dot(gt, d)
        if ft >= f0 + (params.c1 * t) * s0 or math.isnan(ft):  # sufficient decrease fails
            b = t
        elif st <= params.c2 * s0 or math.isnan(st):  # curvature fails: not far enough
            a, xa, fa, ga = t, xt, ft, gt
            xa_norm = backend.norm(xa)
        else:
            return LineSearchResult(t, xt, ft, gt, ACCEPTED)
        if b < math.inf:
            t = (a + b) / 2
        elif nexp < nexp_max:
            nexp += 1
            t = 2 * a
        else:
            break
    return LineSearchResult(a, xa, fa, ga, BRACKETED_FAILED if b < math.inf else NOT_BRACKETED)
