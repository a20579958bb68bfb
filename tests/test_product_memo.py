"""Large-n product paths: H v kept current through rank-2 updates (ncvx_ref.product_memo), what uses them, and the column-major gradient matrix they multiply."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ncvx_ref
from ncvx_ref.backend import Backend
from ncvx_ref.bfgs_kernels import RANK2_MIN_N
from ncvx_ref.hessian import BFGSInverseHessian, LBFGSInverseHessian, damp
from ncvx_ref.product_memo import MAX_IDLE_UPDATES, ProductMemo

from full_bfgs_helpers import eigen_problem, pair

B = Backend.of(np.zeros(1))
N = RANK2_MIN_N

pytestmark = pytest.mark.usefixtures("matrix_from_the_first_update")  # the n x n matrix path


class _Counting:
    def __init__(self, H):
        self.H, self.calls = H, 0

    def __call__(self, v):
        self.calls += 1
        return self.H.apply(v)


def test_memoized_products_follow_the_updates_and_are_reused():
    rng = np.random.default_rng(0)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    assert H.memoizes
    g, J = rng.standard_normal(N), rng.standard_normal((N, 3))
    count = _Counting(H)
    H._memo.products([g, J], count)
    assert count.calls == 2
    for _ in range(MAX_IDLE_UPDATES):
        H.update(*pair(rng, N), False)
        Hg, HJ = H._memo.products([g, J], count)
        assert count.calls == 2  # no pass over H: corrected in O(n)
        scale = np.abs(H.dense).max()
        np.testing.assert_allclose(Hg, H.dense @ g, rtol=0, atol=1e-12 * scale * np.abs(g).sum())
        np.testing.assert_allclose(HJ, H.dense @ J, rtol=0, atol=1e-12 * scale * np.abs(J).sum(0).max())


def test_an_array_rewritten_in_place_is_multiplied_again():
    rng = np.random.default_rng(1)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    g = rng.standard_normal(N)
    first = H.apply_each([g])[0].copy()
    g[3] += 1.0  # the same array object, new content (a user function reusing its buffer)
    again = H.apply_each([g])[0]
    np.testing.assert_allclose(again, H.apply(g), rtol=1e-14, atol=1e-14)
    assert not np.allclose(again, first)


def test_an_array_reshaped_in_place_is_multiplied_again():
    """The same object with the same numbers in a new shape: a product of the new shape."""
    rng = np.random.default_rng(1)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    v = rng.standard_normal(N)
    H.apply_each([v])
    with warnings.catch_warnings():  # deprecated from NumPy 2.5 on, still legal
        warnings.simplefilter("ignore", DeprecationWarning)
        v.shape = (N, 1)
    again = H.apply_each([v])[0]
    assert again.shape == (N, 1)
    np.testing.assert_allclose(again, H.apply(v), rtol=1e-14, atol=1e-14)


def test_idle_entries_are_dropped():
    rng = np.random.default_rng(2)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    H.apply_each([rng.standard_normal(N)])
    assert len(H._memo) == 1
    for _ in range(MAX_IDLE_UPDATES + 1):
        H.update(*pair(rng, N), False)
    assert len(H._memo) == 0


def test_below_the_rank2_size_nothing_is_memoized():
    rng = np.random.default_rng(3)
    H = BFGSInverseHessian(N - 1, B)
    H.update(*pair(rng, N - 1), False)
    assert not H.memoizes and H.rayleigh_bound() is None
    g = rng.standard_normal(N - 1)
    np.testing.assert_array_equal(H.apply_each([g])[0], H.apply(g))
    assert len(H._memo) == 0
    L = LBFGSInverseHessian(N, 5, B)
    assert not L.memoizes and L.rayleigh_bound() is None


def test_a_user_H0_rescaled_at_the_first_update_forgets_its_products():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((N, N)) / math.sqrt(N)
    H = BFGSInverseHessian(N, B, H0=A @ A.T + np.eye(N), scaleH0=True, H0_is_sparse=False)
    H.update(*pair(rng, N), False)  # in place from now on
    g = rng.standard_normal(N)
    H.apply_each([g])
    H.update(*pair(rng, N), False)
    np.testing.assert_allclose(H.apply_each([g])[0], H.dense @ g, rtol=1e-11, atol=1e-11)


def test_memo_rank2_matches_the_update_formula():
    rng = np.random.default_rng(5)
    n = 50
    M = rng.standard_normal((n, n))
    M = M + M.T
    memo = ProductMemo(B)
    v = rng.standard_normal((n, 2))
    memo.products([v], lambda a: M @ a)
    s, b = rng.standard_normal(n), rng.standard_normal(n)
    memo.rank2(s, b)
    M2 = M + np.outer(s, b) + np.outer(b, s)
    got = memo.products([v], lambda a: pytest.fail("must not recompute"))[0]
    np.testing.assert_allclose(got, M2 @ v, rtol=1e-13, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), delta=st.floats(1e-6, 0.9), curvature=st.floats(-2.0, 3.0))
def test_damping_with_a_rayleigh_bound_decides_exactly_as_without(seed, delta, curvature):
    rng = np.random.default_rng(seed)
    n = 6
    A = rng.standard_normal((n, n))
    H = A @ A.T + 0.1 * np.eye(n)
    s = rng.standard_normal(n)
    y = curvature * s + 0.2 * rng.standard_normal(n)
    sty = float(s @ y)
    calls = []

    def apply_H(v):
        calls.append(1)
        return H @ v

    plain = damp(s, y, sty, lambda v: H @ v, delta, B)
    bound = 1.01 * float(np.trace(H))
    bounded = damp(s, y, sty, apply_H, delta, B, rayleigh_bound=bound)
    assert plain[2] == bounded[2] and plain[1] == bounded[1]
    np.testing.assert_array_equal(plain[0], bounded[0])
    if sty >= delta * bound * float(s @ s):
        assert not calls  # H s was not needed


def test_solve_with_memoized_products_matches_the_plain_products(monkeypatch):
    """n >= RANK2_MIN_N: the steering and stationarity products come from the memo; the run
    must be the run without it, up to rounding, with fewer passes over H."""
    import ncvx_ref.hessian as hessian

    passes = []
    product = hessian.symmetric_product

    def counted(H, V, **kwargs):
        passes.append(1 if V.ndim == 1 else V.shape[1])
        return product(H, V, **kwargs)

    monkeypatch.setattr(hessian, "symmetric_product", counted)
    fun, x0, _ = eigen_problem(N)
    with_memo = ncvx_ref.solve(fun, x0, print_level=0, maxit=60)
    passes_memo, passes[:] = sum(passes), []
    monkeypatch.setattr(BFGSInverseHessian, "memoizes", property(lambda self: False))
    without = ncvx_ref.solve(fun, x0, print_level=0, maxit=60)
    assert with_memo.error is None and without.error is None
    assert with_memo.termination_code == without.termination_code
    assert with_memo.iters == without.iters
    assert with_memo.final.f == pytest.approx(without.final.f, rel=1e-9)
    assert with_memo.final.tv == pytest.approx(without.final.tv, rel=1e-6, abs=1e-12)
    assert with_memo.final.f != fun(x0)[0]  # it moved
    # per iteration: 2 columns for the stationarity QP and H y, instead of also 2 for the
    # steering QP and H s for damping
    assert passes_memo < 0.6 * sum(passes)


def test_large_gradient_matrices_are_column_major_with_the_same_values():
    from ncvx_ref.stationarity import (COLUMN_MAJOR_MIN_N, GradientSample, _gradient_matrix)

    rng = np.random.default_rng(8)
    for n in (COLUMN_MAJOR_MIN_N - 1, COLUMN_MAJOR_MIN_N):
        samples = [GradientSample(rng.standard_normal(n), rng.standard_normal(n),
                                  rng.standard_normal((n, 2)), rng.standard_normal((n, 1)))
                   for _ in range(3)]
        A = _gradient_matrix(samples, np)
        want = np.concatenate([s.ce_grad for s in samples]
                              + [np.stack([s.f_grad for s in samples], axis=1)]
                              + [s.ci_grad for s in samples], axis=1)
        np.testing.assert_array_equal(A, want)
        assert A.flags.f_contiguous == (n >= COLUMN_MAJOR_MIN_N)
        assert A.flags.c_contiguous == (n < COLUMN_MAJOR_MIN_N)


def test_skipped_updates_age_the_entries_too():
    """A run of skipped updates (s'y <= 0) must not let the memo grow without bound."""
    rng = np.random.default_rng(9)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    for _ in range(10):
        H.apply_each([rng.standard_normal(N)])  # a new point's gradient every iteration
        s = rng.standard_normal(N)
        assert H.update(s, -s, -float(s @ s), False) == 2  # skipped: s'y <= 0
    assert len(H._memo) <= MAX_IDLE_UPDATES + 1
