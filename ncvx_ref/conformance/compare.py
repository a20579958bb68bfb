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

Rounding-level ties (ALGORITHM.md §19.19; the detector is :mod:`ncvx_ref.conformance.ties`)
are reported next to the checks, not instead of them:

``tie_at``
    The first iteration k at which GRANSO's or our stored iterate has a sign-deciding value
    (a constraint value ``ci``/``ce``, or a kink argument of the family) with
    ``|v| <= TIE_RTOL * S(v)``, where S(v) = sum_j |dv/dx_j| (|x_{k-1,j}| + |x_{k,j} - x_{k-1,j}|)
    is the magnitude of the terms v is computed from (x_k = x_{k-1} + alpha d), propagated
    to v; S > 0 is required (a value computed from exact zeros only is exact everywhere).
    ``TIE_RTOL = TRAJECTORY_RTOL * TRAJECTORY_FLOOR = 1e-14`` (45 ulps of S) is the rounding
    level this module already uses for quantities that cancel: the iterates of two correct
    implementations agree to about that before the first tie (the QP answers differ in their
    last bits; the dot-product error bound is n eps S with n up to 40 here), so a value
    nearer 0 than that can have either sign in either run.  The choice is not delicate: on
    the 61 reference cases the first tie is the same iteration for any tolerance from 1e-16
    to 1e-11 (docs/conformance.md).  spectral_radius measures its eigenvalue gaps against
    ||A + BXC||_F instead (eigensolver error).  Iterations after the first departure are not
    scanned (no later tie can explain it); when the runs never depart, iterations
    0..HISTORY_K are.
``prefix``
    The tie-free prefix (a check like CHECKS, explainable in EXPLAINED, but not one of the
    issue's targets): x, f, tv, mu and stat_val agree to ``TRAJECTORY_RTOL`` on iterations
    0..min(HISTORY_K, tie_at - 1) (the ``trajectory`` check cut at the first tie).  The tie
    iterate itself is excluded: its stat_val uses the tied sign decision, and a tie met by a
    line-search trial point (hs035_default) already makes the iterate differ.

Status of a case: ``FAIL`` (a failed check that is neither explained nor rounding-dependent,
or an error), ``explained`` (its failed checks are in ``EXPLAINED``), ``rounding`` (failed
outcome checks, not in ``EXPLAINED``, after the runs part by rounding beyond the prefix: see
:attr:`CaseComparison.parts_by_rounding`; another CPU's arithmetic gives other such cases,
docs/conformance.md "Platform dependence"), or ``ok``.
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
#: A sign-deciding value within TIE_RTOL * S(v) of 0 is a rounding-level tie (see above).
TIE_RTOL = TRAJECTORY_RTOL * TRAJECTORY_FLOOR
#: A departure whose first difference is at most this is gradual growth of rounding differences.
DRIFT_RTOL = 100 * TRAJECTORY_RTOL
FINAL_F_RTOL = 1e-6
FINAL_F_FLOOR = 1e-8

QUANTITIES = ("x", "f", "tv", "mu", "stat_val")
CHECKS = ("code", "iters", "final_f", "final_violation", "best", "trajectory")

#: Families whose objective and constraints are smooth (the trajectory target applies to these).
SMOOTH_FAMILIES = frozenset({"rosenbrock", "qp_ineq", "sphere_eig", "hock_schittkowski",
                             "svm_soft_margin", "infeasible"})

#: Targets of issue 3, as fractions of cases.
TARGETS = {"code": 0.95, "final_f": 0.95, "trajectory_smooth": 0.80}

#: Explanations in EXPLAINED that name a rounding-level tie: case id -> the iteration of the
#: tie (an iterate's sign decision, or a line-search trial point that became the iterate of
#: that index in one of the runs).  The tie detector must find a tie at that iteration.
EXPLAINED_TIES: Dict[str, int] = {
    'hs035_default': 7, 'hs035_mu10': 14, 'hs035_nobracket_opttol1e-10': 7,
    'l1box_n10_m20_default': 11, 'l1box_n10_m20_mu0.01': 4, 'l1box_n20_m30_default': 16,
    'l1box_n20_m30_lbfgs10': 10, 'l1box_n20_m30_nobracket': 16,
    'nsrosen_max_default': 9, 'nsrosen_max_nobracket': 9, 'nsrosen_max_fvalquit': 9,
    'nsrosen_max_mu0.01': 17, 'nsrosen_split_lbfgs5': 34,
    'qp_n10_m5_default': 10, 'qp_n10_m5_lbfgs5': 2, 'qp_n10_m5_mu0.01': 1,
    'qp_n20_m10_default': 1, 'qp_n20_m10_maxit15': 1, 'qp_n20_m10_nobracket': 1,
    'qp_n30_m20_default': 1,
    'svm_N40_d5_default': 1, 'svm_N40_d5_lbfgs10': 1, 'svm_N40_d5_maxit15': 1,
    'svm_N40_d5_mu0.01': 1, 'svm_N40_d5_opttol1e-6': 1,
}


#: EXPLAINED_TIES outcomes that are not the documented tie, yet consistent with it: the runs
#: part at an earlier detected tie, or run together through the explained iteration, which
#: happens where the platform rounds differently from the development machine (see
#: CaseComparison.parts_by_rounding).
EARLIER_TIE = "the runs part at an earlier tie on this platform"
NOT_REACHED = "no tie and no departure at the explained iteration on this platform"
EXPLAINED_TIE_CONSISTENT = (None, "confirmed", EARLIER_TIE, NOT_REACHED)


def _sign_tie(where: str, then: str = "") -> str:
    """The explanation of a departure at a rounding-level tie of a sign test (§19.19)."""
    text = (f"rounding-level tie at {where}: the sign test c >= 0 is decided by the last bits "
            "(ALGORITHM.md 19.19); the runs take different paths from there")
    return f"{text}; {then}" if then else text


#: case id -> {check: short explanation}; the full investigation is in docs/conformance.md.
#: A listed check that fails is reported as "explained" (pytest: xfail) instead of a failure.
EXPLAINED: Dict[str, Dict[str, str]] = {
    'hs035_default': dict.fromkeys(['code', 'iters', 'trajectory'],
        "line-search trial point t=1 at iteration 7 has ci[0] = 0 exactly in GRANSO and -4.4e-16 in ours (directions agree to 7e-14): GRANSO's curvature test includes the gradient, ours not; alpha 1 vs 1.5"),
    'hs035_mu10': dict.fromkeys(['code', 'iters'],
        _sign_tie('iteration 14 (ci[0] = 4.4e-16 in GRANSO, -8.9e-16 in ours)')),
    'hs035_nobracket_opttol1e-10': dict.fromkeys(['iters', 'trajectory'],
        'same iteration-7 line-search tie as hs035_default (ci[0] = 0 vs -4.4e-16 at t = 1)'),
    'hs071_lbfgs5': dict.fromkeys(['code'],
        "gradual drift: x agree to 1e-15 until iteration 8, then the steering-QP round-off is amplified (no rounding-level tie after the exact x0 one); stat_val departs first (16, 1.8e-8); both reach f = 17.0140173 at iteration 37 (5e-11 relative apart), where GRANSO's stat_val is 1.5e-11 (code 0) and ours 8.9e-8, above opt_tol, so our line search goes on and fails (code 6)"),
    'infeas_ineq_maxit15': dict.fromkeys(['trajectory', 'prefix'],
        "x identical; stat_val at iteration 7 (the last) from a degenerate termination QP: GRANSO's QP shim failed to polish it (qp_polish_failed_cum 0 -> 1) and recorded 1.160e-7; ours 6.414467e-9, and daqp, piqp, proxsuite and clarabel all give 6.414467e-9"),
    'l1box_n10_m20_default': dict.fromkeys(['iters'],
        _sign_tie('iteration 11 (ci[0] = 0 in ours, -1.1e-16 in GRANSO)', 'both end with code 0, final f 2.2e-7 relative apart')),
    'l1box_n10_m20_mu0.01': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 4 (ci[0] = -1.1e-16 in ours, 0 in GRANSO)')),
    'l1box_n20_m30_default': dict.fromkeys(['code', 'iters'],
        _sign_tie('iteration 16 (ci[34] = -1.0e-15 in ours, 0 in GRANSO; GRANSO\'s QP shim needed its non-polished fallback from iteration 15 on)',
                  "ours ends with code 0 after 174 iterations (GRANSO: code 6 after 125), f 2.4e-3 relative apart")),
    'l1box_n20_m30_lbfgs10': dict.fromkeys(['code', 'iters', 'final_f', 'best'],
        _sign_tie('iteration 10 (ci[17] = 0 in ours, -1.1e-16 in GRANSO)',
                  "ours ends with code 6 after 267 iterations (GRANSO: code 0 after 114), f 6.5e-4 relative apart")),
    'l1box_n20_m30_nobracket': dict.fromkeys(['code', 'iters'],
        'same iteration-16 tie as l1box_n20_m30_default; ours ends with code 0 after 174 iterations (GRANSO: code 6 after 148)'),
    'maxquad_K5_n10_default': dict.fromkeys(['code', 'iters'],
        "x agree to 1e-8 to the end; stat_val of the degenerate 20-sample stationarity QPs departs at 61 (GRANSO's QP shim failed to polish from 65 on); ours crosses opt_tol at 107 (code 0) while GRANSO's stays above (2.7e-8 to 4e-8) until its line search fails at 115 (code 6); our answers' y'Qy (3e-16..7e-16 at the last QPs) is as low as any of daqp, clarabel, proxsuite and piqp gives"),
    'maxquad_K5_n10_nobracket': dict.fromkeys(['code', 'iters'],
        'as maxquad_K5_n10_default'),
    'nsrosen_max_default': dict.fromkeys(['iters', 'final_f', 'best', 'trajectory'],
        _sign_tie('iteration 9 (ci[0] = 0 in ours, -8.9e-16 in GRANSO)')),
    'nsrosen_max_nobracket': dict.fromkeys(['iters', 'final_f', 'best', 'trajectory'],
        _sign_tie('iteration 9 (ci[0] = 0 in ours, -8.9e-16 in GRANSO)')),
    'nsrosen_max_fvalquit': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 9 (ci[0] = 0 in ours, -8.9e-16 in GRANSO)')),
    'nsrosen_max_mu0.01': dict.fromkeys(['iters', 'final_f', 'best'],
        "line-search trial point t=1 at iteration 17 has ci[0] = 2.2e-16 along GRANSO's direction (directions agree to 2e-10): GRANSO's curvature test fails there (alpha 2), ours passes (alpha 1)"),
    'nsrosen_split_lbfgs5': dict.fromkeys(['iters', 'final_f', 'best'],
        _sign_tie('iteration 34 (ci[1] = -1.1e-16 in ours, 0 in GRANSO)')),
    'qp_n10_m5_default': dict.fromkeys(['iters'],
        _sign_tie('iteration 10 (ci[0] = -6.7e-16 in ours, 2.9e-15 in GRANSO)', 'both end with code 6 (ours at 47, GRANSO at 55), final f 8.8e-13 apart')),
    'qp_n10_m5_lbfgs5': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 2 (ci[0] = -1.1e-15 in ours, 1.1e-15 in GRANSO)')),
    'qp_n10_m5_mu0.01': dict.fromkeys(['iters', 'trajectory'],
        'line-search trial point t=1 at iteration 1 has ci[1], ci[2], ci[4] within 5e-16 of 0 (directions agree to 5e-16): the curvature test is decided by their signs; alpha 1 (ours) vs 2'),
    'qp_n20_m10_default': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 1 (ci[6] = -2.2e-16 in ours, 1.1e-15 in GRANSO)')),
    'qp_n20_m10_maxit15': dict.fromkeys(['final_f', 'best', 'trajectory'],
        _sign_tie('iteration 1 (ci[6] = -2.2e-16 in ours, 1.1e-15 in GRANSO)', 'maxit = 15 stops both mid-path')),
    'qp_n20_m10_nobracket': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 1 (ci[6] = -2.2e-16 in ours, 1.1e-15 in GRANSO)')),
    'qp_n30_m20_default': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 1 (ci[5] = -6.1e-15 in ours, 1.0e-15 in GRANSO)')),
    'rosenbrock_n10_fvalquit': dict.fromkeys(['final_f', 'best'],
        "unconstrained: x differ by 1e-16 from iteration 2 (summation order) and the difference grows geometrically along Rosenbrock's valley (1e-8 at iteration 41, 5e-6 at 60); fvalquit stops both at iteration 60 mid-path (f 2.4360e-4 vs 2.4356e-4); the converged run rosenbrock_n10_default agrees to 5e-14"),
    'spectral_rand_N30_default': dict.fromkeys(['final_f', 'best'],
        'gradual drift from iteration 27 (directions agree to 3e-9; eigenvector round-off): same code and iteration count, final f 3.7e-4 apart on this nonsmooth, nonconvex problem'),
    'spectral_rand_N30_lbfgs10': dict.fromkeys(['iters'],
        'gradual drift from iteration 30 (directions agree to 5e-9; eigenvector round-off); final f 5.9e-5 apart, same code'),
    'sphere_n10_default': dict.fromkeys(['iters'],
        "x agree; stat_val departs at iteration 72 where GRANSO's QP shim fell back to an interior-point answer; code 0 fires at 155 vs 161"),
    'sphere_n10_mu10': dict.fromkeys(['iters'],
        'stat_val departs at iteration 35 (termination QP); code 0 fires at 442 vs 446, final f 1.4e-10 apart'),
    'sphere_n30_default': dict.fromkeys(['iters'],
        'stat_val departs at iteration 38 (termination QP, directions agree to 6e-8 there); code 0 at 104 vs 127, final f 1.5e-10 apart'),
    'sphere_n30_lbfgs10': dict.fromkeys(['iters', 'final_f', 'best'],
        "gradual drift from iteration 36 (directions agree to 6e-9); our code 0 fires at 89 vs 167 with f 3.0e-6 relative above GRANSO's"),
    'svm_N40_d5_default': dict.fromkeys(['iters', 'final_f', 'best', 'trajectory'],
        _sign_tie('iteration 1 (ci[0] = 2.2e-16 in ours, -2.0e-15 in GRANSO; about 40 linear constraints sit at 0 +- 1e-15 after the first full SQP step)',
                  "both end with code 6, ours at f 1.9e-4 relative above GRANSO's")),
    'svm_N40_d5_lbfgs10': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 1 (ci[0] = 2.2e-16 in ours, -2.0e-15 in GRANSO)', 'both end with code 6, f 1.1e-7 apart')),
    'svm_N40_d5_maxit15': dict.fromkeys(['trajectory'],
        _sign_tie('iteration 1 (ci[0] = 2.2e-16 in ours, -2.0e-15 in GRANSO)')),
    'svm_N40_d5_mu0.01': dict.fromkeys(['iters', 'trajectory'],
        _sign_tie('iteration 1 (ci[3] = -5.6e-16 in ours, 1.1e-15 in GRANSO)',
                  'both end with code 6; our final f (16.30) is lower than GRANSO\'s (18.33) on this convex problem, optimum 14.566')),
    'svm_N40_d5_opttol1e-6': dict.fromkeys(['code', 'iters', 'final_f', 'best', 'trajectory'],
        _sign_tie('iteration 1 (ci[0] = 2.2e-16 in ours, -2.0e-15 in GRANSO)',
                  "ours ends with code 6 at f 1.9e-4 relative above GRANSO's code-0 point")),
}


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
    tie_at: Optional[int] = None        # first rounding-level tie (None: none up to tie_scanned)
    tie: str = ""                        # what the first tie is (value, ulps, run)
    tie_scanned: int = -1               # last iteration scanned for ties
    prefix_end: int = -1                # last iteration of the tie-free prefix (-1: empty)
    prefix_ok: bool = False             # the trajectory agrees on iterations 0..prefix_end
    explained_tie: Optional[str] = None  # EXPLAINED_TIES check: None (no tie claimed), "confirmed" or why not

    @property
    def failed(self) -> List[str]:
        """Failed checks: CHECKS (the issue's), then ``prefix`` (the tie-free prefix)."""
        return [c for c in CHECKS + ("prefix",) if not self.checks.get(c, False)]

    @property
    def parts_by_rounding(self) -> bool:
        """The runs part after the tie-free prefix in a way last bits decide: at or after a
        detected rounding-level tie, or gradually (the first difference above TRAJECTORY_RTOL is
        below DRIFT_RTOL: rounding differences grown by the iteration, where a different
        decision -- step, mu cut, fallback -- differs at 1e-3 or more).  From there the outcome
        checks (all but ``prefix``) depend on the platform's arithmetic: on an Intel Xeon with
        another OpenBLAS and NumPy, 8-9 cases that agree with GRANSO on the development machine
        ended otherwise, and more the other way round (docs/conformance.md, "Platform
        dependence")."""
        dep = self.departure
        if dep.iteration is None or dep.iteration <= self.prefix_end:
            return False
        if self.tie_at is not None and self.tie_at <= dep.iteration:
            return True
        return dep.quantity != "length" and dep.difference <= DRIFT_RTOL

    @property
    def by_rounding(self) -> List[str]:
        """Failed checks not in EXPLAINED that fail only after the runs part by rounding."""
        known = EXPLAINED.get(self.id, {})
        if not self.parts_by_rounding:
            return []
        return [c for c in self.failed if c not in known and c != "prefix"]

    @property
    def unexplained(self) -> List[str]:
        known = EXPLAINED.get(self.id, {})
        return [c for c in self.failed if c not in known and c not in self.by_rounding]

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
        if self.explained:
            return "explained"
        return "rounding" if self.by_rounding else "ok"


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
    _add_ties(row, case, result.history)
    return row


def _add_ties(row: CaseComparison, case: Dict[str, Any], history: Sequence[Any]) -> None:
    """Fill the tie columns of ``row``: first tie, tie-free prefix, EXPLAINED_TIES check."""
    from .. import problems
    from .ties import first_tie, our_iterate, reference_iterate, ties_at

    prob = problems.from_case(case)
    n_common = min(len(case["history"]["x"]), len(history))
    dep = row.departure.iteration
    row.tie_scanned = min(n_common - 1, HISTORY_K if dep is None else dep)
    found = first_tie(case, history, upto=row.tie_scanned, prob=prob)
    if found:
        row.tie_at = found[0].iteration
        row.tie = str(min(found, key=lambda t: t.ulps)) + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
    k_needed = min(HISTORY_K, len(case["history"]["x"]) - 1)
    row.prefix_end = k_needed if row.tie_at is None else min(k_needed, row.tie_at - 1)
    row.prefix_ok = dep is None or dep > row.prefix_end
    row.checks["prefix"] = row.prefix_ok
    j = EXPLAINED_TIES.get(row.id)
    if j is not None:
        at_j = []
        if j < len(case["history"]["x"]):
            at_j += ties_at(prob, *reference_iterate(case, j), j, "GRANSO")
        if j < len(history):
            at_j += ties_at(prob, *our_iterate(history, j), j, "ours")
        if dep is not None and dep < j:
            # another platform's last bits can tip an earlier tie (see CaseComparison.parts_by_rounding)
            row.explained_tie = (EARLIER_TIE if row.tie_at is not None and row.tie_at <= dep else
                                 f"the runs depart at {dep}, before the explained tie at {j}")
        elif not at_j:
            row.explained_tie = (NOT_REACHED if dep is None or dep > j else
                                 f"no tie detected at the explained iteration {j}")
        else:
            row.explained_tie = "confirmed"


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
        d = fams.setdefault(r.family, {"cases": 0, **{c: 0 for c in CHECKS}, "fail": 0, "explained": 0,
                                       "rounding": 0})
        d["cases"] += 1
        for c in CHECKS:
            d[c] += int(r.checks.get(c, False))
        d["fail"] += int(r.status == "FAIL")
        d["explained"] += int(r.status == "explained")
        d["rounding"] += int(r.status == "rounding")
    n = len(rows)
    smooth = [r for r in rows if r.smooth]
    frac = {
        "code": sum(r.checks.get("code", False) for r in rows) / n if n else math.nan,
        "final_f": sum(r.checks.get("final_f", False) for r in rows) / n if n else math.nan,
        "trajectory_smooth": (sum(r.checks.get("trajectory", False) for r in smooth) / len(smooth)
                              if smooth else math.nan),
    }
    departed = [r for r in rows if r.error is None and r.departure.iteration is not None]
    ties = {   # next to the targets, not replacing them
        "prefix_all": sum(r.prefix_ok for r in rows),
        "prefix_smooth": sum(r.prefix_ok for r in smooth),
        "no_tie_in_first_k": sum(r.error is None and (r.tie_at is None or r.tie_at > HISTORY_K)
                                 for r in rows),
        "departed": len(departed),
        "departed_at_or_after_tie": sum(r.tie_at is not None and r.tie_at <= r.departure.iteration
                                        for r in departed),
        "explained_ties": sum(r.explained_tie is not None for r in rows),
        "explained_ties_confirmed": sum(r.explained_tie == "confirmed" for r in rows),
    }
    return {"families": fams, "fractions": frac,
            "targets_met": {k: frac[k] >= TARGETS[k] for k in TARGETS},
            "cases": n, "smooth_cases": len(smooth), "ties": ties}
