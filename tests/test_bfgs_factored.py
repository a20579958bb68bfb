"""Full BFGS kept as γI plus rank-2 terms while they are few (ncvx_ref.bfgs_factored), then formed."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ncvx_ref
from ncvx_ref.backend import Backend
from ncvx_ref.bfgs_factored import RankTwoTerms, term_capacity
from ncvx_ref.bfgs_kernels import RANK2_MIN_N
from ncvx_ref.hessian import SKIPPED_INFNAN, BFGSInverseHessian

from full_bfgs_helpers import eigen_problem, pair, update_then_skip_an_inf

B = Backend.of(np.zeros(1))
N = RANK2_MIN_N


def _update_both(H, M, rng, count):
    """The same ``count`` update pairs to both Hessians (M gets copies)."""
    for _ in range(count):
        s, y, sty = pair(rng, N)
        H.update(s, y, sty, False)
        M.update(s.copy(), y.copy(), sty, False)


def _twins(n=N, backend=B):
    """A Hessian that keeps terms and one that forms the matrix at the first update."""
    with_terms, matrix = BFGSInverseHessian(n, backend), BFGSInverseHessian(n, backend)
    matrix._terms_allowed = False
    return with_terms, matrix


def test_capacity_is_an_eighth_of_n_up_to_256():
    assert term_capacity(N) == N // 8 and term_capacity(10**6) == 256 and term_capacity(7) == 0


@pytest.mark.parametrize("shape", [(N,), (N, 3), (N, 9)])
def test_terms_apply_the_matrix_the_in_place_path_builds(shape):
    rng = np.random.default_rng(1)
    H, M = _twins()
    _update_both(H, M, rng, 12)
    assert H._terms is not None and len(H._terms) == 12 and H._H is None
    assert H.identity_scale is None and H.memoizes
    V = rng.standard_normal(shape)
    np.testing.assert_allclose(H.apply(V), M.apply(V), rtol=1e-10, atol=1e-12)
    assert H.rayleigh_bound() == pytest.approx(M.rayleigh_bound(), rel=1e-10)
    snap = H.state()
    assert H._terms is not None  # a snapshot does not form the matrix for good
    np.testing.assert_allclose(snap, M.dense, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(snap, snap.T)


def test_the_matrix_is_formed_when_the_terms_fill_their_buffer(monkeypatch):
    monkeypatch.setattr("ncvx_ref.hessian.term_capacity", lambda n: 3)
    rng = np.random.default_rng(2)
    H, M = _twins()
    for i in range(6):
        _update_both(H, M, rng, 1)
        assert (H._terms is not None) == (i < 3)
    live = H.dense
    _update_both(H, M, rng, 1)
    assert np.shares_memory(H.dense, live)  # in place from the formed matrix on
    np.testing.assert_allclose(H.dense, M.dense, rtol=1e-10, atol=1e-12)


def test_reading_the_whole_matrix_forms_it_and_later_updates_go_in_place():
    rng = np.random.default_rng(3)
    H, M = _twins()
    _update_both(H, M, rng, 4)
    np.testing.assert_allclose(H.metric_array(), M.dense, rtol=1e-10, atol=1e-12)
    assert H._terms is None and not H._terms_allowed
    _update_both(H, M, rng, 3)
    assert H._terms is None
    np.testing.assert_allclose(H.state(snapshot=False), M.state(snapshot=False), rtol=1e-10, atol=1e-12)


def test_an_update_with_inf_is_skipped_and_keeps_the_terms():
    H = BFGSInverseHessian(N, B)
    before = update_then_skip_an_inf(H, np.random.default_rng(4), N)
    assert len(H._terms) == 1
    np.testing.assert_array_equal(H.state(), before)


def test_an_update_near_overflow_forms_the_matrix_and_is_checked(monkeypatch):
    """Past the overflow bound the terms are formed and the in-place path checks the update
    entry by entry (here it overflows: skipped, H as it was)."""
    rng = np.random.default_rng(5)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    before = H.state()
    s, y, sty = pair(rng, N)
    with np.errstate(all="ignore"):
        assert H.update(1e160 * s, 1e-160 * y, sty, False) == SKIPPED_INFNAN
    assert H._terms is None and H._H is not None
    np.testing.assert_allclose(H.dense, before, rtol=1e-15)


def test_terms_on_torch_match_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    Hn = BFGSInverseHessian(N, B)
    Ht = BFGSInverseHessian(N, Backend.of(torch.zeros(1, dtype=torch.float64)))
    for _ in range(5):
        s, y, sty = pair(rng, N)
        Hn.update(s, y, sty, False)
        Ht.update(torch.from_numpy(s.copy()), torch.from_numpy(y.copy()), sty, False)
    assert Ht._terms is not None and Ht._in_place_kind == "inplace"
    V = rng.standard_normal((N, 2))
    got = Ht.apply(torch.from_numpy(V.copy()))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), Hn.apply(V), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Ht.state().numpy(), Hn.state(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Ht.state(snapshot=False).numpy(), Hn.state(snapshot=False),
                               rtol=1e-12, atol=1e-12)


def test_rank_two_terms_alone():
    """γI + Σ (s bᵀ + b sᵀ): products and the formed matrix, both layouts of the result."""
    rng = np.random.default_rng(7)
    n, gamma = 40, 0.7
    terms = RankTwoTerms(5, n, B)
    want = gamma * np.eye(n)
    for _ in range(4):
        s, b = rng.standard_normal(n), rng.standard_normal(n)
        terms.append(s, b)
        want += np.outer(s, b) + np.outer(b, s)
    assert len(terms) == 4 and not terms.full
    assert terms.trace(gamma) == pytest.approx(np.trace(want), rel=1e-12)
    for V in (rng.standard_normal(n), rng.standard_normal((n, 2)), rng.standard_normal((n, 7))):
        np.testing.assert_allclose(terms.apply(V, gamma), want @ V, rtol=1e-12, atol=1e-12)
    lower = terms.materialize(gamma, "blas")
    np.testing.assert_allclose(np.tril(lower), np.tril(want), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(terms.materialize(gamma, "inplace"), want, rtol=1e-12, atol=1e-12)


def test_solve_with_terms_matches_the_run_that_forms_the_matrix(monkeypatch):
    """n >= RANK2_MIN_N: the first updates stay terms (no n x n pass before the matrix is
    formed at the capacity, then in place); the run is the in-place run up to rounding."""
    import ncvx_ref.hessian as hessian

    passes = []
    product = hessian.symmetric_product
    monkeypatch.setattr(hessian, "symmetric_product",
                        lambda H, V, **kw: passes.append(1) or product(H, V, **kw))
    fun, x0, _ = eigen_problem(N)
    seen = []

    def callback(state):
        seen.append(state.get_H().shape)  # a snapshot: the terms stay terms
        return False

    with_terms = ncvx_ref.solve(fun, x0, print_level=0, maxit=40, callback=callback)
    assert not passes and len(seen) == 41  # x0 and 40 iterations; 40 updates < 64: no symv
    monkeypatch.setattr(hessian, "term_capacity", lambda n: 0)
    matrix = ncvx_ref.solve(fun, x0, print_level=0, maxit=40)
    assert passes  # the in-place run multiplies by its matrix
    assert with_terms.error is None and matrix.error is None
    assert with_terms.iters == matrix.iters == 40
    assert with_terms.final.f == pytest.approx(matrix.final.f, rel=1e-9)
    np.testing.assert_allclose(with_terms.H_final, matrix.H_final, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(with_terms.H_final, with_terms.H_final.T)


def test_regularized_metric_forms_the_matrix():
    fun, x0, _ = eigen_problem(N, seed=1)
    res = ncvx_ref.solve(fun, x0, print_level=0, maxit=15, regularize_threshold=1e6)
    assert res.error is None and res.iters == 15
    lam = np.linalg.eigvalsh(res.H_final)
    assert lam[0] > 0


def test_H_final_of_a_run_still_in_terms_is_formed_on_first_read(monkeypatch):
    """A short run never allocates n x n unless its caller reads H_final; the first read forms
    the matrix once, and copying, replacing or pickling the result forms it too."""
    import dataclasses
    import pickle

    from ncvx_ref.result import Deferred, Result

    fun, x0, _ = eigen_problem(N, seed=2)
    res = ncvx_ref.solve(fun, x0, print_level=0, maxit=10)
    assert isinstance(res.__dict__["_H_final"], Deferred)  # not formed yet
    H = res.H_final
    assert isinstance(H, np.ndarray) and H.shape == (N, N)
    assert res.H_final is H  # formed once
    np.testing.assert_array_equal(H, H.T)
    monkeypatch.setattr("ncvx_ref.hessian.term_capacity", lambda n: 0)
    matrix = ncvx_ref.solve(fun, x0, print_level=0, maxit=10)
    assert isinstance(matrix.__dict__["_H_final"], np.ndarray)  # formed by the run already
    np.testing.assert_allclose(H, matrix.H_final, rtol=1e-8, atol=1e-10)

    monkeypatch.undo()
    again = ncvx_ref.solve(fun, x0, print_level=0, maxit=10)
    back = pickle.loads(pickle.dumps(again))
    np.testing.assert_array_equal(back.H_final, H)
    third = ncvx_ref.solve(fun, x0, print_level=0, maxit=10)
    replaced = dataclasses.replace(third, history=[])
    np.testing.assert_array_equal(replaced.H_final, H)
    with pytest.raises(TypeError):  # H_final stays a required field
        Result(**{f.name: None for f in dataclasses.fields(Result) if f.name != "H_final"})


def test_granso_soln_has_the_formed_H_final():
    from ncvx_ref.granso import granso

    fun, x0, _ = eigen_problem(N, seed=3)

    def combined(x):  # GRANSO's combined_fn: an absent group as empty arrays
        f, g, _, _, ce, Je = fun(x)
        return f, g, np.array([]), np.array([]), ce, Je

    soln = granso(N, combined, {"x0": x0, "maxit": 5, "print_level": 0})
    assert isinstance(soln.H_final, np.ndarray) and soln.H_final.shape == (N, N)



@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), count=st.integers(0, 6), columns=st.integers(0, 6),
       gamma=st.floats(0.01, 100.0))
def test_rank_two_terms_apply_their_matrix(seed, count, columns, gamma):
    rng = np.random.default_rng(seed)
    n = 24
    terms = RankTwoTerms(6, n, B)
    for _ in range(count):
        terms.append(rng.standard_normal(n), rng.standard_normal(n))
    H = terms.matrix(gamma, "blas")
    np.testing.assert_array_equal(H, H.T)
    V = rng.standard_normal(n if columns == 0 else (n, columns))
    np.testing.assert_allclose(terms.apply(V, gamma), H @ V, rtol=1e-12, atol=1e-12 * max(1.0, gamma))
