"""The public entry points: bad input gets clear errors, results are reproducible and complete."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ncvx_ref
from ncvx_ref import Evaluation, OptionError, ProblemDefinitionError, TerminationCode as TC
from ncvx_ref.granso import granso

from test_termination_codes import ex2, rosenbrock, X0


# ---------------------------------------------------------------- bad input at x0
@pytest.mark.parametrize("bad, match", [
    (lambda x: Evaluation(np.ones(2), np.zeros(2)), "objective must be a scalar"),
    (lambda x: Evaluation(1.0, np.zeros(3)), "f_grad has length 3, expected n = 2"),
    (lambda x: Evaluation(1.0, np.zeros(2), np.zeros(3), np.zeros((3, 2))), "looks transposed"),
    (lambda x: Evaluation(1.0, np.zeros(2), np.zeros(3), None), "ci_grad is missing"),
    (lambda x: Evaluation(np.nan, np.zeros(2)), "not finite"),
    (lambda x: Evaluation(1.0, np.array([np.inf, 0.0])), "NaN or Inf"),
    (lambda x: Evaluation(1.0, np.zeros(2, dtype=np.float32)), "dtype"),
    (lambda x: 3.0, "must return an ncvx_ref.Evaluation"),
])
def test_bad_function_output_at_x0_is_a_clear_error(bad, match):
    with pytest.raises(ProblemDefinitionError, match=match):
        ncvx_ref.solve(bad, np.zeros(2), print_level=0)


def test_exception_at_x0_is_reported_with_its_cause():
    def boom(x):
        raise KeyError("missing data")

    with pytest.raises(ProblemDefinitionError, match="raised at x0: KeyError") as info:
        ncvx_ref.solve(boom, np.zeros(2), print_level=0)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("x0, match", [
    (np.zeros((2, 1)), "1-D array"), ([0.0, 1.0], "Array-API namespace"),
    (np.array([0, 1]), "real floating"), (np.array([np.nan, 1.0]), "NaN or Inf")])
def test_bad_x0(x0, match):
    with pytest.raises(ProblemDefinitionError, match=match):
        ncvx_ref.solve(rosenbrock, x0, print_level=0)


def test_non_pd_H0_rejected_when_checked_and_accepted_otherwise():
    H0 = np.array([[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(OptionError, match="positive definite"):
        ncvx_ref.solve(rosenbrock, X0, H0=H0, print_level=0)
    r = ncvx_ref.solve(rosenbrock, X0, H0=np.eye(2) * 0.5, print_level=0)
    assert r.termination_code == TC.CONVERGED
    with pytest.raises(OptionError, match="not symmetric"):
        ncvx_ref.solve(rosenbrock, X0, H0=np.array([[1.0, 0.5], [0.0, 1.0]]), print_level=0)
    with pytest.raises(OptionError, match="n x n"):
        ncvx_ref.solve(rosenbrock, X0, H0=np.eye(3), print_level=0)


def test_quadprog_opts_warns_that_it_has_no_effect():
    with pytest.warns(UserWarning, match="quadprog_opts has no effect"):
        ncvx_ref.solve(rosenbrock, X0, quadprog_opts={"MaxIterations": 5}, maxit=2, print_level=0)


def test_unknown_option_suggests_closest_name():
    with pytest.raises(OptionError, match="maxit"):
        ncvx_ref.solve(rosenbrock, X0, max_it=10)


# ---------------------------------------------------------------- guarantees
def test_identical_inputs_give_bit_identical_results():
    a = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), mu0=100, record_history=True, print_level=0)
    b = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), mu0=100, record_history=True, print_level=0)
    assert a.fn_evals == b.fn_evals and a.iters == b.iters
    for ha, hb in zip(a.history, b.history):
        np.testing.assert_array_equal(ha.x, hb.x)
        assert ha.stat_val == hb.stat_val or (math.isnan(ha.stat_val) and math.isnan(hb.stat_val))


def _random_l1_problem(seed, n, m):
    rng = np.random.default_rng(seed)
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    G = rng.standard_normal((2, n))
    h = np.abs(rng.standard_normal(2))
    visited = []

    def fun(x):
        r = A @ x - b
        ev = Evaluation(float(np.abs(r).sum()), A.T @ np.sign(r), G @ x - h, G.T.copy())
        visited.append((x.copy(), ev.f, float(np.max(G @ x - h))))
        return ev

    return fun, visited


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 6), m=st.integers(2, 8),
       lbfgs=st.sampled_from([0, 3]))
def test_counts_best_point_and_certificate(seed, n, m, lbfgs):
    fun, visited = _random_l1_problem(seed, n, m)
    r = ncvx_ref.solve(fun, np.zeros(n), limited_mem_size=lbfgs, maxit=60, print_level=0)
    assert r.fn_evals == len(visited)  # fn_evals is the real number of calls
    assert r.iters == r.bfgs_updates.requests
    feasible = [f for _, f, tv in visited if tv <= 1e-6]
    if feasible:
        assert r.best is not None and r.best.f <= min(feasible)  # the best point is never worse
    assert r.most_feasible.tv <= min(max(tv, 0.0) for _, _, tv in visited)
    if r.termination_code == TC.CONVERGED:  # code 0 is a certificate
        assert r.stat_value <= 1e-8 and r.final.tvi <= 1e-6


def test_warm_restart_lbfgs_and_full():
    r1 = ncvx_ref.solve(rosenbrock, X0, maxit=10, limited_mem_size=5, print_level=0)
    r2 = ncvx_ref.solve(rosenbrock, r1.final.x, limited_mem_size=5, scaleH0=False,
                        limited_mem_warm_start=r1.H_final, print_level=0)
    assert r2.termination_code == TC.CONVERGED and r2.final.f < 1e-10
    f1 = ncvx_ref.solve(rosenbrock, X0, maxit=10, print_level=0)
    f2 = ncvx_ref.solve(rosenbrock, f1.final.x, H0=f1.H_final, scaleH0=False, checkH0=False, print_level=0)
    assert f2.termination_code == TC.CONVERGED
    assert f2.iters < 30  # the learned H carries over


def test_prescaling_reports_unscaled_points():
    def big(x):
        ev = ex2(x)
        return Evaluation(1e4 * ev.f, 1e4 * ev.f_grad, ev.ci, ev.ci_grad)

    r = ncvx_ref.solve(big, np.array([5.5, 5.5]), prescaling_threshold=10.0, print_level=0)
    assert r.scalings is not None and 0 < r.scalings["f"] < 1
    assert r.final_unscaled.f == pytest.approx(r.final.f / r.scalings["f"])
    assert r.final_unscaled.f == pytest.approx(big(r.final.x).f)


# ---------------------------------------------------------------- GRANSO front end
def test_granso_separate_and_combined_forms_agree_with_solve():
    def obj(x):
        ev = ex2(x)
        return ev.f, ev.f_grad.reshape(-1, 1)  # (n, 1) columns accepted, as MATLAB users write them

    def ineq(x):
        ev = ex2(x)
        return ev.ci.tolist(), ev.ci_grad

    def combined(x):
        ev = ex2(x)
        return ev.f, ev.f_grad, ev.ci, ev.ci_grad, [], []

    log = []

    def halt_log_fn(it, x, parts, d, get_H, H_reg, evals, alpha, n_grads, stat_vec, stat_val, level):
        log.append((it, parts.mu, parts.p, evals, alpha, level, math.isnan(parts.stat_value)))
        return False

    opts = {"x0": [5.5, 5.5], "mu0": 100, "print_level": 0, "halt_log_fn": halt_log_fn}
    s1 = granso(2, obj, ineq, None, opts)
    s2 = granso(2, combined, {k: v for k, v in opts.items() if k != "halt_log_fn"})
    ref = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), mu0=100, print_level=0)
    assert s1.termination_code == s2.termination_code == 0
    assert s1.iters == s2.iters == ref.iters and s1.fn_evals == ref.fn_evals
    assert s1.final.f == ref.final.f and s1.most_feasible.tv == ref.most_feasible.tv
    assert s1.BFGS_updates.requests == ref.iters
    assert len(log) == ref.iters + 1 and log[0][0] == 0 and log[0][3] == 1 and all(e[6] for e in log)


def test_granso_unconstrained_point_fields_and_default_x0():
    s = granso(2, lambda x: (rosenbrock(x).f, rosenbrock(x).f_grad), None, None, {"print_level": 0})
    assert not hasattr(s.final, "ci") and s.final.f < 1e-8
    with pytest.raises(OptionError, match="x0 has 3 entries"):
        granso(2, lambda x: (0.0, x), None, None, {"x0": [1.0, 2.0, 3.0]})
