"""The compiled active-set kernel (``ncvx_ref.qp.active_set_kernel``) against its references.

``reduced_step`` must give the step of ``polish._ReducedKKT`` (the NumPy solver the lifted path
still uses), ``newton_on_free`` and ``run_active_set`` exact, reproducible answers; the QP-level
properties (certified optimum from any start, caps, statuses) are in tests/test_qp.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ncvx_ref.qp import active_set_kernel as kernel, solvers
from ncvx_ref.qp.default import ACTIVE_SET_FIRST_MAX_K, default_qp_solver
from ncvx_ref.qp.interface import BoxQP
from ncvx_ref.qp.polish import (_ReducedKKT, active_set_solve, cold_start, default_tolerance,
                                kkt_residual, newton_on_free)

HYP = settings(derandomize=True, database=None, deadline=None, max_examples=60,
               suppress_health_check=[HealthCheck.too_slow])


@st.composite
def reduced_systems(draw):
    """``(Q_ff, a_f or None, r, r_eq)``: PSD ``Q_ff`` of any rank, nearly duplicated columns."""
    f = draw(st.integers(1, 25))
    rank = draw(st.integers(0, f))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    B = rng.standard_normal((rank, f))
    if draw(st.booleans()) and f > 1:
        B[:, 1:] = B[:, :1] + 1e-7 * rng.standard_normal((rank, f - 1))
    Q = B.T @ B * draw(st.sampled_from([1e-3, 1.0, 1e4]))
    equality = draw(st.booleans())
    a = (rng.random(f) + 0.5) * rng.choice([-1.0, 1.0], f) if equality else None
    if equality and draw(st.booleans()):
        a = np.ones(f)  # the stationarity QP's Σ y_F = μ
    return Q, a, rng.standard_normal(f), (draw(st.sampled_from([0.0, 0.3])) if equality else 0.0)


@HYP
@given(reduced_systems())
def test_reduced_step_is_the_numpy_reduced_kkt_step(system):
    """Same Newton step, multiplier change and flat direction as ``_ReducedKKT.step`` (up to
    round-off of the different summation orders), on PD and singular reduced Hessians."""
    Q, a, r, r_eq = system
    f = r.shape[0]
    d_ref, dlam_ref, flat_ref = _ReducedKKT(Q, a).step(r, r_eq)
    d, dlam, flat, has_flat, _ = kernel.reduced_step(Q, np.zeros(f) if a is None else a,
                                                     a is not None, r, r_eq)
    scale = max(1.0, float(np.max(np.abs(d_ref))))
    assert np.max(np.abs(d - d_ref)) <= 1e-8 * scale
    assert abs(dlam - dlam_ref) <= 1e-8 * max(1.0, abs(dlam_ref), float(np.max(np.abs(Q))) * scale)
    # The flat part: present in both or in neither, except where one side's component is at
    # rounding level (both then treat it as no direction at all).
    flat_size = 0.0 if flat_ref is None else float(np.max(np.abs(flat_ref)))
    if flat_size > 1e-8:
        assert has_flat
        assert np.max(np.abs(flat - flat_ref)) <= 1e-7 * flat_size
    if has_flat and flat_ref is None:
        assert float(np.max(np.abs(flat))) <= 1e-8


def test_reduced_step_solves_the_kkt_system_when_the_reduced_hessian_is_definite():
    """With a positive definite reduced Hessian the step solves ``[Q a; aᵀ 0][d; dλ] = -[r; r_eq]``."""
    rng = np.random.default_rng(3)
    f = 7
    B = rng.standard_normal((f, f))
    Q = B.T @ B + np.eye(f)
    a = rng.random(f) + 0.5
    r = rng.standard_normal(f)
    d, dlam, _, has_flat, used_eigh = kernel.reduced_step(Q, a, True, r, 0.25)
    assert not has_flat and not used_eigh
    np.testing.assert_allclose(Q @ d + dlam * a, -r, atol=1e-12)
    assert abs(a @ d + 0.25) <= 1e-13


def test_reduced_step_reports_the_flat_direction_of_a_linear_qp():
    """``Q = 0`` with a gradient: no Newton step, the whole (projected) gradient is flat."""
    f = 4
    a = np.ones(f)
    r = np.array([1.0, -2.0, 0.5, 0.5])
    d, _, flat, has_flat, used_eigh = kernel.reduced_step(np.zeros((f, f)), a, True, r, 0.0)
    assert used_eigh and has_flat
    np.testing.assert_allclose(d, 0.0, atol=1e-15)
    projected = -(r - a * (a @ r) / (a @ a))  # steepest descent that keeps a·y
    np.testing.assert_allclose(flat, projected, atol=1e-14)


def test_newton_on_free_minimizes_over_the_free_variables():
    """The free variables end at the minimizer of the QP with the others fixed; fixed ones stay."""
    rng = np.random.default_rng(5)
    k = 9
    B = rng.standard_normal((k, k))
    Q = B.T @ B + 0.1 * np.eye(k)
    q = rng.standard_normal(k)
    qp = BoxQP(Q, q, np.zeros(k), np.ones(k), eq_coeffs=np.ones(k), eq_rhs=1.0)
    y = np.full(k, 1.0 / k)
    y[:3] = 0.0
    y[3:] = 1.0 / (k - 3)
    free = np.arange(3, k)
    y0 = y.copy()
    lam, flat = newton_on_free(qp, y, free, 0.0)
    assert flat is None
    assert np.array_equal(y[:3], y0[:3])
    g = Q @ y + q + lam * np.ones(k)
    assert np.max(np.abs(g[free])) <= 1e-10 * max(1.0, float(np.max(np.abs(Q))))
    assert abs(y.sum() - 1.0) <= 1e-14


def _degenerate_qp(k: int, seed: int) -> BoxQP:
    rng = np.random.default_rng(seed)
    n = max(1, k // 3)
    C = rng.standard_normal((n, 1)) + 1e-6 * rng.standard_normal((n, k))
    Q = C.T @ C
    return BoxQP(Q, rng.standard_normal(k) * 1e-3, np.zeros(k), np.full(k, 2.0),
                 eq_coeffs=np.ones(k), eq_rhs=2.0, kind="stationarity")


@pytest.mark.parametrize("k", [3, 12, 40])
def test_run_active_set_is_reproducible_and_certified(k):
    """Degenerate stationarity-like QPs: certified answers, bit-identical on a repeat."""
    qp = _degenerate_qp(k, seed=k)
    start = np.full(k, 2.0 / k)
    first = active_set_solve(qp, start)
    again = active_set_solve(qp, start)
    assert first.certified and first.status == "optimal"
    assert kkt_residual(qp, first.y).total <= default_tolerance(k)
    assert np.array_equal(first.y, again.y) and first.eq_multiplier == again.eq_multiplier
    assert first.iterations == again.iterations


def test_kernel_leaves_its_inputs_untouched_except_the_iterate():
    """``run_active_set`` updates ``y`` and the working set in place and nothing else."""
    qp = _degenerate_qp(10, seed=1)
    arrays = [qp.Q.copy(), qp.q.copy(), qp.lb.copy(), qp.ub.copy(), qp.eq_coeffs.copy()]
    active_set_solve(qp, np.full(10, 0.2))
    for before, after in zip(arrays, [qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs]):
        assert np.array_equal(before, after)


def test_status_names_cover_every_code():
    assert kernel.STATUS_NAMES[kernel.OPTIMAL] == "optimal"
    assert kernel.STATUS_NAMES[kernel.MAX_ITER] == "max_iter"
    assert kernel.STATUS_NAMES[kernel.WORK_LIMIT] == "work_limit"
    assert kernel.STATUS_NAMES[kernel.STALLED] == "stalled"
    assert kernel.STATUS_NAMES[kernel.NUMERICAL] == "numerical"


# -- the default solver's cold-start attempt (solvers.LibraryQPSolver, active_set_first_max_k) --


class _CountingDAQP(solvers.DAQPSolver):
    calls = 0

    def _solve_raw(self, qp):
        _CountingDAQP.calls += 1
        return super()._solve_raw(qp)


@pytest.mark.parametrize("k", [9, 40, ACTIVE_SET_FIRST_MAX_K])
def test_cold_active_set_answers_without_the_library(k):
    qp = _degenerate_qp(k, seed=2 * k)
    _CountingDAQP.calls = 0
    y = _CountingDAQP(active_set_first_max_k=ACTIVE_SET_FIRST_MAX_K).solve(qp)
    assert _CountingDAQP.calls == 0
    assert kkt_residual(qp, y).total <= default_tolerance(k)


def test_cold_active_set_falls_back_to_the_library_past_its_work_budget(monkeypatch):
    qp = _degenerate_qp(40, seed=7)
    monkeypatch.setattr(solvers, "COLD_WORK_FACTOR", 1e-6)  # not even one factorization
    _CountingDAQP.calls = 0
    solver = _CountingDAQP(active_set_first_max_k=ACTIVE_SET_FIRST_MAX_K)
    y = solver.solve(qp)
    assert _CountingDAQP.calls == 1
    assert kkt_residual(qp, y).total <= default_tolerance(40)


@pytest.mark.parametrize("k", [3, 8, ACTIVE_SET_FIRST_MAX_K + 1])
def test_cold_active_set_is_not_tried_outside_its_sizes(monkeypatch, k):
    def refuse(*args, **kwargs):
        raise AssertionError("the cold-start active set ran")
    monkeypatch.setattr(solvers, "active_set_solve", refuse)
    qp = _degenerate_qp(k, seed=k)
    y = solvers.DAQPSolver(active_set_first_max_k=ACTIVE_SET_FIRST_MAX_K).solve(qp)
    assert kkt_residual(qp, y).total <= default_tolerance(k)


def test_cold_active_set_is_off_unless_asked_and_on_in_the_default(monkeypatch):
    qp = _degenerate_qp(20, seed=3)
    _CountingDAQP.calls = 0
    _CountingDAQP().solve(qp)
    assert _CountingDAQP.calls == 1  # a named library adapter keeps its library
    ran = []
    real = solvers.active_set_solve
    monkeypatch.setattr(solvers, "active_set_solve", lambda *a, **kw: ran.append(1) or real(*a, **kw))
    default_qp_solver().solve(qp)
    assert ran == [1]


# -- polish.cold_start and the multiplier-sign scale (polish._sign_threshold) ---------------------


def test_cold_start_is_a_vertex_with_the_best_single_support_variable():
    rng = np.random.default_rng(11)
    k = 12
    B = rng.standard_normal((4, k))
    q = rng.standard_normal(k)
    qp = BoxQP(B.T @ B, q, np.zeros(k), np.full(k, 0.5), eq_coeffs=np.ones(k), eq_rhs=0.5)
    y = cold_start(qp)
    assert np.count_nonzero(y) == 1 and y.sum() == 0.5  # one variable carries the equality
    objective = lambda v: 0.5 * v @ qp.Q @ v + q @ v
    vertices = [objective(np.eye(k)[j] * 0.5) for j in range(k)]
    assert objective(y) == min(vertices)


def test_cold_start_spreads_the_equality_when_no_single_variable_can_carry_it():
    k = 5
    qp = BoxQP(np.eye(k), np.zeros(k), np.zeros(k), np.full(k, 0.3), eq_coeffs=np.ones(k),
               eq_rhs=1.0)
    y = cold_start(qp)
    assert abs(y.sum() - 1.0) <= 1e-15 and np.all(y >= 0.0) and np.all(y <= 0.3)


def _nearly_stationary_pair(seed: int, k: int = 20, n: int = 6):
    """The same stationarity-like QP twice, once with q = -3 on the equality's support: equal on
    the feasible set (the multiplier absorbs the constant), with optimal yᵀQy near 0."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, k // 2))
    G = 1e-3 * np.hstack([V, -V + 1e-6 * rng.standard_normal((n, k // 2))])
    Q = G.T @ G
    make = lambda q: BoxQP(Q, q, np.zeros(k), np.ones(k), eq_coeffs=np.ones(k), eq_rhs=1.0,
                           kind="stationarity")
    return make(np.zeros(k)), make(np.full(k, -3.0))


def test_a_constant_along_the_equality_does_not_loosen_the_active_set_answer():
    """The §10.3 constant in q sets the residual's scale S; judged on S, multiplier signs wrong
    by 3e-13 were accepted and yᵀQy came out 30x above the optimum (stat_value 5x)."""
    plain, shifted = [], []
    for seed in range(20):
        qp0, qp1 = _nearly_stationary_pair(seed)
        for qp, out in ((qp0, plain), (qp1, shifted)):
            res = active_set_solve(qp, cold_start(qp))
            assert res.certified
            out.append(res.y @ qp.Q @ res.y)
    assert max(shifted) <= 2.0 * max(plain)


def test_numba_loads_only_when_a_qp_needs_the_kernel():
    """``import ncvx_ref`` (and the problem definitions) work without importing Numba: the
    PyGRANSO benchmark venv rebuilds the reference problems with no Numba installed."""
    import subprocess
    import sys
    code = ("import sys, ncvx_ref, ncvx_ref.problems, ncvx_ref.qp.polish; "
            "assert 'numba' not in sys.modules, 'numba imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cold_active_set_failure_leaves_the_qp_to_the_library(monkeypatch):
    """An eigendecomposition that does not converge inside the attempt is not a QP failure."""
    def fail(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    monkeypatch.setattr(solvers, "active_set_solve", fail)
    qp = _degenerate_qp(30, seed=9)
    _CountingDAQP.calls = 0
    y = _CountingDAQP(active_set_first_max_k=ACTIVE_SET_FIRST_MAX_K).solve(qp)
    assert _CountingDAQP.calls == 1 and kkt_residual(qp, y).total <= default_tolerance(30)


def test_kernel_divisions_follow_numpy():
    """A zero curvature in a division gives inf, as NumPy does, not a ZeroDivisionError."""
    d, dlam, _, _, _ = kernel.reduced_step(np.zeros((2, 2)), np.zeros(2), True, np.ones(2), 0.0)
    assert np.all(np.isfinite(d)) and dlam == 0.0  # a_f = 0: no equality step
    assert kernel._cholesky_solve(np.zeros((1, 1)), np.ones(1))[0] == np.inf
