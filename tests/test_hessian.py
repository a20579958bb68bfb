"""BFGS / L-BFGS inverse Hessians and damping (ALGORITHM.md §11)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ncvx_ref.backend import Backend
from ncvx_ref.hessian import (BFGSInverseHessian, LBFGSInverseHessian, damp, SKIPPED_STY,
                              UPDATED, SKIPPED_INFNAN)

B = Backend.of(np.zeros(1))


def _pairs(seed, n, count):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A = A @ A.T + n * np.eye(n)  # a SPD "Hessian": y = A s gives s'y > 0
    return [(s, A @ s) for s in rng.standard_normal((count, n))]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 8), count=st.integers(1, 6))
def test_bfgs_keeps_H_spd_and_satisfies_secant(seed, n, count):
    H = BFGSInverseHessian(n, B)
    for s, y in _pairs(seed, n, count):
        assert H.update(s, y, float(s @ y), False) == UPDATED
        Hd = H.dense
        np.testing.assert_array_equal(Hd, Hd.T)  # exactly symmetric by construction
        assert np.linalg.eigvalsh(Hd).min() > 0
        np.testing.assert_allclose(H.apply(y), s, rtol=1e-7, atol=1e-9 * np.linalg.norm(s))
    assert H.counts.freeze().updates == count


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 8), count=st.integers(1, 5))
def test_lbfgs_two_loop_equals_full_bfgs_with_same_pairs(seed, n, count):
    """Without scaling and with memory >= pairs, L-BFGS's two-loop recursion is full BFGS."""
    full = BFGSInverseHessian(n, B, scaleH0=False)
    lim = LBFGSInverseHessian(n, 10, B, scaleH0=False)
    for s, y in _pairs(seed, n, count):
        full.update(s, y, float(s @ y), False)
        lim.update(s, y, float(s @ y), False)
    V = np.random.default_rng(seed + 1).standard_normal((n, 3))
    np.testing.assert_allclose(lim.apply(V), full.apply(V), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lim.apply(V[:, 0]), full.apply(V[:, 0]), rtol=1e-9, atol=1e-12)


def test_update_skipped_when_curvature_not_positive():
    H = BFGSInverseHessian(3, B)
    s, y = np.array([1.0, 0, 0]), np.array([-1.0, 0, 0])
    assert H.update(s, y, float(s @ y), False) == SKIPPED_STY
    c = H.counts.freeze()
    assert (c.requests, c.updates, c.sty_fails) == (1, 0, 1)
    np.testing.assert_array_equal(H.dense, np.eye(3))  # unchanged, scaling still pending


def test_first_update_scales_by_sty_over_yty():
    H = BFGSInverseHessian(2, B)
    s, y = np.array([1.0, 0.0]), np.array([4.0, 0.0])
    H.update(s, y, 4.0, False)
    # gamma = s'y / y'y = 1/4 scales H0 before the update; the secant equation still holds
    np.testing.assert_allclose(H.apply(y), s)
    assert H.dense[1, 1] == pytest.approx(0.25)


def test_lbfgs_drops_oldest_pair_and_rejects_nonfinite():
    H = LBFGSInverseHessian(2, 2, B)
    for k in range(3):
        s = np.array([1.0 + k, 1.0])
        H.update(s, 2 * s, float(2 * s @ s), False)
    state = H.state()
    assert state["S"].shape == (2, 2)
    np.testing.assert_array_equal(state["S"][:, 0], [2.0, 1.0])  # pair 1 dropped, oldest first
    assert H.update(np.array([np.inf, 0]), np.array([1.0, 0]), 1.0, False) == SKIPPED_INFNAN
    assert H.counts.freeze().infnan_fails == 1


def test_lbfgs_warm_start_keeps_oldest_pairs():
    S = np.eye(3)
    Y = 2 * np.eye(3)
    H = LBFGSInverseHessian(3, 2, B, warm_start={"S": S, "Y": Y, "rho": [0.5, 0.5, 0.5], "gamma": 0.7})
    assert H.pairs == 2 and H.gamma == 0.7
    np.testing.assert_array_equal(H.state()["S"], S[:, :2])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), delta=st.floats(1e-4, 0.9))
def test_damping_makes_curvature_positive(seed, delta):
    rng = np.random.default_rng(seed)
    s, y = rng.standard_normal(4), rng.standard_normal(4)
    sty = float(s @ y)
    y2, sty2, damped = damp(s, y, sty, lambda v: v, delta, B)
    sHs = float(s @ s)
    if sty < delta * sHs:
        assert damped
        assert sty2 == pytest.approx(delta * sHs, rel=1e-9)
        assert float(s @ y2) == pytest.approx(sty2, rel=1e-7, abs=1e-12)
    else:
        assert not damped and sty2 == sty
