"""Conformance with MATLAB GRANSO 1.6.4: every reference case is one test.

Each case is solved with its stored x0 and options and compared with GRANSO's result by
:func:`ncvx_ref.conformance.compare.compare_case`: termination code, iteration count, final and
best f and violation, and the first ``HISTORY_K`` iterations of the history.  The tolerances
and their justification live in ONE place, ``ncvx_ref/conformance/compare.py``; the cases
whose differences were investigated are listed in ``compare.EXPLAINED`` (details in
docs/conformance.md) and are reported as xfail with the reason.

Reference data: ``<repo>/../shared/granso_reference`` (resolved from this file); the tests are
skipped with a message when it is absent.  Cases that take more than ~30 s are marked
``slow`` and run only with ``-m slow`` or ``NCVX_RUN_SLOW=1``.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ncvx_ref.conformance import check_case
from ncvx_ref.conformance.cases import case_paths, load_case, resolved_options
from ncvx_ref.conformance.compare import EXPLAINED, EXPLAINED_TIE_CONSISTENT, EXPLAINED_TIES, TIE_RTOL
from ncvx_ref.conformance.ties import EPS, is_tie, ties_at

REF_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "granso_reference"
CASE_PATHS = case_paths(REF_DIR)
needs_reference = pytest.mark.skipif(
    not CASE_PATHS, reason=f"GRANSO reference cases not found at {REF_DIR} (expected "
    "../shared/granso_reference relative to the repository root)")

#: Cases measured at more than ~30 s on the 2-core development machine: 200 x 200
#: eigenproblems (two eigendecompositions per evaluation; ~80 s).  The l1_box n = 20 and
#: qp_n20_m10_nobracket cases, slow (145-780 s) while their stationarity QPs had up to 1230
#: variables, take under 3 s since repeated columns of linear constraints are merged.
SLOW_CASES = {
    "spectral_ex4_maxit200",      # n = 200: two 200 x 200 eigendecompositions per evaluation
}


def _run_slow(config) -> bool:
    return os.environ.get("NCVX_RUN_SLOW") == "1" or "slow" in (config.getoption("markexpr") or "").replace(
        "not slow", "")


def _param(path: Path):
    marks = [pytest.mark.slow] if path.stem in SLOW_CASES else []
    return pytest.param(path, id=path.stem, marks=marks)


@lru_cache(maxsize=None)
def _case(path: Path) -> dict:
    return load_case(path)


@needs_reference
@pytest.mark.parametrize("path", [_param(p) for p in CASE_PATHS])
def test_reference_case(path, request):
    if path.stem in SLOW_CASES and not _run_slow(request.config):
        pytest.skip("slow case: run with -m slow or NCVX_RUN_SLOW=1")
    case = _case(path)
    row = check_case(case)
    assert row.error is None, f"{case['id']}: the run raised {row.error}"
    summary = (f"code {row.code}/{row.code_ref} (ours/GRANSO), iters {row.iters}/{row.iters_ref}, "
               f"final f rel diff {row.f_diff:.2e}, violation {row.tv:.1e}/{row.tv_ref:.1e}, "
               f"first departure {row.departure}")
    # The tie-free prefix (ALGORITHM.md §19.19): up to the first rounding-level tie, or through
    # iteration HISTORY_K, the trajectory must agree to 1e-8 in every case -- no explanation
    # excuses a departure before any tie.
    # A departure inside it fails unless EXPLAINED documents its check "prefix" (one case: a
    # wrong stationarity value in GRANSO's reference, see docs/conformance.md).
    assert row.prefix_ok or "prefix" in EXPLAINED.get(case["id"], {}), (
        f"{case['id']}: the trajectory departs at {row.departure}, inside the tie-free prefix "
        f"0..{row.prefix_end} (first tie: {row.tie or 'none'})")
    # A difference explained by a rounding-level tie must have that tie where it says (or, on a
    # platform that rounds otherwise, part at an earlier tie or not at all there).
    assert row.explained_tie in EXPLAINED_TIE_CONSISTENT, f"{case['id']}: {row.explained_tie}"
    if row.unexplained:
        pytest.fail(f"{case['id']}: checks {row.unexplained} outside tolerance (see "
                    f"ncvx_ref/conformance/compare.py): {summary}")
    # Outcome checks failed only after the runs part by rounding (after the tie-free prefix, at a
    # tie or gradually) depend on the platform's last bits (compare.CaseComparison.
    # parts_by_rounding): on the development machine every such case is investigated and listed
    # in EXPLAINED; on another platform new ones are reported, not failed.
    if row.explained or row.by_rounding:
        reasons: dict = {}
        for c in row.explained:   # one line per distinct reason, naming the checks it covers
            reasons.setdefault(EXPLAINED[case["id"]][c], []).append(c)
        if row.by_rounding:
            how = f"at the rounding-level tie at iteration {row.tie_at} ({row.tie})" if row.tie else "gradually"
            reasons.setdefault(f"the runs part by rounding {how}, first departure {row.departure}; "
                               "not investigated for this platform", []).extend(row.by_rounding)
        why = "; ".join(f"{'/'.join(cs)}: {r}" for r, cs in reasons.items())
        pytest.xfail(f"{case['id']}: known difference ({why}) -- {summary}")


@needs_reference
def test_option_defaults_match_granso():
    """Every option a case leaves unset must default to the value GRANSO resolved for it."""
    from ncvx_ref import Options

    case = _case(CASE_PATHS[0])
    defaults = Options()
    skip = {"ngrad", "print_level", "print_ascii"}  # n-dependent / platform-dependent / set by cases
    bad = []
    for name, value in resolved_options(case).items():
        if name in skip or name in case["options"]:
            continue
        ours = getattr(defaults, name, "<missing>")
        same = (ours == value) or (isinstance(ours, float) and isinstance(value, float)
                                   and math.isnan(ours) and math.isnan(value))
        if not same:
            bad.append(f"{name}: ours {ours!r}, GRANSO {value!r}")
    assert not bad, "defaults differ from GRANSO 1.6.4's: " + "; ".join(bad)


@needs_reference
def test_stale_explanations_are_for_existing_cases():
    ids = {p.stem for p in CASE_PATHS}
    assert set(EXPLAINED) <= ids, f"EXPLAINED lists unknown cases: {sorted(set(EXPLAINED) - ids)}"
    assert set(EXPLAINED_TIES) <= set(EXPLAINED), "EXPLAINED_TIES names cases without an explanation"


class _Linear:
    """A stand-in problem: ``ci = A x - b`` (Jacobian ``A'``), no kinks."""

    def __init__(self, A):
        self.A = np.asarray(A, dtype=float)

    def evaluate(self, x):
        return SimpleNamespace(ci_grad=self.A.T, ce_grad=None)

    def kink_arguments(self, x):
        return np.zeros(0)


def test_tie_rule_scales_with_the_terms_of_the_value():
    """|v| <= TIE_RTOL * sum_j |a_j| (|x_prev_j| + |step_j|), and exact zeros of exact terms are no tie."""
    prob = _Linear([[1.0, 1.0], [1.0, 0.0]])
    x_prev, x = np.array([0.0, 0.0]), np.array([1e3, 2e3])     # S = 3e3 for row 0, 1e3 for row 1
    assert ties_at(prob, x, x_prev, np.array([3.1e-11, 1.1e-11]), None, 3, "ours") == []
    found = ties_at(prob, x, x_prev, np.array([2.9e-11, -0.9e-11]), None, 3, "ours")
    assert [(t.kind, t.index) for t in found] == [("ci", 0), ("ci", 1)]
    assert found[0].ulps == pytest.approx(2.9e-11 / (EPS * 3e3))
    assert is_tie(0.0, 1.0) and is_tie(-TIE_RTOL, 1.0) and not is_tie(2 * TIE_RTOL, 1.0)
    assert not is_tie(0.0, 0.0), "a value computed from exact zeros only is exact, not a tie"
    # x unchanged since x0 with x_0 = 0: the constraint -x_0 is exactly 0 in every implementation
    exact = _Linear([[-1.0, 0.0]])
    assert ties_at(exact, np.array([0.0, 5.0]), None, np.array([0.0]), None, 0, "GRANSO") == []


def test_tie_rule_uses_the_step_that_produced_the_iterate():
    """A bound reached exactly by a step of size 1 is a tie even where x_j itself is 0."""
    prob = _Linear([[-1.0]])                      # ci = -x
    assert ties_at(prob, np.array([0.0]), np.array([1.0]), np.array([0.0]), None, 1, "GRANSO")
    assert not ties_at(prob, np.array([-1e-12]), np.array([1.0]), np.array([1e-12]), None, 1, "GRANSO")


@needs_reference
def test_a_departure_inside_the_tie_free_prefix_fails():
    """The prefix check can fail: a run whose x moves by 1e-6 at iteration 3 (no tie there)."""
    import dataclasses

    from ncvx_ref.conformance import run_case
    from ncvx_ref.conformance.compare import compare_case

    case = _case(REF_DIR / "cases" / "rosenbrock_n2_default.json")
    result = run_case(case)
    assert compare_case(case, result).prefix_ok
    hist = list(result.history)
    hist[3] = dataclasses.replace(hist[3], x=np.asarray(hist[3].x) + 1e-6)
    row = compare_case(case, dataclasses.replace(result, history=hist))
    assert row.tie_at is None and row.departure.iteration == 3
    assert not row.prefix_ok and "prefix" in row.unexplained and row.status == "FAIL"


def _row(departure, tie_at=None, failed=("code",), case_id="not_a_case", prefix_end=10):
    """A comparison row with the given departure and failed checks (no EXPLAINED entry)."""
    from ncvx_ref.conformance.compare import CHECKS, CaseComparison, Departure

    row = CaseComparison(id=case_id, family="rosenbrock", smooth=True, code_ref=0, code=6,
                         iters_ref=10, iters=12, fn_evals_ref=11, fn_evals=13, f_ref=1.0)
    row.departure = Departure(*departure) if departure else Departure(None)
    row.tie_at, row.prefix_end = tie_at, prefix_end
    row.prefix_ok = row.departure.iteration is None or row.departure.iteration > prefix_end
    row.checks = {c: c not in failed for c in CHECKS + ("prefix",)}
    row.checks["prefix"] = row.prefix_ok and "prefix" not in failed
    return row


def test_outcomes_after_a_rounding_departure_are_platform_dependent_not_failures():
    """Failed outcome checks after the runs part by rounding (at a tie, or gradually) get status
    'rounding'; a departure that jumps (a different decision) or one inside the tie-free prefix
    stays a failure."""
    at_tie = _row((15, "x", 3e-3), tie_at=12)
    assert at_tie.parts_by_rounding and at_tie.by_rounding == ["code"]
    assert at_tie.unexplained == [] and at_tie.status == "rounding"
    drift = _row((40, "x", 2e-8))  # no tie; first difference just above the 1e-8 tolerance
    assert drift.status == "rounding"
    jump = _row((40, "x", 3e-3))  # no tie and a large first difference: a different decision
    assert not jump.parts_by_rounding and jump.status == "FAIL" and jump.unexplained == ["code"]
    ended = _row((40, "length", 0.0))  # one run stopped while they agreed: a termination decision
    assert ended.status == "FAIL"
    inside = _row((5, "x", 2e-8), failed=("code", "prefix"))  # inside the prefix: never excused
    assert inside.status == "FAIL" and set(inside.unexplained) == {"code", "prefix"}
    same = _row(None, failed=())
    assert same.status == "ok"
