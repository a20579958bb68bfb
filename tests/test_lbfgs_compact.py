"""The compact L-BFGS form (ncvx_ref.lbfgs_compact) applies the same operator as the recursion."""
import numpy as np
import pytest

from ncvx_ref.backend import Backend
from ncvx_ref.hessian import LBFGSInverseHessian, _two_loop
from ncvx_ref.lbfgs_compact import COMPACT_MIN_N, CompactPairs


def _pairs(rng, n, count, dtype=np.float64):
    """Pairs with sᵀy > 0, as the method stores them (y a perturbed multiple of s)."""
    out = []
    for _ in range(count):
        s = rng.standard_normal(n).astype(dtype)
        y = (rng.uniform(0.5, 2.0) * s + 0.3 * rng.standard_normal(n)).astype(dtype)
        out.append((s, y, float(s.astype(np.float64) @ y.astype(np.float64))))
    return out


@pytest.mark.parametrize("count", [1, 4, 7, 13])  # below, at and past the capacity of 5
@pytest.mark.parametrize("k", [None, 1, 3, 12])
def test_compact_product_equals_the_two_loop_recursion(count, k):
    rng = np.random.default_rng(count * 31 + (k or 0))
    n, cap, gamma = 300, 5, 0.7
    cp = CompactPairs(cap, n, Backend.of(np.zeros(1)))
    kept = []
    for s, y, sty in _pairs(rng, n, count):
        cp.push(s, y, sty)
        kept = (kept + [(s, y, sty)])[-cap:]
    V = rng.standard_normal(n if k is None else (n, k))
    want = _two_loop([p[0] for p in kept], [p[1] for p in kept], [1.0 / p[2] for p in kept],
                     gamma, None, V)
    got = cp.apply(V, gamma)
    assert got.shape == V.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def test_compact_product_with_no_pairs_is_the_scaled_identity():
    cp = CompactPairs(3, 10, Backend.of(np.zeros(1)))
    V = np.arange(10.0)
    np.testing.assert_array_equal(cp.apply(V, 2.5), 2.5 * V)


def test_compact_product_keeps_float32():
    rng = np.random.default_rng(1)
    n = 200
    cp = CompactPairs(4, n, Backend.of(np.zeros(1, dtype=np.float32)))
    kept = _pairs(rng, n, 6, np.float32)
    for s, y, sty in kept:
        cp.push(s, y, sty)
    V = rng.standard_normal((n, 2)).astype(np.float32)
    got = cp.apply(V, 1.3)
    assert got.dtype == np.float32
    want = _two_loop([p[0] for p in kept[-4:]], [p[1] for p in kept[-4:]],
                     [1.0 / p[2] for p in kept[-4:]], 1.3, None, V.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_lbfgs_uses_the_compact_form_only_for_large_numpy_problems():
    b = Backend.of(np.zeros(1))
    rng = np.random.default_rng(2)
    for n, compact in ((COMPACT_MIN_N - 1, False), (COMPACT_MIN_N, True)):
        H = LBFGSInverseHessian(n, 3, b)
        recursion = LBFGSInverseHessian(n, 3, b)
        for s, y, sty in _pairs(rng, n, 5):
            H.update(s, y, sty, False)
            recursion.update(s.copy(), y.copy(), sty, False)
        assert (H._compact is not None) == compact
        recursion._compact = None  # force the recursion on the same pairs
        recursion._S, recursion._Y = [v.copy() for v in H._S], [v.copy() for v in H._Y]
        V = rng.standard_normal((n, 2))
        np.testing.assert_allclose(H.apply(V), recursion.apply(V), rtol=1e-10, atol=1e-12)
        st = H.state()  # GRANSO's H_final is unchanged by the storage
        assert st["S"].shape == (n, 3) and len(st["rho"]) == 3
        warm = LBFGSInverseHessian(n, 3, b, warm_start=st)
        np.testing.assert_allclose(warm.apply(V), H.apply(V), rtol=1e-12, atol=1e-13)


def test_compact_form_on_torch_tensors_matches_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n = COMPACT_MIN_N
    pairs = _pairs(rng, n, 6)
    Hn = LBFGSInverseHessian(n, 4, Backend.of(np.zeros(1)))
    Ht = LBFGSInverseHessian(n, 4, Backend.of(torch.zeros(1, dtype=torch.float64)))
    for s, y, sty in pairs:
        Hn.update(s, y, sty, False)
        Ht.update(torch.from_numpy(s.copy()), torch.from_numpy(y.copy()), sty, False)
    assert Ht._compact is not None
    V = rng.standard_normal((n, 3))
    got = Ht.apply(torch.from_numpy(V.copy()))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), Hn.apply(V), rtol=1e-12, atol=1e-12)
    assert Ht.state()["S"].shape == (n, 4)


def test_compact_form_under_array_api_strict():
    """Only standard Array-API operations on the device arrays (full indexing, no implicit axes)."""
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(4)
    n = COMPACT_MIN_N
    Hs = LBFGSInverseHessian(n, 3, Backend.of(xps.asarray(np.zeros(1))))
    Hn = LBFGSInverseHessian(n, 3, Backend.of(np.zeros(1)))
    for s, y, sty in _pairs(rng, n, 5):
        Hs.update(xps.asarray(s), xps.asarray(y), sty, False)
        Hn.update(s, y, sty, False)
    assert Hs._compact is not None
    for V in (rng.standard_normal(n), rng.standard_normal((n, 2))):
        np.testing.assert_allclose(np.asarray(Hs.apply(xps.asarray(V))), Hn.apply(V),
                                   rtol=1e-13, atol=1e-13)
    assert tuple(Hs.state()["S"].shape) == (n, 3)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_few_column_products_are_column_major_and_equal_the_wide_form(k):
    """NumPy float64 products with 2-4 columns go column by column (gemv) into a column-major
    result; they must agree with the general (gemm) form to rounding."""
    from ncvx_ref import lbfgs_compact

    rng = np.random.default_rng(k)
    n, cap, gamma = 400, 5, 0.9
    cp = CompactPairs(cap, n, Backend.of(np.zeros(1)))
    for s, y, sty in _pairs(rng, n, 7):
        cp.push(s, y, sty)
    V = rng.standard_normal((n, k))
    got = cp.apply(V, gamma)
    assert got.flags.f_contiguous and got.shape == (n, k)
    lbfgs_compact.GEMV_MAX_COLUMNS, saved = 0, lbfgs_compact.GEMV_MAX_COLUMNS
    try:
        want = cp.apply(V, gamma)
    finally:
        lbfgs_compact.GEMV_MAX_COLUMNS = saved
    assert want.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
