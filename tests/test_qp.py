"""The QP layer: every adapter answers the method's QPs to KKT accuracy, exactly and reproducibly.

QPs are drawn like the method builds them (ALGORITHM.md §7, §10.3): ``Q = CᵀMC`` from ``n``
random "gradients" ``C`` (``k`` columns), so ``Q`` is PSD and singular whenever ``k > n`` or
columns nearly coincide; box bounds ``[-1, 1]`` / ``[0, 1]`` (steering) or ``[0, μ]`` plus
``Σ y = μ`` on the objective block (stationarity).
"""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ncvx_ref.qp import small
from ncvx_ref.qp.interface import BoxQP, QPSolverError
from ncvx_ref.qp.polish import _Scales, active_set_solve, default_tolerance, kkt_residual, polish
from ncvx_ref.qp.solvers import SOLVER_CLASSES, DAQPSolver, PIQPSolver, check_qp, closed_form
from ncvx_ref.qp.default import (RecordingQPSolver, available_qp_solvers, default_qp_solver,
                                 get_qp_solver, load_qp_corpus)

SOLVER_NAMES = sorted(SOLVER_CLASSES)
#: Adapters whose library is importable here (proxsuite, clarabel and osqp are optional: the
#: `test` extra installs them, a bare environment may lack them).
INSTALLED = [name for name in SOLVER_NAMES if importlib.util.find_spec(SOLVER_CLASSES[name].library)]


def solver_params(names):
    """``names`` as pytest params, each skipped with a message when its library is missing."""
    return [pytest.param(name, marks=pytest.mark.skipif(
        name.removesuffix("-raw") not in INSTALLED,
        reason=f"QP library `{name.removesuffix('-raw')}` is not installed (pip install -e .[test])"))
        for name in names]

HYP = settings(derandomize=True, database=None, deadline=None, max_examples=40,
               suppress_health_check=[HealthCheck.too_slow])


def _objective(qp: BoxQP, y: np.ndarray) -> float:
    return float(0.5 * y @ qp.Q @ y + qp.q @ y)


@st.composite
def steering_qps(draw, strictly_convex: bool = False):
    """A steering-like QP: ``m_E`` variables in [-1, 1], the rest in [0, 1]."""
    k = draw(st.integers(1, 12))
    n = draw(st.integers(1, 15))
    m_e = draw(st.integers(0, k))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((n, k))
    if draw(st.booleans()) and k > 1:  # nearly identical columns: the late-run degeneracy
        C[:, 1:] = C[:, :1] + 1e-7 * rng.standard_normal((n, k - 1))
    Q = C.T @ C
    if strictly_convex:
        Q = Q + 0.1 * np.eye(k)
    Q = (Q + Q.T) / 2
    q = rng.standard_normal(k) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    lb = np.concatenate([-np.ones(m_e), np.zeros(k - m_e)])
    return BoxQP(Q, q, lb, np.ones(k), kind="steering")


@st.composite
def stationarity_qps(draw):
    """A stationarity-like QP: blocks E, F, I; ``Σ y_F = μ`` with ``y_F`` in [0, μ]."""
    samples = draw(st.integers(1, 6))
    m_e = draw(st.integers(0, 2))
    m_i = draw(st.integers(0, 3))
    n = draw(st.integers(1, 12))
    mu = draw(st.sampled_from([1.0, 0.01, 10.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = draw(st.sampled_from([1e-8, 1e-3, 1.0]))  # how different the cached gradients are
    base = rng.standard_normal((n, 1 + m_e + m_i))
    cols_e = [base[:, 1 + j:2 + j] + spread * rng.standard_normal((n, samples)) for j in range(m_e)]
    cols_f = base[:, :1] + spread * rng.standard_normal((n, samples))
    cols_i = [base[:, 1 + m_e + j:2 + m_e + j] + spread * rng.standard_normal((n, samples))
              for j in range(m_i)]
    A = np.hstack(cols_e + [cols_f] + cols_i)
    Q = A.T @ A
    Q = (Q + Q.T) / 2
    k = A.shape[1]
    ce = np.repeat(rng.standard_normal(m_e), samples)
    ci = np.repeat(rng.standard_normal(m_i), samples)
    f = rng.standard_normal()
    q = -np.concatenate([ce, np.full(samples, f), ci])
    ke, kf = m_e * samples, samples
    lb = np.concatenate([-np.ones(ke), np.zeros(kf), np.zeros(k - ke - kf)])
    ub = np.concatenate([np.ones(ke), np.full(kf, mu), np.ones(k - ke - kf)])
    a = np.concatenate([np.zeros(ke), np.ones(kf), np.zeros(k - ke - kf)])
    return BoxQP(Q, q, lb, ub, a, mu, kind="stationarity")


def _check_kkt(qp: BoxQP, y: np.ndarray, name: str) -> None:
    assert y.shape == (qp.size,) and y.dtype == np.float64, name
    res = kkt_residual(qp, y)
    # Polished answers are certified to default_tolerance(k) (1e-12 for the sizes drawn here).
    assert res.total <= default_tolerance(qp.size), f"{name}: KKT residual {res}"
    assert np.all(y >= qp.lb) and np.all(y <= qp.ub), f"{name}: answer outside the bounds"


# -- KKT accuracy of every adapter ------------------------------------------------------------
@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(qp=steering_qps(strictly_convex=True))
def test_strictly_convex_box_qp_kkt(name, qp):
    _check_kkt(qp, get_qp_solver(name).solve(qp), name)


@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(qp=steering_qps())
def test_psd_singular_box_qp_kkt(name, qp):
    _check_kkt(qp, get_qp_solver(name).solve(qp), name)


@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(qp=stationarity_qps())
def test_stationarity_qp_with_equality_kkt(name, qp):
    y = get_qp_solver(name).solve(qp)
    _check_kkt(qp, y, name)
    assert abs(float(qp.eq_coeffs @ y) - qp.eq_rhs) <= 1e-12 * max(1.0, qp.eq_rhs)


@HYP
@given(qp=st.one_of(steering_qps(), stationarity_qps()))
def test_solvers_agree_on_the_optimal_value(qp):
    """All polished adapters reach the same optimal value (the QP's optimum is unique)."""
    values = [_objective(qp, get_qp_solver(name).solve(qp)) for name in INSTALLED]
    scale = max(1.0, float(np.max(np.abs(qp.q))), float(np.max(np.abs(qp.Q))))
    assert max(values) - min(values) <= 1e-10 * scale, dict(zip(INSTALLED, values))


# -- exact zero ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(qp=steering_qps(), data=st.data())
def test_zero_is_returned_exactly_when_it_is_the_solution(name, qp, data):
    """q_I >= 0 and q_E = 0 make y = 0 optimal: the answer must be exact zeros (§13)."""
    q = np.abs(qp.q) * data.draw(st.sampled_from([0.0, 1.0]))
    q[qp.lb < 0] = 0.0
    zero_qp = BoxQP(qp.Q, q, qp.lb, qp.ub, kind="steering")
    y = get_qp_solver(name).solve(zero_qp)
    assert np.array_equal(y, np.zeros(qp.size)), f"{name} returned {y}"


@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(qp=steering_qps())
def test_nonzero_answer_when_zero_is_not_optimal(name, qp):
    if kkt_residual(qp, np.zeros(qp.size)).total <= 10 * default_tolerance(qp.size):
        return  # y = 0 is optimal or within rounding of it: covered by the test above
    assert np.any(get_qp_solver(name).solve(qp) != 0.0)


def test_zero_answer_with_active_constraints_polished_to_exact_zero():
    """A library's ~1e-20 values at the bound 0 become exact zeros after polishing."""
    rng = np.random.default_rng(3)
    C = rng.standard_normal((3, 8))
    qp = BoxQP(C.T @ C, np.abs(rng.standard_normal(8)) + 0.1, np.zeros(8), np.ones(8))
    out = polish(qp, np.full(8, 1e-9))
    assert out.certified and np.array_equal(out.y, np.zeros(8))


# -- closed forms ------------------------------------------------------------------------------
@pytest.mark.parametrize("Qv, qv, lb, ub, expected", [
    (2.0, -1.0, 0.0, 1.0, 0.5),    # interior minimizer -q/Q
    (2.0, -5.0, 0.0, 1.0, 1.0),    # clipped at ub
    (2.0, 3.0, -1.0, 1.0, -1.0),   # clipped at lb
    (0.0, -1.0, 0.0, 1.0, 1.0),    # linear: goes to the bound q points away from
    (0.0, 1.0, -1.0, 1.0, -1.0),
    (0.0, 0.0, -1.0, 1.0, 0.0),    # flat: the point nearest 0
    (4.0, 0.0, 0.0, 1.0, 0.0),     # y = 0 exact
])
@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
def test_k1_closed_form(name, Qv, qv, lb, ub, expected):
    qp = BoxQP(np.array([[Qv]]), np.array([qv]), np.array([lb]), np.array([ub]))
    assert closed_form(qp) is not None
    y = get_qp_solver(name).solve(qp)
    assert y.tolist() == [expected]


def test_k1_with_equality_closed_form():
    qp = BoxQP(np.array([[3.0]]), np.array([7.0]), np.array([0.0]), np.array([0.5]),
               np.array([1.0]), 0.5, kind="stationarity")
    assert DAQPSolver().solve(qp).tolist() == [0.5]


def test_diagonal_q_is_separable_closed_form():
    qp = BoxQP(np.diag([1.0, 2.0, 0.0]), np.array([-0.5, -4.0, 1.0]), np.zeros(3), np.ones(3))
    y = closed_form(qp)
    assert y is not None and y.tolist() == [0.5, 1.0, 0.0]


# -- failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
def test_infeasible_equality_raises(name):
    k = 4
    qp = BoxQP(np.eye(k), np.zeros(k), np.zeros(k), np.ones(k), np.ones(k), 5.0)  # Σy <= 4 < 5
    with pytest.raises(QPSolverError, match="equality is infeasible"):
        get_qp_solver(name).solve(qp)


@pytest.mark.parametrize("qp, match", [
    (BoxQP(np.eye(2), np.zeros(2), np.ones(2), np.zeros(2)), "bounds are infeasible"),
    (BoxQP(np.eye(2), np.array([np.nan, 0.0]), np.zeros(2), np.ones(2)), "`q` contains inf or NaN"),
    (BoxQP(np.eye(3), np.zeros(2), np.zeros(2), np.ones(2)), "`Q` must have shape"),
    (BoxQP(np.eye(2), np.zeros(2), np.zeros(3), np.ones(2)), "`lb` must have shape"),
    (BoxQP(np.zeros((0, 0)), np.zeros(0), np.zeros(0), np.zeros(0)), "non-empty"),
])
def test_malformed_qp_raises(qp, match):
    with pytest.raises(QPSolverError, match=match):
        check_qp(qp)
    with pytest.raises(QPSolverError, match=match):
        default_qp_solver().solve(qp)


def test_library_failure_without_certificate_raises():
    class Broken(DAQPSolver):
        def _solve_raw(self, qp):
            return np.full(qp.size, 0.3), False, "exitflag -4"  # wrong answer, failed status

    rng = np.random.default_rng(0)
    C = rng.standard_normal((4, 6))
    qp = BoxQP(C.T @ C, rng.standard_normal(6), np.zeros(6), np.ones(6))
    with pytest.raises(QPSolverError, match="daqp failed .*exitflag -4"):
        Broken(polish=False).solve(qp)
    # With polishing the wrong answer may be repaired; if so it must be certified.
    try:
        y = Broken().solve(qp)
    except QPSolverError as exc:
        assert "could not be certified" in str(exc)
    else:
        _check_kkt(qp, y, "broken+polish")


def test_library_exception_becomes_qp_solver_error():
    class Raising(DAQPSolver):
        def _solve_raw(self, qp):
            raise MemoryError("boom")

    qp = BoxQP(np.ones((2, 2)), np.array([-1.0, -2.0]), np.zeros(2), np.ones(2))
    with pytest.raises(QPSolverError, match="daqp raised MemoryError: boom"):
        Raising().solve(qp)


# -- polishing ---------------------------------------------------------------------------------
@HYP
@given(qp=st.one_of(steering_qps(), stationarity_qps()), data=st.data())
def test_polish_repairs_a_perturbed_answer(qp, data):
    """An answer off by 1e-7 is polished back to a certified one (objective not worse)."""
    y = get_qp_solver("daqp").solve(qp)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    y0 = np.clip(y + 1e-7 * rng.standard_normal(qp.size), qp.lb, qp.ub)
    out = polish(qp, y0)
    assert out.certified, out.residual
    assert out.residual.total <= default_tolerance(qp.size)
    assert _objective(qp, out.y) <= _objective(qp, y) + 1e-12 * max(1.0, abs(_objective(qp, y)))


def test_polish_falls_back_to_the_unpolished_answer():
    rng = np.random.default_rng(1)
    C = rng.standard_normal((3, 5))
    qp = BoxQP(C.T @ C, rng.standard_normal(5) * 10, np.zeros(5), np.ones(5))
    y0 = np.full(5, 0.5)
    out = polish(qp, y0, max_rounds=0, max_active_set_iter=0)
    assert not out.certified
    assert out.y is y0 and out.residual.total > 1e-3
    # With the exact active-set fallback the same start is solved.
    out = polish(qp, y0, max_rounds=0)
    assert out.certified and out.active_set_iterations > 0
    _check_kkt(qp, out.y, "polish(max_rounds=0)")


def test_kkt_residual_flags_wrong_answers():
    qp = BoxQP(np.eye(2), np.array([-0.5, 2.0]), np.zeros(2), np.ones(2))
    assert kkt_residual(qp, np.array([0.5, 0.0])).total == 0.0
    assert kkt_residual(qp, np.array([0.4, 0.0])).stationarity > 0.01  # gradient not zero
    assert kkt_residual(qp, np.array([0.5, -0.1])).primal > 0.01      # outside the box
    assert kkt_residual(qp, np.array([np.nan, 0.0])).total == np.inf


# -- the exact active-set fallback -------------------------------------------------------------
@st.composite
def degenerate_qps(draw):
    """``Q = AᵀA`` with ``k >> rank``: columns drawn from a few base gradients, duplicated exactly
    or up to a tiny spread; steering shape, or stationarity shape with ``a·y = μ`` on a subset."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 5))
    base = draw(st.integers(1, 4))
    k = draw(st.integers(base, 30))
    spread = draw(st.sampled_from([0.0, 1e-12, 1e-8, 1e-5]))
    B = rng.standard_normal((n, base))
    cols = rng.integers(0, base, size=k)
    A = B[:, cols] + spread * rng.standard_normal((n, k))
    Q = A.T @ A
    Q = (Q + Q.T) / 2
    # Equal linear terms on duplicated columns: ties everywhere (many optimal active sets).
    q = rng.standard_normal(base)[cols] * draw(st.sampled_from([1e-3, 1.0, 1e2]))
    if draw(st.booleans()):
        lb = np.where(rng.random(k) < 0.3, -1.0, 0.0)
        return BoxQP(Q, q, lb, np.ones(k), kind="steering")
    mu = draw(st.sampled_from([1.0, 0.01, 10.0]))
    a = (rng.random(k) < 0.5).astype(float)
    a[draw(st.integers(0, k - 1))] = 1.0
    lb = np.where(a > 0, 0.0, np.where(rng.random(k) < 0.3, -1.0, 0.0))
    ub = np.where(a > 0, mu, 1.0)
    return BoxQP(Q, q, lb, ub, a, mu, kind="stationarity")


def _any_start(qp: BoxQP, data) -> np.ndarray:
    """A start anywhere: a random point of the box (the equality need not hold), or a vertex."""
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    kind = data.draw(st.sampled_from(["uniform", "lb", "ub", "outside"]))
    if kind == "uniform":
        return rng.uniform(qp.lb, qp.ub)
    if kind == "outside":
        return rng.uniform(qp.lb - 1.0, qp.ub + 1.0)
    return (qp.lb if kind == "lb" else qp.ub).copy()


@HYP
@given(qp=st.one_of(degenerate_qps(), stationarity_qps(), steering_qps()), data=st.data())
def test_active_set_solve_from_any_start_is_exact_and_optimal(qp, data):
    """From any start the active-set method certifies, and no library finds a lower objective."""
    out = active_set_solve(qp, _any_start(qp, data))
    assert out.certified and out.status == "optimal", out
    _check_kkt(qp, out.y, "active_set_solve")
    if qp.eq_coeffs is not None:
        assert abs(float(qp.eq_coeffs @ out.y) - qp.eq_rhs) <= 1e-12 * max(1.0, qp.eq_rhs)
    f = _objective(qp, out.y)
    scale = max(1.0, float(np.max(np.abs(qp.q))), float(np.max(np.abs(qp.Q))))
    for name in ("daqp", "clarabel"):
        try:
            y = get_qp_solver(name).solve(qp)
        except QPSolverError:
            continue
        assert f <= _objective(qp, y) + 1e-11 * scale, (name, f, _objective(qp, y))


@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES + [n + "-raw" for n in ("piqp", "clarabel")]))
@HYP
@given(qp=degenerate_qps())
def test_polished_adapters_are_exact_on_degenerate_qps(name, qp):
    """Duplicated and nearly duplicated gradients (k >> rank): every polished adapter certifies.

    The raw interior-point answers are polished here by hand, from their inexact answer."""
    if name.endswith("-raw"):
        try:
            y0 = get_qp_solver(name).solve(qp)
        except QPSolverError:
            return  # a raw library failure; the polished adapter is tested above
        out = polish(qp, y0)
        assert out.certified, out.residual
        y = out.y
    else:
        y = get_qp_solver(name).solve(qp)
    _check_kkt(qp, y, name)


@HYP
@given(qp=degenerate_qps(), data=st.data())
def test_polish_certifies_from_a_far_start(qp, data):
    """``polish`` of a bad answer (repair rounds fail) ends certified through the fallback."""
    out = polish(qp, _any_start(qp, data))
    assert out.certified, out.residual
    _check_kkt(qp, out.y, "polish")


def test_certified_first_polish_skips_the_fallback():
    """When the repair rounds certify, the active-set method is not run (it costs time)."""
    rng = np.random.default_rng(4)
    C = rng.standard_normal((6, 8))
    qp = BoxQP(C.T @ C + 0.1 * np.eye(8), rng.standard_normal(8), np.zeros(8), np.ones(8))
    y = get_qp_solver("daqp").solve(qp)
    out = polish(qp, np.clip(y + 1e-9, qp.lb, qp.ub))
    assert out.certified and out.active_set_iterations == 0 and out.rounds >= 1


def test_linear_qp_follows_flat_directions_to_the_bounds():
    """``Q = 0``: the QP is an LP; with ``Σ y = 1.5`` over [0, 1] the answer fills the most
    negative costs first (a vertex), reached only along zero-curvature directions."""
    q = np.array([0.3, -2.0, -1.0, 0.5, -0.2])
    qp = BoxQP(np.zeros((5, 5)), q, np.zeros(5), np.ones(5), np.ones(5), 1.5)
    out = active_set_solve(qp, np.full(5, 0.3))
    assert out.certified
    assert np.allclose(out.y, [0.0, 1.0, 0.5, 0.0, 0.0], rtol=0.0, atol=1e-15)


def test_rank_one_q_with_ties_terminates():
    """All gradients equal (``Q = c·11ᵀ``, equal costs): a fully degenerate QP, every vertex a
    tie.  The method must not cycle: it ends certified well within its iteration cap."""
    k = 25
    qp = BoxQP(np.full((k, k), 2.0), np.full(k, -1.0), np.zeros(k), np.full(k, 1.0),
               np.ones(k), 1.0, kind="stationarity")
    out = active_set_solve(qp, np.linspace(0.0, 1.0, k))
    assert out.certified and out.iterations < 2 * k
    assert _objective(qp, out.y) == pytest.approx(0.5 * 2.0 * 1.0 - 1.0, abs=1e-14)


def test_single_support_variable_is_held_by_the_equality():
    """The equality fixes its only variable at a bound: that variable never blocks a step."""
    rng = np.random.default_rng(5)
    C = rng.standard_normal((3, 6))
    a = np.zeros(6)
    a[2] = 1.0
    qp = BoxQP(C.T @ C, rng.standard_normal(6) * 5, np.array([-1, -1, 0, 0, 0, 0.0]),
               np.ones(6), a, 1.0, kind="stationarity")
    out = active_set_solve(qp, np.full(6, 0.5))
    assert out.certified and out.y[2] == 1.0


def test_active_set_iteration_cap_is_respected():
    rng = np.random.default_rng(6)
    C = rng.standard_normal((4, 30))
    qp = BoxQP(C.T @ C, rng.standard_normal(30) * 10, -np.ones(30), np.ones(30))
    out = active_set_solve(qp, np.zeros(30), max_iter=2)
    assert out.iterations == 2 and out.status == "max_iter" and not out.certified
    assert np.all(out.y >= qp.lb) and np.all(out.y <= qp.ub)  # feasible whatever the status


# -- the QP corpus of real runs (benchmarks/collect_qps.py) -------------------------------------
def _collect_qps():
    return pytest.importorskip("benchmarks.collect_qps", reason="benchmarks/ is a folder of the "
                               "repository, importable when pytest runs from its root")


def test_thinning_recorder_keeps_an_even_sample_of_a_long_run():
    """Of 1000 QPs at most ``2·cap`` records are held; the selection spans the whole run."""
    ThinningRecorder = _collect_qps().ThinningRecorder

    rec = ThinningRecorder("daqp", cap=10)
    for i in range(1000):
        y = rec.solve(BoxQP(np.eye(2), np.array([-0.5, 0.001 * i]), np.zeros(2), np.ones(2)))
        assert y.tolist() == [0.5, 0.0]
        assert len(rec.kept) <= 20
    calls = [c for c, _, _ in rec.selection()]
    assert len(calls) == 10 and calls == sorted(calls) and calls[0] == 0 and calls[-1] >= 900
    assert rec.calls == 1000 and rec.rec.records == []  # the inner recorder holds nothing
    # A byte budget smaller than the kept QPs thins the selection further (evenly again).
    rec.budget = 5 * 8.0 * 4
    calls = [c for c, _, _ in rec.selection()]
    assert len(calls) == 5 and calls[0] == 0 and calls[-1] >= 900


def test_collect_qps_records_a_reference_run(tmp_path):
    """One short reference case through ``ncvx_ref.solve``: its QPs are saved and load back."""
    main = _collect_qps().main
    from ncvx_ref.conformance.cases import case_paths

    if not any(p.stem == "rosenbrock_n2_maxit15" for p in case_paths()):
        pytest.skip("the GRANSO reference set is not available")
    out = tmp_path / "corpus"
    main(["--out", str(out), "--max-per-case", "5", "-k", "rosenbrock_n2_maxit15"])
    records = load_qp_corpus(out.with_suffix(".npz"))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert len(records) == 5 == len(meta["qps"])
    assert meta["cases"][0]["qp_calls"] >= 5 and meta["cases"][0]["termination_code"] == 4
    assert all(r.y is not None and r.qp.kind == "stationarity" for r in records)
    assert all(q["case"] == "rosenbrock_n2_maxit15" for q in meta["qps"])


# -- reproducibility ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES + [n + "-raw" for n in SOLVER_NAMES]))
def test_repeated_calls_are_bit_identical(name):
    rng = np.random.default_rng(7)
    qps = []
    for k, n in [(15, 6), (40, 60), (30, 5)]:
        C = rng.standard_normal((n, k))
        qps.append(BoxQP(C.T @ C, rng.standard_normal(k), np.zeros(k), np.ones(k)))
    G = rng.standard_normal((8, 1)) + 1e-4 * rng.standard_normal((8, 20))
    qps.append(BoxQP(G.T @ G, np.zeros(20), np.zeros(20), np.ones(20), np.ones(20), 1.0))
    solver = get_qp_solver(name)
    first = [solver.solve(qp) for qp in qps]
    again = [solver.solve(qp) for qp in qps]  # same instance, after other solves
    fresh = [get_qp_solver(name).solve(qp) for qp in qps]
    if name.startswith("proxsuite"):
        # ProxSuite itself is not bit-reproducible across calls in one process: measured on an
        # Intel Xeon (AVX-512 build, 1e-18 absolute) and on this project's AMD EPYC (AVX2 build:
        # 7.6e-17 on the 40-variable QP, in about one first call of six).  Polishing usually
        # maps both answers to the same exact one, but not always (4 of 10 runs of this test
        # failed for the polished adapter, before and after the fifth session's changes).
        # ncvx_ref never uses ProxSuite unless asked for; the default daqp+piqp is held to
        # bit-identity below, like every other adapter.
        if not all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(first, again, fresh)):
            pytest.xfail("ProxSuite is not bit-reproducible across calls (docs/qp_solvers.md)")
    for a, b, c in zip(first, again, fresh):
        assert np.array_equal(a, b) and np.array_equal(a, c)


# -- lookup and recording ----------------------------------------------------------------------
def test_get_qp_solver_resolves_names_and_objects():
    assert get_qp_solver(None).name == default_qp_solver().name
    assert get_qp_solver("PIQP").name == "piqp"
    assert get_qp_solver("osqp-raw").name == "osqp-raw"
    assert set(available_qp_solvers()) == {"daqp", "proxsuite", "clarabel", "piqp", "osqp"}

    class Mine:
        name = "mine"

        def solve(self, qp):
            return np.zeros(qp.size)

    mine = Mine()
    assert get_qp_solver(mine) is mine
    with pytest.raises(ValueError, match="Unknown `qp_solver` name 'quadprog'.*'daqp'.*'osqp'"):
        get_qp_solver("quadprog")
    with pytest.raises(TypeError, match="`solve\\(qp\\)` method"):
        get_qp_solver(42)


def test_recording_solver_round_trip(tmp_path):
    rec = RecordingQPSolver("daqp")
    qp1 = BoxQP(np.eye(3), np.array([-0.5, 1.0, -2.0]), np.zeros(3), np.ones(3), kind="steering")
    qp2 = BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2), np.ones(2), 1.0,
                kind="stationarity")
    bad = BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2), np.ones(2), 3.0)
    y1 = rec.solve(qp1)
    y2 = rec.solve(qp2)
    with pytest.raises(QPSolverError):
        rec.solve(bad)
    assert y1.tolist() == [0.5, 0.0, 1.0] and y2.tolist() == [0.5, 0.5]
    rec.save(tmp_path / "corpus.npz")
    loaded = load_qp_corpus(tmp_path / "corpus.npz")
    assert len(loaded) == 3
    assert loaded[0].qp.kind == "steering" and loaded[0].qp.eq_coeffs is None
    assert np.array_equal(loaded[0].y, y1) and np.array_equal(loaded[1].qp.eq_coeffs, np.ones(2))
    assert loaded[1].qp.eq_rhs == 1.0 and loaded[1].qp.kind == "stationarity"
    assert loaded[2].y is None and "infeasible" in loaded[2].error


# -- small QPs on Python floats (ncvx_ref.qp.small): the NumPy path's answers ------------------
def _small(qps):
    return qps.filter(lambda qp: qp.size <= small.SMALL_MAX_K)


@HYP
@given(qp=_small(st.one_of(steering_qps(), stationarity_qps())), data=st.data())
def test_small_polish_gives_polish_answer_bit_for_bit(qp, data):
    """Wherever the float path answers, its answer, residual and round count are polish's."""
    y_lib, _ok, _status = DAQPSolver()._solve_raw(qp)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    noise = data.draw(st.sampled_from([0.0, 1e-11, 1e-7, 1e-3]))
    y0 = np.asarray(y_lib, dtype=np.float64) + noise * rng.standard_normal(qp.size)
    scales = _Scales.of(qp)
    fast = small.polish_first_round(small.SmallQP.of(qp, scales), y0, None)
    ref = polish(qp, y0, scales=scales)
    if fast is not None:
        assert fast.certified and ref.certified
        assert fast.y.tobytes() == ref.y.tobytes(), (fast.y, ref.y)
        assert fast.residual == ref.residual and fast.rounds == ref.rounds
        assert fast.initial_residual == ref.initial_residual


def test_small_polish_answers_almost_every_solver_answer():
    """The float path is the common path: it answers >= 90% of DAQP's answers on random QPs."""
    rng = np.random.default_rng(7)
    answered = 0
    for _ in range(200):
        k, n = int(rng.integers(1, 9)), int(rng.integers(1, 10))
        C = rng.standard_normal((n, k))
        qp = BoxQP(C.T @ C, rng.standard_normal(k), np.zeros(k), np.ones(k), kind="steering")
        y0 = np.asarray(DAQPSolver()._solve_raw(qp)[0], dtype=np.float64)
        floats = small.SmallQP.of(qp, _Scales.of(qp))
        answered += small.polish_first_round(floats, y0, None) is not None
    assert answered >= 180, answered


@HYP
@given(qp=_small(st.one_of(steering_qps(), stationarity_qps())), data=st.data())
def test_small_scales_and_closed_forms_match_numpy(qp, data):
    if data.draw(st.booleans()):  # a separable QP: the diagonal closed form applies
        qp = BoxQP(np.diag(np.diag(qp.Q) * data.draw(st.sampled_from([0.0, 1.0]))), qp.q, qp.lb,
                   qp.ub, kind=qp.kind)
    if data.draw(st.booleans()):  # y = 0 may be exact
        qp = BoxQP(qp.Q, np.abs(qp.q) * data.draw(st.sampled_from([0.0, 1.0])), qp.lb, qp.ub,
                   qp.eq_coeffs, 0.0 if qp.eq_coeffs is not None else qp.eq_rhs, kind=qp.kind)
    check_qp(qp)
    scales = _Scales.of(qp)
    floats = small.checked(qp)
    assert floats.sc == scales
    assert [floats.Q, floats.q, floats.lb, floats.ub] == [qp.Q.tolist(), qp.q.tolist(),
                                                          qp.lb.tolist(), qp.ub.tolist()]
    expected = closed_form(qp, scales=scales)
    got = small.closed_form(floats, None)
    assert (got is None) == (expected is None)
    if got is not None:
        assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("qp, match", [
    (BoxQP(np.array([[1.0, np.inf], [np.inf, 1.0]]), np.zeros(2), np.zeros(2), np.ones(2)),
     "`Q` contains inf or NaN"),
    (BoxQP(np.eye(2), np.zeros(2), np.array([0.0, -np.inf]), np.ones(2)), "`lb` contains inf"),
    (BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2), np.array([1.0, np.nan]), 1.0),
     "equality must have finite coefficients"),
    (BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2), np.ones(3), 1.0),
     "equality must have finite coefficients of shape"),
    (BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2), np.ones(2), -1e-9),
     "equality is infeasible"),
])
def test_small_checks_raise_check_qp_messages(qp, match):
    with pytest.raises(QPSolverError, match=match):
        check_qp(qp)
    with pytest.raises(QPSolverError, match=match):
        small.checked(qp)


def test_small_equality_check_agrees_with_check_qp_at_its_boundary():
    """The float path's feasibility test of the equality decides as ``check_qp`` does, also
    for a right-hand side within a few ulps of ``lo - slack`` or ``hi + slack``, where sums
    in different orders (terms of mixed magnitude) give different ``lo`` and ``hi``."""
    rng = np.random.default_rng(5)
    compared = disagreements_possible = 0
    for _ in range(400):
        k = int(rng.integers(2, 9))
        a = rng.choice([-1.0, 1.0]) * 10.0 ** rng.integers(-8, 9, size=k) * rng.uniform(0.5, 2, k)
        lb = -rng.uniform(0, 1, k)
        ub = rng.uniform(0, 1, k)
        a_lb, a_ub = a * lb, a * ub
        lo = float(np.add.reduce(np.minimum(a_lb, a_ub)))
        hi = float(np.add.reduce(np.maximum(a_lb, a_ub)))
        lows = np.minimum(a_lb, a_ub)
        disagreements_possible += sum(sorted(lows.tolist())) != lo  # another order, another sum
        slack = default_tolerance(k) * max(1.0, abs(lo), abs(hi))
        edge = (lo - slack) if rng.random() < 0.5 else (hi + slack)
        for steps in range(-3, 4):
            b = edge
            for _ in range(abs(steps)):
                b = np.nextafter(b, np.inf if steps > 0 else -np.inf)
            qp = BoxQP(np.eye(k), np.zeros(k), lb, ub, a, float(b))
            try:
                check_qp(qp)
                expected = None
            except QPSolverError as exc:
                expected = str(exc)
            try:
                small.checked(qp)
                got = None
            except QPSolverError as exc:
                got = str(exc)
            assert got == expected, (k, steps)
            compared += 1
    assert compared == 2800 and disagreements_possible > 0


def test_solver_answers_are_the_same_without_the_small_path(monkeypatch):
    """Every QP of a short constrained run: the same answer with the float path switched off."""
    from ncvx_ref import solve

    J = np.array([[np.sqrt(2.0), 0.0], [0.0, 2.0]])

    def nonsmooth_rosenbrock(x):
        r = x[0] * x[0] - x[1]
        s = 1.0 if r >= 0 else -1.0
        f = 8.0 * abs(r) + (1.0 - x[0]) ** 2
        g = np.array([16.0 * s * x[0] - 2.0 * (1.0 - x[0]), -8.0 * s])
        return f, g, np.array([np.sqrt(2.0) * x[0] - 1.0, 2.0 * x[1] - 1.0]), J, None, None

    rec = RecordingQPSolver()
    solve(nonsmooth_rosenbrock, np.array([5.5, 5.5]), qp_solver=rec, mu0=100.0, print_level=0,
          maxit=60, qp_warm_start=True)
    assert len(rec.records) > 50 and all(r.qp.size <= small.SMALL_MAX_K for r in rec.records)
    monkeypatch.setattr(small, "is_small", lambda qp: False)
    plain = default_qp_solver()
    guessed = 0
    for r in rec.records:
        # The float path ignores warm-start guesses; the NumPy path, given none, must agree.
        guessed += r.qp.guess is not None
        qp = BoxQP(r.qp.Q, r.qp.q, r.qp.lb, r.qp.ub, r.qp.eq_coeffs, r.qp.eq_rhs, r.qp.kind)
        assert plain.solve(qp).tobytes() == r.y.tobytes()
    assert guessed > 0


def test_small_closed_forms_keep_numpys_signed_zeros():
    """Ties with a bound of the other zero sign: the float path returns NumPy's zero."""
    lb = np.array([-0.0, 0.0, -1.0, -1.0, 0.0])
    ub = np.array([1.0, 1.0, -0.0, 0.0, 1.0])
    q = np.array([0.0, 0.0, 0.0, 0.0, -1.0])  # the last variable keeps y = 0 from being exact
    for d in (np.array([0.0, 0.0, 0.0, 0.0, 1.0]), np.ones(5)):
        qp = BoxQP(np.diag(d), q, lb, ub, kind="steering")
        scales = _Scales.of(qp)
        expected = closed_form(qp, scales=scales)
        got = small.closed_form(small.SmallQP.of(qp, scales), None)
        assert expected is not None and got is not None
        assert got.tobytes() == expected.tobytes(), (got, expected)


def test_small_polish_repair_rounds_match_polish():
    """Answers off by 1e-4 need polish's repair rounds: the float path runs them, with polish's
    answers, and covers most of them."""
    rng = np.random.default_rng(11)
    repaired = 0
    for _ in range(150):
        k, n = int(rng.integers(2, 9)), int(rng.integers(1, 10))
        C = rng.standard_normal((n, k))
        qp = BoxQP(C.T @ C, rng.standard_normal(k), -np.ones(k), np.ones(k), kind="steering")
        y0 = np.asarray(DAQPSolver()._solve_raw(qp)[0], dtype=np.float64)
        y0 = y0 + 1e-4 * rng.standard_normal(k)
        scales = _Scales.of(qp)
        fast = small.polish_first_round(small.SmallQP.of(qp, scales), y0, None)
        if fast is None:
            continue
        ref = polish(qp, y0, scales=scales)
        assert fast.y.tobytes() == ref.y.tobytes() and fast.rounds == ref.rounds
        repaired += fast.rounds > 1
    assert repaired >= 30, repaired


@st.composite
def vertex_prone_qps(draw):
    """QPs of at most ``VERTEX_MAX_K`` variables whose answer is often a vertex of the box:
    a large linear term, ``Q`` of any rank, some fixed variables."""
    k = draw(st.integers(1, small.VERTEX_MAX_K))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    C = rng.standard_normal((draw(st.integers(1, 4)), k))
    q = rng.standard_normal(k) * draw(st.sampled_from([0.3, 3.0, 100.0]))
    lb = draw(st.sampled_from([np.zeros(k), -np.ones(k)]))
    ub = np.ones(k)
    if draw(st.booleans()):
        lb = lb.copy()
        lb[0] = ub[0]  # a fixed variable
    return BoxQP(C.T @ C, q, lb, ub, kind="steering")


@HYP
@given(qp=vertex_prone_qps())
def test_vertex_answer_is_polishs_answer_bit_for_bit(qp):
    """Wherever the vertex path answers, the library's polished answer is the same bytes."""
    scales = _Scales.of(qp)
    got = small.vertex(small.SmallQP.of(qp, scales), None)
    if got is None:
        return
    ref = polish(qp, np.asarray(DAQPSolver()._solve_raw(qp)[0], dtype=np.float64), scales=scales)
    assert ref.certified and got.tobytes() == ref.y.tobytes(), (got, ref.y)
    assert kkt_residual(qp, got).total == 0.0


def test_vertex_path_answers_most_vertex_answers():
    """Not vacuous: of 300 random QPs, the vertex path answers every one whose strictly
    complementary answer is a vertex (at least a third of them here), with polish's bytes."""
    rng = np.random.default_rng(3)
    answered = at_vertex = 0
    for _ in range(300):
        k = int(rng.integers(1, small.VERTEX_MAX_K + 1))
        C = rng.standard_normal((int(rng.integers(1, 4)), k))
        qp = BoxQP(C.T @ C, 3.0 * rng.standard_normal(k), np.zeros(k), np.ones(k), kind="steering")
        scales = _Scales.of(qp)
        ref = polish(qp, np.asarray(DAQPSolver()._solve_raw(qp)[0], dtype=np.float64),
                     scales=scales).y
        z = qp.Q @ ref + qp.q
        strict = np.all(((ref == 0.0) & (z > 1e-9)) | ((ref == 1.0) & (z < -1e-9)))
        got = small.vertex(small.SmallQP.of(qp, scales), None)
        at_vertex += bool(strict)
        answered += got is not None
        if strict:
            assert got is not None and got.tobytes() == ref.tobytes()
    assert answered == at_vertex >= 100, (answered, at_vertex)


def test_vertex_path_declines_a_zero_multiplier():
    """At (1, 0) the first multiplier is 0: not strictly complementary, left to the library."""
    qp = BoxQP(np.eye(2), np.array([-1.0, 1.0]), np.zeros(2), np.ones(2), kind="steering")
    assert small.vertex(small.checked(qp), None) is None
    assert DAQPSolver().solve(qp).tolist() == [1.0, 0.0]
    with_eq = BoxQP(np.eye(2), np.array([5.0, 5.0]), np.zeros(2), np.ones(2), np.ones(2), 0.0)
    assert small.vertex(small.checked(with_eq), None) is None  # equalities: not this path


def _nontrivial_qp(k: int = 12, seed: int = 4) -> BoxQP:
    """A dense QP of ``k > 8`` variables with a coupled ``Q``: no closed form answers it."""
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((k + 2, k))
    return BoxQP(C.T @ C, 3.0 * rng.standard_normal(k), np.zeros(k), np.ones(k), kind="steering")


def test_daqp_iteration_limit_as_failure_hands_the_qp_on():
    """With ``limit_is_failure`` DAQP's iteration limit is a QP failure, so the size switch's
    fallback (PIQP) answers, bit for bit as PIQP alone; without it the stopped answer is
    polished as before."""
    from ncvx_ref.qp.size_switch import SizeSwitchedQPSolver

    qp = _nontrivial_qp()
    with pytest.raises(QPSolverError, match="iteration limit"):
        DAQPSolver(iter_limit=1, limit_is_failure=True).solve(qp)
    _check_kkt(qp, DAQPSolver(iter_limit=1).solve(qp), "daqp stopped at its limit, polished")
    switched = SizeSwitchedQPSolver(DAQPSolver(iter_limit=1, limit_is_failure=True), PIQPSolver())
    assert switched.solve(qp).tobytes() == PIQPSolver().solve(qp).tobytes()
    roomy = SizeSwitchedQPSolver(DAQPSolver(iter_limit=1000, limit_is_failure=True), PIQPSolver())
    assert roomy.solve(qp).tobytes() == DAQPSolver().solve(qp).tobytes()  # within the limit


def test_default_solver_gives_daqp_a_limit_then_piqp():
    from ncvx_ref.qp.default import DAQP_ITERATIONS_BEFORE_PIQP

    dense = default_qp_solver().dense
    assert isinstance(dense.small, DAQPSolver) and isinstance(dense.large, PIQPSolver)
    assert dense.small.iter_limit == DAQP_ITERATIONS_BEFORE_PIQP and dense.small.limit_is_failure


@pytest.mark.parametrize("answer, message", [
    (np.array([np.nan, 0.5]), "a non-finite answer"),
    (np.array([np.inf, -np.inf]), "a non-finite answer"),
    (np.array([0.5]), "an answer of size 1"),
    (np.zeros(0), "an empty answer"),
    (None, "an empty answer"),
])
def test_counting_counts_a_bad_small_answer_as_a_failure(answer, message):
    """GRANSO's rule on the small answers' float check (CountingQPSolver)."""
    from ncvx_ref.qp.counting import CountingQPSolver

    class Fixed:
        name = "fixed"

        def solve(self, qp):
            return answer

    counting = CountingQPSolver(Fixed())
    with pytest.raises(QPSolverError, match=message):
        counting.solve(BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.ones(2)))
    assert counting.requests == 1 and counting.failures == 1


def test_counting_accepts_a_finite_answer_whose_sum_overflows():
    from ncvx_ref.qp.counting import CountingQPSolver

    class Fixed:
        name = "fixed"

        def solve(self, qp):
            return np.array([1e308, 1e308])

    counting = CountingQPSolver(Fixed())
    y = counting.solve(BoxQP(np.eye(2), np.zeros(2), np.zeros(2), np.full(2, 1e308)))
    assert y.tolist() == [1e308, 1e308] and counting.failures == 0
