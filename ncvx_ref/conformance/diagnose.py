"""What decided a departure: the facts around the first iteration where our run leaves GRANSO's.

Used to write (and re-check) the explanations in docs/conformance.md.  For a case and our
result (with history) :func:`diagnose` reports, at the first departing iteration k:

* whether the search direction d_k still agreed (then the line search decided: alpha, evals);
* whether mu, the fallback level or the number of stationarity samples differ;
* the first iteration j <= k at which a sign decision differs between the runs: a constraint
  value on the other side of 0 (``c >= 0`` decides whether/with which sign its gradient enters
  the penalty gradient, ALGORITHM.md §2) or a kink argument of a nonsmooth problem
  (``TestProblem.kink_arguments``) -- the rounding-level ties of ALGORITHM.md §19.19;
* the rounding-level ties (:mod:`.ties`) at the departing iterate and the one before, and
  the first tie of the runs;
* the reference's QP-shim counters (did GRANSO's QPs need the non-polished fallback?).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from .compare import (TRAJECTORY_RTOL, first_departure, our_trajectory, reference_trajectory)
from .ties import first_tie, our_iterate, reference_iterate, ties_at


@dataclass
class Diagnosis:
    case_id: str
    iteration: Optional[int]
    quantity: Optional[str]
    kind: str
    facts: List[str]

    def __str__(self) -> str:
        head = f"{self.case_id}: departs at {self.iteration} ({self.quantity}): {self.kind}"
        return head + "".join(f"\n    - {f}" for f in self.facts)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return np.inf
    den = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    return 0.0 if den == 0 else float(np.max(np.abs(a - b), initial=0.0) / den)


def _signs(ci, ce, kinks):
    out = []
    if ci is not None:
        out += [("ci", i, float(v)) for i, v in enumerate(np.atleast_1d(ci))]
    if ce is not None:
        out += [("ce", i, float(v)) for i, v in enumerate(np.atleast_1d(ce))]
    out += [("kink", i, float(v)) for i, v in enumerate(np.atleast_1d(kinks))]
    return out


def _first_sign_flip(case, prob, ours_hist, upto: int):
    """First iteration j <= upto where some decision value has a different sign (>= 0) in the runs."""
    h = case["history"]
    for j in range(min(upto + 1, len(ours_hist), len(h["x"]))):
        e = ours_hist[j]
        ci_r = np.asarray(h["ci"][j], dtype=float) if case["n_ineq"] else None
        ce_r = np.asarray(h["ce"][j], dtype=float) if case["n_eq"] else None
        mine = _signs(e.ci, e.ce, prob.kink_arguments(e.x))
        ref = _signs(ci_r, ce_r, prob.kink_arguments(np.asarray(h["x"][j], dtype=float)))
        for (g, i, a), (_, _, b) in zip(mine, ref):
            if (a >= 0) != (b >= 0) or (g == "kink" and (a == 0) != (b == 0)):
                return j, f"{g}[{i}] = {a:.3e} (ours) vs {b:.3e} (GRANSO) at iteration {j}"
    return None, None


def _near_ties(case, prob, history, j: int) -> List[str]:
    """The rounding-level ties (compare.TIE_RTOL rule, :mod:`.ties`) of both runs' iterate j."""
    found = []
    if j < len(case["history"]["x"]):
        found += ties_at(prob, *reference_iterate(case, j), j, "GRANSO")
    if j < len(history):
        found += ties_at(prob, *our_iterate(history, j), j, "ours")
    return [str(t) for t in sorted(found, key=lambda t: t.ulps)]


def diagnose(case: Dict[str, Any], result: Any) -> Diagnosis:
    """The facts that explain where and why ``result`` leaves the reference trajectory."""
    from .. import problems

    prob = problems.from_case(case)
    h = case["history"]
    dep = first_departure(our_trajectory(result.history), reference_trajectory(case))
    if dep.iteration is None:
        return Diagnosis(case["id"], None, None, "no departure", [])
    k = dep.iteration
    facts: List[str] = []
    if dep.quantity == "length":
        kind = "same trajectory, one run stopped earlier"
        facts.append(f"ours {len(result.history) - 1} iterations, GRANSO {len(h['x']) - 1}; "
                     f"codes {int(result.termination_code)} / {case['result']['termination_code']}")
        last = min(len(result.history), len(h["x"])) - 1
        facts.append(f"stat_val at the last common iterate: ours {result.history[last].stat_val:.3e}, "
                     f"GRANSO {h['stat_val'][last]:.3e}")
        return Diagnosis(case["id"], k, dep.quantity, kind, facts)
    e = result.history[k]
    d_rel = _rel(e.direction, h["d"][k])
    facts.append(f"direction d_{k}: relative difference {d_rel:.1e}")
    facts.append(f"alpha {e.alpha:g} / {h['alpha'][k]:g}, evals {e.ls_evals} / {h['ls_evals'][k]}, "
                 f"mu {e.mu:.6g} / {h['mu'][k]:.6g}, fallback {e.fallback_level} / {h['fallback_level'][k]}, "
                 f"n_grads {e.n_grads} / {h['n_grads'][k]}")
    j, flip = _first_sign_flip(case, prob, result.history, k)
    if flip:
        facts.append("first sign decision that differs: " + flip)
    for jj in sorted({max(k - 1, 0), k}):
        ties = _near_ties(case, prob, result.history, jj)
        if ties:
            facts.append(f"rounding-level ties at iterate {jj}: {'; '.join(ties[:6])}")
    first = first_tie(case, result.history, upto=k, prob=prob)
    if first:
        facts.append(f"first rounding-level tie of the runs: iteration {first[0].iteration} ({first[0]})")
    polish = h.get("qp_polish_failed_cum")
    if polish is not None and polish[k] > 0:
        first = next(i for i, v in enumerate(polish) if v > 0)
        facts.append(f"GRANSO's QP shim needed its non-polished fallback from iteration {first} on "
                      "(QP answers only interior-point accurate there)")
    if dep.quantity == "stat_val" and _rel(e.x, h["x"][k]) <= TRAJECTORY_RTOL:
        kind = ("stationarity value only (cache samples differ)" if e.n_grads != h["n_grads"][k]
                else "stationarity value only (termination QP answer)")
    elif flip is not None and j is not None and j <= k:
        kind = f"sign decision at a rounding-level tie (iteration {j})"
    elif d_rel <= TRAJECTORY_RTOL and (e.alpha != h["alpha"][k] or e.ls_evals != h["ls_evals"][k]):
        kind = "same direction, different line-search outcome"
    elif d_rel <= TRAJECTORY_RTOL:
        kind = f"gradual drift (same steps; directions agree to {d_rel:.0e}, below the tolerance)"
    elif e.mu != h["mu"][k]:
        kind = "steering chose a different mu"
    elif e.fallback_level != h["fallback_level"][k]:
        kind = "different fallback level"
    else:
        kind = "different search direction (QP answer / accumulated rounding)"
    return Diagnosis(case["id"], k, dep.quantity, kind, facts)
