"""The compact L-BFGS form (ncvx_ref.lbfgs_compact): the recursion's operator, kept inner products, implicit QP products and the Rayleigh bound."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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


@pytest.mark.usefixtures("bound_at_any_size")
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
    # the large-n iteration's paths: kept inner products, implicit products, the Rayleigh bound
    g, J = V[:, 0].copy(), V[:, 1:].copy()
    gt, Jt = torch.from_numpy(g), torch.from_numpy(J)
    for _ in range(2):  # the second call reuses the kept inner products
        for a, b in zip(Ht.apply_each([gt, Jt]), Hn.apply_each([g, J])):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-12)
    pt, pn = Ht.implicit([gt, Jt]), Hn.implicit([g, J])
    np.testing.assert_allclose(pt.gram(), pn.gram(), rtol=1e-12, atol=1e-12)
    y = np.array([0.5, -1.0, 2.0])
    dt = pt.times(y)
    assert isinstance(dt, torch.Tensor)
    np.testing.assert_allclose(dt.numpy(), pn.times(y), rtol=1e-12, atol=1e-12)
    assert Hn.rayleigh_bound() is not None
    assert Ht.rayleigh_bound() == pytest.approx(Hn.rayleigh_bound(), rel=1e-12)


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
    g, J = rng.standard_normal(n), rng.standard_normal((n, 2))
    gs, Js = xps.asarray(g), xps.asarray(J)
    for _ in range(2):  # the second call reuses the kept inner products
        for a, b in zip(Hs.apply_each([gs, Js]), Hn.apply_each([g, J])):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)
    ps, pn = Hs.implicit([gs, Js]), Hn.implicit([g, J])
    np.testing.assert_allclose(ps.gram(), pn.gram(), rtol=1e-12, atol=1e-12)
    y = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(np.asarray(ps.times(y)), pn.times(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_few_column_products_are_column_major_and_equal_the_wide_form(k):
    """NumPy float64 products with 2-4 columns go column by column (gemv) into a column-major
    result; they must agree with the general (gemm) form to rounding."""
    from ncvx_ref import thin_products

    rng = np.random.default_rng(k)
    n, cap, gamma = 400, 5, 0.9
    cp = CompactPairs(cap, n, Backend.of(np.zeros(1)))
    for s, y, sty in _pairs(rng, n, 7):
        cp.push(s, y, sty)
    V = rng.standard_normal((n, k))
    got = cp.apply(V, gamma)
    assert got.flags.f_contiguous and got.shape == (n, k)
    thin_products.GEMV_MAX_COLUMNS, saved = 0, thin_products.GEMV_MAX_COLUMNS
    try:
        want = cp.apply(V, gamma)
    finally:
        thin_products.GEMV_MAX_COLUMNS = saved
    assert want.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


# --------------------------------------------------------------------------- kept inner products,
# implicit products and the Rayleigh bound (the large-n iteration's passes over the pairs)
def _filled(rng, n=300, cap=4, count=3, gamma=0.8):
    cp = CompactPairs(cap, n, Backend.of(np.zeros(1)))
    for s, y, sty in _pairs(rng, n, count):
        cp.push(s, y, sty)
    return cp, gamma


def _dense(cp, gamma):
    n = cp.P.shape[1]
    return cp.apply(np.eye(n), gamma)


def test_kept_inner_products_follow_the_pushes(monkeypatch):
    """After a push only the new pair is dotted with a kept array; the products equal fresh
    ones, through the wrap-around of the buffer."""
    rng = np.random.default_rng(10)
    cp, gamma = _filled(rng)
    g, J = rng.standard_normal(300), rng.standard_normal((300, 2))
    full_passes = []
    inner = CompactPairs._inner
    monkeypatch.setattr(CompactPairs, "_inner", lambda self, V: full_passes.append(1) or inner(self, V))
    for step in range(6):  # capacity 4: the oldest slots are overwritten
        got = cp.apply_each([g, J], gamma)
        for v, hv in zip((g, J), got):
            np.testing.assert_allclose(hv, cp.apply(v, gamma), rtol=1e-12, atol=1e-12)
        s, y, sty = _pairs(rng, 300, 1)[0]
        cp.push(s, y, sty)
    # two fresh passes for the first call, the rest from the assertions' own apply calls
    assert len(full_passes) == 2 + 2 * 6


def test_a_kept_array_rewritten_in_place_is_dotted_again():
    rng = np.random.default_rng(11)
    cp, gamma = _filled(rng)
    g = rng.standard_normal(300)
    cp.apply_each([g], gamma)
    g[:] = rng.standard_normal(300)  # the same buffer, new content
    np.testing.assert_allclose(cp.apply_each([g], gamma)[0], cp.apply(g, gamma), rtol=1e-12)


def test_idle_kept_arrays_are_dropped():
    from ncvx_ref.lbfgs_compact import MAX_IDLE_PUSHES

    rng = np.random.default_rng(12)
    cp, gamma = _filled(rng)
    cp.apply_each([rng.standard_normal(300)], gamma)
    for s, y, sty in _pairs(rng, 300, MAX_IDLE_PUSHES):
        cp.push(s, y, sty)
    assert len(cp._known) == 1
    s, y, sty = _pairs(rng, 300, 1)[0]
    cp.push(s, y, sty)
    assert len(cp._known) == 0


@pytest.mark.parametrize("wide", [2, 9])  # columns dotted pairwise, or one product
def test_implicit_product_gives_the_gram_and_combinations_of_the_explicit_one(wide):
    rng = np.random.default_rng(13)
    cp, gamma = _filled(rng, count=6)
    arrays = [rng.standard_normal((300, 1)), rng.standard_normal(300), rng.standard_normal((300, wide))]
    A = np.concatenate([a.reshape(300, -1) for a in arrays], axis=1)
    HA = cp.apply(A, gamma)
    prod = cp.implicit(arrays, gamma)
    np.testing.assert_allclose(prod.plain_gram(), A.T @ A, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(prod.gram(), A.T @ HA, rtol=1e-11, atol=1e-10)
    y = rng.standard_normal(A.shape[1])
    np.testing.assert_allclose(prod.times(y), HA @ y, rtol=1e-11, atol=1e-11)


@pytest.fixture
def bound_at_any_size(monkeypatch):
    """The bound's size gate off: its value is checked on matrices small enough to form."""
    monkeypatch.setattr("ncvx_ref.lbfgs_compact.BOUND_MIN_ENTRIES", 0)


def test_rayleigh_bound_is_left_to_H_s_where_that_is_cheaper():
    from ncvx_ref.lbfgs_compact import BOUND_MIN_ENTRIES

    rng = np.random.default_rng(17)
    cp, gamma = _filled(rng, n=300, count=3)
    assert 3 * 300 < BOUND_MIN_ENTRIES and cp.rayleigh_bound(gamma) is None
    big = CompactPairs(4, BOUND_MIN_ENTRIES, Backend.of(np.zeros(1)))
    for s, y, sty in _pairs(rng, BOUND_MIN_ENTRIES, 1):
        big.push(s, y, sty)
    assert big.rayleigh_bound(gamma) is not None


@pytest.mark.usefixtures("bound_at_any_size")
@pytest.mark.parametrize("count", [1, 3, 6])
@pytest.mark.parametrize("gamma", [0.05, 1.0, 20.0])
def test_rayleigh_bound_is_at_least_the_largest_eigenvalue(count, gamma):
    rng = np.random.default_rng(count)
    cp, _ = _filled(rng, n=60, cap=4, count=count)
    lam_max = np.linalg.eigvalsh((_dense(cp, gamma) + _dense(cp, gamma).T) / 2)[-1]
    bound = cp.rayleigh_bound(gamma)
    assert bound >= lam_max


@pytest.mark.usefixtures("bound_at_any_size")
def test_rayleigh_bound_is_withheld_when_R_is_ill_conditioned():
    rng = np.random.default_rng(14)
    n = 60
    cp = CompactPairs(4, n, Backend.of(np.zeros(1)))
    s1 = rng.standard_normal(n)
    cp.push(s1, s1 + 0.1 * rng.standard_normal(n), 1.0)
    s2 = rng.standard_normal(n)
    y2 = rng.standard_normal(n)
    y2 -= (y2 @ s2) / (s2 @ s2) * s2 - 1e-12 * s2  # sᵀy tiny next to the other entries of R
    cp.push(s2, y2, float(s2 @ y2))
    assert cp.rayleigh_bound(1.0) is None


def test_large_lbfgs_run_with_implicit_products_matches_the_explicit_run(monkeypatch):
    """n >= COMPACT_MIN_N: the QPs use H A implicitly and damping skips H s by the bound; the
    first iterations are those of the run that forms every product, to rounding, with about
    half the passes over the stored pairs."""
    import ncvx_ref
    from ncvx_ref import regularization

    n = COMPACT_MIN_N
    rng = np.random.default_rng(15)
    a = rng.standard_normal(n)

    def fun(x):  # the L-BFGS benchmark problem
        r = x - a
        J = np.stack([np.ones(n), (2.0 / n) * x], axis=1)
        return (0.5 * r @ r + np.abs(x).sum(), r + np.sign(x),
                np.array([x.sum() - 1.0, x @ x / n - 0.05]), J, None, None)

    passes = []
    inner, finish = CompactPairs._inner, CompactPairs._finish
    monkeypatch.setattr(CompactPairs, "_inner", lambda self, V: passes.append(1) or inner(self, V))
    monkeypatch.setattr(CompactPairs, "_finish",
                        lambda self, PV, V, g: passes.append(1) or finish(self, PV, V, g))
    fast = ncvx_ref.solve(fun, a.copy(), maxit=5, limited_mem_size=5, print_level=0)
    fast_passes, passes[:] = len(passes), []
    made = regularization.make_qp_metric
    monkeypatch.setattr(regularization, "make_qp_metric",
                        lambda H, t, l: regularization.QPMetric(apply=made(H, t, l).apply))
    monkeypatch.setattr("ncvx_ref.solver.make_qp_metric", regularization.make_qp_metric)
    monkeypatch.setattr(LBFGSInverseHessian, "rayleigh_bound", lambda self: None)
    plain = ncvx_ref.solve(fun, a.copy(), maxit=5, limited_mem_size=5, print_level=0)
    assert fast.error is None and plain.error is None and fast.iters == plain.iters == 5
    np.testing.assert_allclose(fast.final.x, plain.final.x, rtol=1e-9, atol=1e-12)
    assert fast.final.f == pytest.approx(plain.final.f, rel=1e-12)
    assert fast_passes < 0.6 * len(passes)


def _l1_problem(n, xp, a):
    """The L-BFGS benchmark problem in namespace ``xp`` (``a`` on the run's device)."""
    ones = xp.ones_like(a)

    def fun(x):
        r = x - a
        J = xp.stack([ones, (2.0 / n) * x], axis=1)
        return (0.5 * xp.sum(r * r) + xp.sum(xp.abs(x)), r + xp.sign(x),
                xp.stack([xp.sum(x) - 1.0, xp.sum(x * x) / n - 0.05]), J, None, None)
    return fun


@pytest.mark.gpu
@pytest.mark.parametrize("memory", [5, 0])  # compact L-BFGS; full BFGS on the in-place rank-2 path
def test_gpu_large_n_paths_on_cuda_match_numpy(memory):
    """The large-n paths on torch CUDA (kept and implicit products, the Rayleigh bound for
    L-BFGS; in-place updates and kept products for full BFGS) give NumPy's first iterations."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    import ncvx_ref

    n = COMPACT_MIN_N if memory else 1024
    a = np.random.default_rng(16).standard_normal(n)
    on_cpu = ncvx_ref.solve(_l1_problem(n, np, a), a.copy(), maxit=5, limited_mem_size=memory,
                            print_level=0)
    ad = torch.from_numpy(a).cuda()
    on_gpu = ncvx_ref.solve(_l1_problem(n, torch, ad), ad.clone(), maxit=5,
                            limited_mem_size=memory, print_level=0)
    assert on_cpu.error is None and on_gpu.error is None and on_gpu.iters == on_cpu.iters == 5
    assert on_gpu.final.x.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.final.x.cpu().numpy(), on_cpu.final.x, rtol=1e-8, atol=1e-10)
    if not memory:  # full BFGS ended in rank-2 terms: H_final is formed on this first read
        H = on_gpu.H_final
        assert H.device.type == "cuda" and tuple(H.shape) == (n, n)
        np.testing.assert_allclose(H.cpu().numpy(), on_cpu.H_final, rtol=1e-8, atol=1e-10)



@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), count=st.integers(1, 7), log_gamma=st.floats(-3.0, 3.0),
       spread=st.floats(0.05, 5.0))
def test_rayleigh_bound_holds_for_random_pairs(seed, count, log_gamma, spread):
    """The bound is at least the largest eigenvalue of the operator the products apply, or
    withheld; pairs with sᵀy > 0 of varied curvature."""
    rng = np.random.default_rng(seed)
    n = 30
    cp = CompactPairs(4, n, Backend.of(np.zeros(1)))
    for _ in range(count):
        s = rng.standard_normal(n)
        y = rng.uniform(0.1, 1.0 + spread) * s + spread * rng.standard_normal(n)
        sty = float(s @ y)
        if sty > 0:
            cp.push(s, y, sty)
    gamma = 10.0 ** log_gamma
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ncvx_ref.lbfgs_compact.BOUND_MIN_ENTRIES", 0)
        bound = cp.rayleigh_bound(gamma)
    if bound is None:  # R ill-conditioned (never in 300 draws of these pairs)
        return
    H = cp.apply(np.eye(n), gamma)
    assert bound >= np.linalg.eigvalsh((H + H.T) / 2)[-1]
