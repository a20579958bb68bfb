"""A QP whose equality names one variable is solved without it (ncvx_ref/qp/pinned.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ncvx_ref.qp import small
from ncvx_ref.qp.interface import BoxQP, QPSolverError
from ncvx_ref.qp.pinned import PinnedVariable
from ncvx_ref.qp.polish import _Scales, default_tolerance, kkt_residual
from ncvx_ref.qp.solvers import DAQPSolver, PIQPSolver, check_qp

from test_qp import HYP, INSTALLED, SOLVER_NAMES, _objective, solver_params, stationarity_qps
from ncvx_ref.qp.default import get_qp_solver


def _one_sample_qp(rng, k: int, j: int, mu: float, rhs: float) -> BoxQP:
    """A stationarity QP of one gradient sample: weight ``j`` in [0, mu], held at ``rhs``."""
    C = rng.standard_normal((max(1, k - 1), k))  # singular when k > 1: the usual case
    lb = -np.ones(k)
    ub = np.ones(k)
    lb[j], ub[j] = 0.0, mu
    a = np.zeros(k)
    a[j] = 1.0
    return BoxQP(C.T @ C, rng.standard_normal(k), lb, ub, a, rhs, kind="stationarity")


def test_reduction_data():
    Q = np.arange(9.0).reshape(3, 3)
    Q = Q + Q.T
    qp = BoxQP(Q, np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.0, -2.0]),
               np.array([1.0, 5.0, 2.0]), np.array([0.0, 2.0, 0.0]), 3.0, kind="stationarity")
    pinned = PinnedVariable.of(qp)
    assert pinned.index == 1 and pinned.value == 1.5
    r = pinned.reduced
    assert r.eq_coeffs is None and r.kind == "stationarity"
    np.testing.assert_array_equal(r.Q, Q[np.ix_([0, 2], [0, 2])])
    np.testing.assert_array_equal(r.q, np.array([1.0, 3.0]) + 1.5 * Q[[0, 2], 1])
    np.testing.assert_array_equal(r.lb, [-1.0, -2.0])
    np.testing.assert_array_equal(r.ub, [1.0, 2.0])
    np.testing.assert_array_equal(pinned.expand(np.array([0.25, -0.5])), [0.25, 1.5, -0.5])


@pytest.mark.parametrize("eq, k", [(None, 3), (np.array([1.0, 1.0, 0.0]), 3),
                                   (np.array([0.0, 0.0, 0.0]), 3), (np.array([2.0]), 1)])
def test_no_reduction(eq, k):
    """No equality, two or no nonzero coefficients, or nothing left after the reduction."""
    qp = BoxQP(np.eye(k), np.ones(k), -np.ones(k), np.ones(k), eq, 0.5)
    assert PinnedVariable.of(qp) is None


def test_structured_qp_is_not_reduced():
    A = np.eye(3)
    qp = BoxQP(None, np.ones(3), -np.ones(3), np.ones(3), np.array([0.0, 1.0, 0.0]), 0.5, A=A)
    assert PinnedVariable.of(qp) is None


def test_value_past_the_bound_by_rounding_is_clipped():
    """``check_qp`` accepts ``mu`` a few ulps past its bound; the fixed value stays inside."""
    rng = np.random.default_rng(0)
    mu = 0.6561
    qp = _one_sample_qp(rng, 3, 1, mu, np.nextafter(np.nextafter(mu, 1.0), 1.0))
    pinned = PinnedVariable.of(qp)
    assert pinned.value == mu
    y = DAQPSolver().solve(qp)
    assert y[1] == mu


@pytest.mark.parametrize("name", solver_params(SOLVER_NAMES))
@HYP
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 12), data=st.data())
def test_adapters_answer_one_sample_qps_exactly(name, seed, k, data):
    """Every adapter: the fixed variable at its value and the full QP's KKT conditions met."""
    j = data.draw(st.integers(0, k - 1))
    mu = data.draw(st.sampled_from([0.01, 1.0, 100.0]))
    qp = _one_sample_qp(np.random.default_rng(seed), k, j, mu, mu)
    y = get_qp_solver(name).solve(qp)
    assert y.shape == (k,) and y[j] == mu
    assert kkt_residual(qp, y).total <= default_tolerance(k)


@HYP
@given(qp=stationarity_qps())
def test_reduced_answer_is_as_good_as_the_whole_qps(qp):
    """The optimal value through the reduction equals PIQP's on the whole QP (PIQP, given the
    unreduced QP directly, is the reference; the reduction applies only where one sample)."""
    pinned = PinnedVariable.of(qp)
    if pinned is None:
        assert qp.size == 1 or np.count_nonzero(qp.eq_coeffs) > 1
        return
    y = pinned.expand(DAQPSolver().solve(pinned.reduced))
    reference = PIQPSolver()._solve_raw(qp)[0]  # the library's own answer, no reduction
    scale = max(1.0, float(np.max(np.abs(qp.q))), float(np.max(np.abs(qp.Q))))
    assert _objective(qp, y) <= _objective(qp, reference) + 1e-9 * scale
    assert kkt_residual(qp, y).total <= default_tolerance(qp.size)


def _bytes(qp: BoxQP) -> list:
    return [None if x is None else x.tobytes() for x in (qp.Q, qp.q, qp.lb, qp.ub, qp.guess)]


@HYP
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 8), data=st.data())
def test_small_pin_is_the_reduction_on_floats(seed, k, data):
    """``small.pin``: PinnedVariable.of's index, value and reduced arrays (built on demand),
    the reduced QP's floats and its scales, from the checked QP's floats."""
    rng = np.random.default_rng(seed)
    j = data.draw(st.integers(0, k - 1))
    mu = data.draw(st.sampled_from([0.01, 1.0, 100.0]))
    qp = _one_sample_qp(rng, k, j, mu, data.draw(st.sampled_from([mu, 0.5 * mu, 0.0])))
    if data.draw(st.booleans()):
        qp = BoxQP(qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind,
                   guess=rng.standard_normal(k))
    index, value, reduced = small.pin(small.checked(qp))
    ref = PinnedVariable.of(qp)
    assert (index, value) == (ref.index, ref.value)
    assert _bytes(reduced.qp) == _bytes(ref.reduced) and reduced.qp.kind == qp.kind
    r = ref.reduced
    assert [reduced.Q, reduced.q, reduced.lb, reduced.ub] == [r.Q.tolist(), r.q.tolist(),
                                                              r.lb.tolist(), r.ub.tolist()]
    assert reduced.a is None and reduced.sc == _Scales.of(r)
    y = np.linspace(-1.0, 1.0, k - 1)
    assert small.put_back(y, index, value).tobytes() == ref.expand(y).tobytes()


def test_small_pin_checks_the_reduced_q():
    """``q + Q[:, j]·value`` can overflow: the reduced QP fails check_qp's test, as before."""
    Q = np.array([[1.0, 1e308], [1e308, 1.0]])
    qp = BoxQP(Q, np.array([1e308, 0.0]), np.zeros(2), np.array([1.0, 2.0]),
               np.array([0.0, 1.0]), 2.0, kind="stationarity")
    with np.errstate(over="ignore"), pytest.raises(QPSolverError, match="`q` contains inf"):
        check_qp(PinnedVariable.of(qp).reduced)
    with pytest.raises(QPSolverError, match="`q` contains inf or NaN"):
        DAQPSolver().solve(qp)
