"""How a run of ours is compared with a GRANSO reference case: every tolerance, in one place.

Checks made for each case (names used in reports, tests and ``EXPLAINED``):

``code``
    Our termination code equals GRANSO's.  Exact: codes are discrete outcomes.
``iters``
    Our number of accepted iterations equals GRANSO's.  Exact: when the trajectories agree to
    rounding, the algorithm takes the same steps; when they have separated (see ``trajectory``),
    a difference is explained case by case in docs/conformance.md.
``final_f``
    ``|f - f_ref| <= FINAL_F_RTOL * max(|f_ref|, FINAL_F_FLOOR * S_f)`` (S_f = largest |f| of
    the reference history, i.e. the problem's own scale), *or* ours is lower at equal
    feasibility (our final point feasible to tolerance whenever GRANSO's is).  1e-6 relative is
    the issue's target; GRANSO stops when its stationarity measure is below opt_tol = 1e-8, which
    fixes f only to about that order, so requiring more would test the stopping iteration,
    not the answer.  The floor makes optimal values of 0 (Rosenbrock, MAXQ) comparable:
    below 1e-8 S_f the objective is at rounding-noise level of the terms it is computed from.
``final_violation``
    Our final iterate is feasible to tolerance exactly when GRANSO's is, or its l∞
    violation is no larger than GRANSO's.  (Both runs use viol_ineq_tol = viol_eq_tol = 1e-6;
    comparing violations of 1e-12 against each other would compare rounding noise.)
``best``
    ``best`` exists in both results or in neither; if it exists, its f passes the ``final_f``
    test against GRANSO's ``best.f`` and its violation the ``final_violation`` test.
``trajectory``
    Our iterates agree with GRANSO's history for the first ``HISTORY_K`` iterations (or the
    whole reference run if shorter): x, f, the l∞ violation tv, mu and the stationarity value
    each within ``TRAJECTORY_RTOL`` (see :func:`scaled_difference`).  1e-8 relative is the issue's
    target: far above rounding (1e-16 per operation, amplified by the BFGS update and the line
    search) yet far below any algorithmic difference (a different step, mu cut or fallback
    changes x at the 1e-3 level or more).

:func:`first_departure` gives the first iteration at which any of the five quantities departs
by more than ``TRAJECTORY_RTOL``, over the whole common length of the runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

# -- tolerances (the ONLY place they are set) ------------------------------------------------
TRAJECTORY_RTOL = 1e-8
#: A trajectory quantity that has fallen below TRAJECTORY_FLOOR times its largest magnitude in
#: the reference run is compared absolutely at TRAJECTORY_RTOL * TRAJECTORY_FLOOR * that
#: magnitude (= 1e-14 S, ~45 ulps of S): its rounding error is set by the size of the terms
#: it is computed from (e.g. c = Ax - b with |Ax| ~ |b|), not by its own tiny size.
TRAJECTORY_FLOOR = 1e-6
HISTORY_K = 10
FINAL_F_RTOL = 1e-6
FINAL_F_FLOOR = 1e-8

QUANTITIES = ("x", "f", "tv", "mu", "stat_val")
CHECKS = ("code", "iters", "final_f", "final_violation", "best", "trajectory")

#: Families whose objective and constraints are smooth (the trajectory target applies to these).
SMOOTH_FAMILIES = frozenset({"rosenbrock", "qp_ineq", "sphere_eig", "hock_schittkowski",
                             "svm_soft_margin", "infeasible"})

#: Targets of issue 3, as fractions of cases.
TARGETS = {"code": 0.95, "final_f": 0.95, "trajectory_smooth": 0.80}

#: case id -> {check: short explanation}; the full investigation is in docs/conformance.md.
#: A listed check that fails is reported as "explained" (pytest: xfail) instead of a failure.
EXPLAINED: Dict[str, Dict[str, str]] = {}


# -- trajectories --------------------------------------------------------------------------
def reference_trajectory(case: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The compared quantities of a case's stored history, one row per iteration."""
    h = case["history"]
    return {"x": np.asarray(h["x"], dtype=float), "f": np.asarray(h["f"], dtype=float),
            "tv": np.asarray(h["tv"], dtype=float), "mu": np.asarray(h["mu"], dtype=float),
            "stat_val": np.asarray(h["stat_val"], dtype=float)}


def our_trajectory(history: Sequence[Any]) -> Dict[str, np.ndarray]:
    """The same quantities from a ``Result.history`` (a list of ``HistoryEntry``)."""
    return {"x": np.asarray([np.asarray(e.x, dtype=float) for e in history]),
            "f": np.asarray([e.f for e in history], dtype=float),
            "tv": np.asarray([e.tv for e in history], dtype=float),
            "mu": np.asarray([e.mu for e in history], dtype=float),
            "stat_val": np.asarray([e.stat_val for e in history], dtype=float)}


def scaled_difference(a, b, scale: float) -> float:
    """``||a - b||_inf / max(||a||_inf, ||b||_inf, TRAJECTORY_FLOOR * scale)``; 0 when equal.

    Equal non-finite values (both +inf, both NaN) count as equal.
    """
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    if not (np.isfinite(a[~same]).all() and np.isfinite(b[~same]).all()):
        return math.inf
    den = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), TRAJECTORY_FLOOR * scale)
    num = float(np.max(np.abs(a - b)))
    return num / den if den > 0 else math.inf


@dataclass(frozen=True)
class Departure:
    """First iteration where the runs differ by more than TRAJECTORY_RTOL (None: never)."""

    iteration: Optional[int]
    quantity: Optional[str] = None      # which quantity, or "length" when one run simply ended
    difference: float = 0.0

    def __str__(self) -> str:
        if self.iteration is None:
            return "-"
        if self.quantity == "length":
            return f"{self.iteration} (end)"
        return f"{self.iteration} ({self.quantity} {self.difference:.1e})"


def first_departure(ours: Dict[str, np.ndarray], ref: Dict[str, np.ndarray],
                    rtol: float = TRAJECTORY_RTOL) -> Departure:
    """The first iteration at which x, f, tv, mu or stat_val differ by more than ``rtol``.

    Scales for the floor are the largest magnitudes of each quantity in the reference run.  If
    the runs agree on their common length but have different lengths, the departure is the
    first iteration that only one of them has.
    """
    n_common = min(len(ours["f"]), len(ref["f"]))
    scales = {q: float(np.max(np.abs(ref[q][np.isfinite(ref[q])]), initial=0.0)) for q in QUANTITIES}
    for k in range(n_common):
        for q in QUANTITIES:
            d = scaled_difference(ours[q][k], ref[q][k], scales[q])
            if d > rtol:
                return Departure(k, q, d)
    if len(ours["f"]) != len(ref["f"]):
        return Departure(n_common, "length", 0.0)
    return Departure(None)


# -- final results ---------------------------------------------------------------------------
def _f_close(f: float, f_ref: float, scale_f: float) -> float:
    """Scaled difference of objective values for the ``final_f`` test."""
    if f == f_ref:
        return 0.0
    den = max(abs(f_ref), FINAL_F_FLOOR * scale_f)
    return abs(f - f_ref) / den if den > 0 else math.inf


def _point_ok(ours, ref: Dict[str, Any], scale_f: float, constrained: bool):
    """(f ok, violation ok, f difference) for one point record against GRANSO's."""
    diff = _f_close(float(ours.f), float(ref["f"]), scale_f)
    feas_ref = bool(ref.get("feasible_to_tol", True)) if constrained else True
    feas = bool(ours.feasible_to_tol) if constrained else True
    tv_ref = float(ref.get("tv", 0.0)) if constrained else 0.0
    tv = float(ours.tv) if constrained else 0.0
    viol_ok = (feas == feas_ref) or tv <= tv_ref
    better = float(ours.f) < float(ref["f"]) and (feas or not feas_ref)
    return (diff <= FINAL_F_RTOL or better), viol_ok, diff


@dataclass
class CaseComparison:
    """One row of the conformance report."""

    id: str
    family: str
    smooth: bool
    code_ref: int
    code: Optional[int]
    iters_ref: int
    iters: Optional[int]
    fn_evals_ref: int
    fn_evals: Optional[int]
    f_ref: float
    f: float = math.nan
    f_diff: float = math.nan
    tv_ref: float = 0.0
    tv: float = math.nan
    departure: Departure = field(default_factory=lambda: Departure(None))
    checks: Dict[str, bool] = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0

    @property
    def failed(self) -> List[str]:
        return [c for c in CHECKS if not self.checks.get(c, False)]

    @property
    def unexplained(self) -> List[str]:
        known = EXPLAINED.get(self.id, {})
        return [c for c in self.failed if c not in known]

    @property
    def explained(self) -> List[str]:
        known = EXPLAINED.get(self.id, {})
        return [c for c in self.failed if c in known]

    @property
    def stale_explanations(self) -> List[str]:
        """Checks listed in EXPLAINED that now pass (the explanation should be removed)."""
        return [c for c in EXPLAINED.get(self.id, {}) if self.checks.get(c, False)]

    @property
    def status(self) -> str:
        if self.error is not None or self.unexplained:
            return "FAIL"
        return "explained" if self.explained else "ok"


def compare_case(case: Dict[str, Any], result: Any, seconds: float = 0.0) -> CaseComparison:
    """Compare a :class:`ncvx_ref.Result` (run with ``record_history=True``) with ``case``."""
    R = case["result"]
    constrained = case["n_ineq"] + case["n_eq"] > 0
    ref_traj = reference_trajectory(case)
    scale_f = float(np.max(np.abs(ref_traj["f"][np.isfinite(ref_traj["f"])]), initial=0.0))
    row = CaseComparison(id=case["id"], family=case["family"],
                         smooth=case["family"] in SMOOTH_FAMILIES, code_ref=int(R["termination_code"]),
                         code=int(result.termination_code), iters_ref=int(R["iters"]),
                         iters=int(result.iters), fn_evals_ref=int(R["fn_evals"]),
                         fn_evals=int(result.fn_evals), f_ref=float(R["final"]["f"]),
                         f=float(result.final.f), tv_ref=float(R["final"].get("tv", 0.0)),
                         tv=float(result.final.tv) if constrained else 0.0, seconds=seconds)
    f_ok, viol_ok, row.f_diff = _point_ok(result.final, R["final"], scale_f, constrained)
    if R["best"] is None or result.best is None:
        best_ok = (R["best"] is None) == (result.best is None)
    else:
        bf, bv, _ = _point_ok(result.best, R["best"], scale_f, constrained)
        best_ok = bf and bv
    if result.history is None:
        raise ValueError("compare_case needs a result of ncvx_ref.solve(..., record_history=True).")
    ours_traj = our_trajectory(result.history)
    row.departure = first_departure(ours_traj, ref_traj)
    k_needed = min(HISTORY_K, len(ref_traj["f"]) - 1)   # iterations 0..k_needed must agree
    traj_ok = row.departure.iteration is None or row.departure.iteration > k_needed
    row.checks = {"code": row.code == row.code_ref, "iters": row.iters == row.iters_ref,
                  "final_f": f_ok, "final_violation": viol_ok, "best": best_ok,
                  "trajectory": traj_ok}
    return row


def failed_row(case: Dict[str, Any], error: BaseException, seconds: float = 0.0) -> CaseComparison:
    """The row of a case whose run raised (every check fails)."""
    R = case["result"]
    return CaseComparison(id=case["id"], family=case["family"],
                          smooth=case["family"] in SMOOTH_FAMILIES, code_ref=int(R["termination_code"]),
                          code=None, iters_ref=int(R["iters"]), iters=None,
                          fn_evals_ref=int(R["fn_evals"]), fn_evals=None, f_ref=float(R["final"]["f"]),
                          error=f"{type(error).__name__}: {error}", seconds=seconds)


# -- summaries -------------------------------------------------------------------------------
def summarize(rows: Sequence[CaseComparison]) -> Dict[str, Any]:
    """Counts per family and overall, and the issue's targets met or not."""
    fams: Dict[str, Dict[str, int]] = {}
    for r in rows:
        d = fams.setdefault(r.family, {"cases": 0, **{c: 0 for c in CHECKS}, "fail": 0, "explained": 0})
        d["cases"] += 1
        for c in CHECKS:
            d[c] += int(r.checks.get(c, False))
        d["fail"] += int(r.status == "FAIL")
        d["explained"] += int(r.status == "explained")
    n = len(rows)
    smooth = [r for r in rows if r.smooth]
    frac = {
        "code": sum(r.checks.get("code", False) for r in rows) / n if n else math.nan,
        "final_f": sum(r.checks.get("final_f", False) for r in rows) / n if n else math.nan,
        "trajectory_smooth": (sum(r.checks.get("trajectory", False) for r in smooth) / len(smooth)
                              if smooth else math.nan),
    }
    return {"families": fams, "fractions": frac,
            "targets_met": {k: frac[k] >= TARGETS[k] for k in TARGETS},
            "cases": n, "smooth_cases": len(smooth)}
