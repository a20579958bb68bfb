"""The full-BFGS update made in place (n >= RANK2_MIN_N): BLAS on NumPy, addr_ on torch, row blocks."""
import math

import numpy as np
import pytest

from ncvx_ref.backend import Backend
from ncvx_ref.bfgs_kernels import RANK2_MIN_N, bfgs_matrix
from ncvx_ref.hessian import SKIPPED_INFNAN, UPDATED, BFGSInverseHessian

from full_bfgs_helpers import pair, update_then_skip_an_inf

B = Backend.of(np.zeros(1))
N = RANK2_MIN_N

pytestmark = pytest.mark.usefixtures("matrix_from_the_first_update")  # the n x n matrix path


def _reference(H, s, y, sty):
    """The spec's elementwise update (§11.2), as the small-n path computes it."""
    rho = 1.0 / sty
    Hy = H @ y
    u = rho * Hy
    kappa = max(rho * rho * float(y @ Hy) + rho, 0.0)
    return bfgs_matrix(H, u, s, math.sqrt(kappa) * s, B)


@pytest.mark.parametrize("start", ["identity", "user_H0"])
def test_rank2_updates_match_the_elementwise_form_and_leave_H0_alone(start):
    rng = np.random.default_rng(0)
    H0 = None
    if start == "user_H0":
        A = rng.standard_normal((N, N)) / math.sqrt(N)
        H0 = A @ A.T + np.eye(N)
        H0_before = H0.copy()
    H = BFGSInverseHessian(N, B, H0=H0, scaleH0=False)
    ref = np.eye(N) if H0 is None else H0.copy()
    for _ in range(4):
        s, y, sty = pair(rng, N)
        assert H.update(s, y, sty, False) == UPDATED
        ref = _reference(ref, s, y, sty)
        np.testing.assert_allclose(H.dense, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    if H0 is not None:
        np.testing.assert_array_equal(H0, H0_before)  # the user's array is never written to


def test_state_is_a_snapshot_and_metric_array_is_new_per_update():
    rng = np.random.default_rng(1)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    snap = H.state()
    view = H.metric_array()
    assert H.metric_array() is view  # one object per generation
    H.update(*pair(rng, N), False)
    assert not np.array_equal(snap, H.dense)  # the snapshot did not follow the update
    assert H.metric_array() is not view
    np.testing.assert_array_equal(H.metric_array(), H.dense)


def test_rank2_update_with_inf_is_skipped_and_keeps_H():
    H = BFGSInverseHessian(N, B)
    before = update_then_skip_an_inf(H, np.random.default_rng(2), N)
    np.testing.assert_array_equal(H.dense, before)


def test_rank2_update_that_overflows_is_skipped_and_keeps_H():
    rng = np.random.default_rng(3)
    H0 = 1e307 * np.eye(N)  # finite, but the update's entries pass the largest double
    H = BFGSInverseHessian(N, B, H0=H0, scaleH0=False)
    s, y, sty = pair(rng, N)
    with np.errstate(all="ignore"):
        assert _reference(H0, s, y, sty) is None  # the elementwise form overflows too
        assert H.update(s, y, sty, False) == SKIPPED_INFNAN
    np.testing.assert_array_equal(H.dense, H0)


@pytest.mark.parametrize("shape", [(N,), (N, 1), (N, 3), (N, 8)])
def test_products_on_the_rank2_path_equal_the_dense_product(shape):
    rng = np.random.default_rng(4)
    H = BFGSInverseHessian(N, B)
    for _ in range(3):
        H.update(*pair(rng, N), False)
    V = rng.standard_normal(shape)
    got = H.apply(V)
    assert got.shape == V.shape
    want = H.dense @ V
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_final_state_hands_over_the_live_array():
    rng = np.random.default_rng(5)
    H = BFGSInverseHessian(N, B)
    H.update(*pair(rng, N), False)
    assert H.state(snapshot=False) is H.dense
    assert H.state() is not H.dense


def test_torch_updates_in_place_and_match_the_elementwise_form():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    A = rng.standard_normal((N, N)) / math.sqrt(N)
    H0 = A @ A.T + np.eye(N)
    H0_t = torch.from_numpy(H0.copy())
    H = BFGSInverseHessian(N, Backend.of(torch.zeros(1, dtype=torch.float64)), H0=H0_t, scaleH0=False)
    ref = H0.copy()
    for i in range(3):
        s, y, sty = pair(rng, N)
        assert H.update(torch.from_numpy(s), torch.from_numpy(y), sty, False) == UPDATED
        ref = _reference(ref, s, y, sty)
        if i == 0:
            live = H.dense
        else:
            assert H.dense is live  # updated in place: no new n x n array per update
    np.testing.assert_allclose(H.dense.numpy(), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    np.testing.assert_array_equal(H0_t.numpy(), H0)  # the user's tensor is never written to
    snap = H.state()
    assert isinstance(snap, torch.Tensor) and snap is not H.dense
    H.update(*(torch.from_numpy(v) if isinstance(v, np.ndarray) else v for v in pair(rng, N)), False)
    assert not torch.equal(snap, H.dense)


def test_generic_in_place_blocks_match_one_shot(monkeypatch):
    """The row-block in-place update (the CuPy path), run here on NumPy arrays."""
    import ncvx_ref.bfgs_kernels as bk
    rng = np.random.default_rng(7)
    n = 37
    H = rng.standard_normal((n, n))
    s, b = rng.standard_normal(n), rng.standard_normal(n)
    want = H + np.outer(s, b) + np.outer(b, s)
    monkeypatch.setattr(bk, "RANK2_BLOCK_ELEMENTS", 5 * n)  # several blocks, a short last one
    got = bk.add_symmetric_rank2(H.copy(), s, b, "inplace")
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_float32_torch_update_that_overflows_is_skipped(monkeypatch):
    """The overflow bound follows the dtype: float32 overflows near 3.4e38, not 1.8e308.

    ``y`` nearly orthogonal to ``s`` (small ``sᵀy``) makes the update grow ``H`` ~1e4-fold while
    every vector it is built from stays finite, so the overflow is met in the matrix itself."""
    torch = pytest.importorskip("torch")
    import ncvx_ref.hessian as hs

    calls = []
    real = hs.add_symmetric_rank2
    monkeypatch.setattr(hs, "add_symmetric_rank2", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(8)
    s = rng.standard_normal(N)
    z = rng.standard_normal(N)
    y = 1e-3 * s + (z - (z @ s) / (s @ s) * s)
    s_t, y_t = torch.from_numpy(s.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    H0 = torch.eye(N, dtype=torch.float32) * 1e35
    H = BFGSInverseHessian(N, Backend.of(torch.zeros(1, dtype=torch.float32)), H0=H0.clone(),
                           scaleH0=False)
    assert H.update(s_t, y_t, float(s_t @ y_t), False) == SKIPPED_INFNAN
    assert calls, "the vectors overflowed already: the test does not reach the matrix"
    assert torch.equal(H.dense, H0)


def test_snapshot_taken_before_the_first_in_place_update_does_not_change():
    """A Fortran-ordered H0 takes the elementwise form once (new C-ordered array), then the
    in-place form: a get_H() snapshot taken in between must not follow the next update."""
    rng = np.random.default_rng(9)
    H = BFGSInverseHessian(N, B, H0=np.asfortranarray(np.eye(N)), scaleH0=False)
    H.update(*pair(rng, N), False)
    assert H._in_place_kind is None
    snap = H.state()
    before = snap.copy()
    H.update(*pair(rng, N), False)
    assert H._in_place_kind == "blas"
    np.testing.assert_array_equal(snap, before)


def test_state_snapshot_under_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(10)
    H = BFGSInverseHessian(N, Backend.of(xps.asarray(np.zeros(1))))
    s, y, sty = pair(rng, N)
    H.update(xps.asarray(s), xps.asarray(y), sty, False)
    assert tuple(H.state().shape) == (N, N)


def test_blas_updates_write_the_lower_triangle_and_reads_see_the_whole_matrix():
    """syr2 leaves the upper triangle stale; every whole-matrix read refreshes it first."""
    from ncvx_ref.bfgs_kernels import symmetrize_lower

    rng = np.random.default_rng(11)
    H = BFGSInverseHessian(N + 300, B)  # more than one symmetrization block
    for _ in range(3):
        H.update(*pair(rng, N + 300), False)
    raw = H._H.copy()
    assert H._lower_only and not np.array_equal(raw, raw.T)
    V = rng.standard_normal((N + 300, 7))
    wide = H.apply(V)  # symm on the lower triangle, no refresh needed
    assert H._lower_only
    snap = H.state()
    np.testing.assert_array_equal(snap, snap.T)
    np.testing.assert_array_equal(np.tril(snap), np.tril(raw))
    np.testing.assert_allclose(wide, snap @ V, rtol=0, atol=1e-12 * np.abs(snap @ V).max())
    M = np.tril(rng.standard_normal((5, 5)))
    symmetrize_lower(M)
    np.testing.assert_array_equal(M, M.T)


def test_scaled_identity_has_the_values_of_eye_times_gamma():
    from ncvx_ref.bfgs_kernels import scaled_identity

    for gamma in (0.37, 1e-300, 3.0):
        got = scaled_identity(7, gamma, B)
        np.testing.assert_array_equal(got, np.eye(7) * gamma)
        assert got.flags.c_contiguous and not np.signbit(got).any()


def test_a_product_with_a_non_blas_operand_reads_the_whole_matrix():
    """A float32 (or other non-BLAS) right-hand side on the syr2 path is multiplied by the
    whole H, refreshed once, not by a matrix with a stale upper triangle."""
    rng = np.random.default_rng(12)
    H = BFGSInverseHessian(N, B)
    for _ in range(3):
        H.update(*pair(rng, N), False)
    assert H._lower_only
    V = rng.standard_normal((N, 2)).astype(np.float32)
    got = H.apply(V)
    assert not H._lower_only  # refreshed, and the owner knows it
    full = H.dense
    np.testing.assert_array_equal(full, full.T)
    np.testing.assert_allclose(got, full @ V, rtol=1e-6, atol=1e-6 * np.abs(full @ V).max())
