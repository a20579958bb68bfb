"""Every termination code that a problem or an option can trigger is triggered here (§15)."""
import math
import time

import numpy as np
import pytest

import ncvx_ref
from ncvx_ref import Evaluation, TerminationCode as TC


def rosenbrock(x):
    f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
    g = np.array([-400 * (x[1] - x[0] ** 2) * x[0] - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
    return Evaluation(f, g)


def ex2(x):
    """GRANSO's nonsmooth constrained example (two inequalities)."""
    r = x[0] ** 2 - x[1]
    s = 1.0 if r >= 0 else -1.0
    return Evaluation(8 * abs(r) + (1 - x[0]) ** 2, np.array([16 * s * x[0] - 2 * (1 - x[0]), -8 * s]),
                      np.array([np.sqrt(2) * x[0] - 1, 2 * x[1] - 1]), np.array([[np.sqrt(2), 0.0], [0.0, 2.0]]))


def infeasible_eq(x):
    """c_E = (x1 - 1, x1 + 1) cannot both vanish: GRANSO finds no descent direction at x0 (code 9)."""
    return Evaluation(float(x @ x), 2 * x, ce=np.array([x[0] - 1, x[0] + 1]),
                      ce_grad=np.array([[1.0, 1.0], [0.0, 0.0]]))


def infeasible_ineq(x):
    return Evaluation(float(x @ x), 2 * x, ci=np.array([x[0] + 1, 1 - x[0]]),
                      ci_grad=np.array([[1.0, -1.0], [0.0, 0.0]]))


X0 = np.array([-1.2, 1.0])


def test_code_0_converged_matches_granso_appendix_A1():
    r = ncvx_ref.solve(rosenbrock, X0, print_level=0)
    assert r.termination_code == TC.CONVERGED and r.success
    assert (r.iters, r.fn_evals) == (30, 62)  # ALGORITHM.md Appendix A.1
    assert r.stat_value <= 1e-8


def test_code_0_constrained_matches_granso_appendix_A2():
    r = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), mu0=100, print_level=0)
    assert r.termination_code == TC.CONVERGED
    assert (r.iters, r.fn_evals) == (45, 111)  # ALGORITHM.md Appendix A.2
    assert r.final.feasible_to_tol and r.stat_value <= 1e-8


def test_code_1_rel_tol_after_a_step():
    r = ncvx_ref.solve(rosenbrock, X0, rel_tol=0.05, print_level=0)
    assert r.termination_code == TC.REL_TOL and r.iters >= 1


def test_code_1_rel_tol_inf_fires_at_x0():
    # rel_diff is +inf at x0, so only rel_tol = inf (which validation allows) stops there (§5.4)
    r = ncvx_ref.solve(rosenbrock, X0, rel_tol=math.inf, print_level=0)
    assert r.termination_code == TC.REL_TOL and r.iters == 0 and r.fn_evals == 1


def test_code_2_fvalquit():
    r = ncvx_ref.solve(rosenbrock, X0, fvalquit=1.0, print_level=0)
    assert r.termination_code == TC.FVALQUIT and r.final.f <= 1.0


def test_code_3_callback_halt():
    seen = []

    def cb(state):
        seen.append(state.iteration)
        return state.iteration == 3

    r = ncvx_ref.solve(rosenbrock, X0, callback=cb, print_level=0)
    assert r.termination_code == TC.USER_HALT and seen == [0, 1, 2, 3] and r.iters == 3


def test_code_4_maxit():
    r = ncvx_ref.solve(rosenbrock, X0, maxit=5, print_level=0)
    assert r.termination_code == TC.MAXIT and r.iters == 5


def test_code_5_maxclocktime():
    def slow(x):
        time.sleep(0.01)
        return rosenbrock(x)

    r = ncvx_ref.solve(slow, X0, maxclocktime=0.05, print_level=0)
    assert r.termination_code == TC.MAXCLOCKTIME and 1 <= r.iters < 30


def test_code_6_linesearch_bracket_at_feasible_point():
    """|x| is nonsmooth at 0: the search brackets the kink but never satisfies weak Wolfe."""
    r = ncvx_ref.solve(lambda x: Evaluation(float(np.abs(x).sum()), np.sign(x) + (x == 0)),
                       np.array([1.0, -2.0, 0.5]), print_level=0)
    assert r.termination_code == TC.LINESEARCH_BRACKET_FEASIBLE


def test_code_7_linesearch_bracket_at_infeasible_point():
    r = ncvx_ref.solve(infeasible_ineq, np.array([0.3, -0.2]), mu0=10, print_level=0)
    assert r.termination_code == TC.LINESEARCH_BRACKET_INFEASIBLE
    assert not r.final.feasible_to_tol and r.most_feasible is not None and r.best is None


def test_code_8_not_bracketed_unbounded_below():
    r = ncvx_ref.solve(lambda x: Evaluation(-float(x.sum()), -np.ones(2)), np.zeros(2), print_level=0)
    assert r.termination_code == TC.LINESEARCH_NOT_BRACKETED
    assert r.mu_lowest is None  # only reported for constrained problems


def test_code_8_constrained_reports_mu_lowest():
    def fun(x):
        return Evaluation(-float(x[0]), np.array([-1.0, 0.0]), ci=np.array([x[1] - 1.0]),
                          ci_grad=np.array([[0.0], [1.0]]))

    r = ncvx_ref.solve(fun, np.zeros(2), print_level=0)
    assert r.termination_code == TC.LINESEARCH_NOT_BRACKETED
    assert r.mu_lowest is not None and r.mu_lowest < 1.0


def test_code_9_no_descent_direction():
    r = ncvx_ref.solve(infeasible_eq, np.array([0.0, 0.0]), print_level=0)
    assert r.termination_code == TC.NO_DESCENT_DIRECTION


def test_code_11_user_function_raises_after_x0_keeps_best_point():
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("simulator crashed")
        return rosenbrock(x)

    r = ncvx_ref.solve(flaky, X0, print_level=0)
    assert r.termination_code == TC.USER_FUNCTION_ERROR
    assert isinstance(r.error, ncvx_ref.UserFunctionError)
    assert isinstance(r.error.__cause__, RuntimeError)
    assert r.best.f < rosenbrock(X0).f and r.fn_evals == 21


class FailingQP:
    name = "always-fails"

    def solve(self, qp):
        raise RuntimeError("no")


def test_code_12_steering_qp_failure_with_halt_on_quadprog_error():
    r = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), qp_solver=FailingQP(), halt_on_quadprog_error=True,
                       print_level=0)
    assert r.termination_code == TC.QP_FAILURE and r.error is not None
    assert r.quadprog_failure_rate == 100.0


def test_steering_qp_failure_falls_back_to_quasi_newton_without_halt():
    r = ncvx_ref.solve(ex2, np.array([5.5, 5.5]), qp_solver=FailingQP(), print_level=0, maxit=3)
    assert r.termination_code != TC.QP_FAILURE and r.iters >= 1


def test_code_13_internal_error_keeps_result():
    def cb(state):
        if state.iteration == 2:
            raise ZeroDivisionError("bug in a callback")
        return False

    r = ncvx_ref.solve(rosenbrock, X0, callback=cb, print_level=0)
    assert r.termination_code == TC.UNKNOWN_ERROR and isinstance(r.error, ZeroDivisionError)
    assert r.iters == 2 and r.final.f < 24.2


def test_debug_mode_reraises():
    def bad(x):
        if x[0] != -1.2:
            raise ValueError("boom")
        return rosenbrock(x)

    with pytest.raises(ncvx_ref.UserFunctionError):
        ncvx_ref.solve(bad, X0, debug_mode=True, print_level=0)


def test_keyboard_interrupt_attaches_result():
    calls = {"n": 0}

    def interrupted(x):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return rosenbrock(x)

    with pytest.raises(KeyboardInterrupt) as info:
        ncvx_ref.solve(interrupted, X0, print_level=0)
    res = info.value.ncvx_result
    assert res.best.f < 24.2 and res.fn_evals == 15
