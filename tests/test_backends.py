"""The whole solver runs on any Array-API namespace: array_api_strict proves the core uses nothing else."""
import numpy as np
import pytest

import ncvx_ref

xps = pytest.importorskip("array_api_strict")


def ex2_xp(x):
    """GRANSO's constrained example written with Array-API operations only (namespace of x)."""
    import array_api_compat as aac

    xp = aac.array_namespace(x)
    r = x[0] ** 2 - x[1]
    s = 1.0 if float(r) >= 0 else -1.0
    f = 8 * xp.abs(r) + (1 - x[0]) ** 2
    g = xp.stack([16 * s * x[0] - 2 * (1 - x[0]), xp.asarray(-8 * s, dtype=x.dtype)])
    ci = xp.stack([2 ** 0.5 * x[0] - 1, 2 * x[1] - 1])
    J = xp.asarray([[2 ** 0.5, 0.0], [0.0, 2.0]], dtype=x.dtype)
    return ncvx_ref.Evaluation(f, g, ci, J)


def quadratic_eq_xp(x):
    """min x'Dx s.t. ||x||^2 = 1 (one equality), D = diag(1..n)."""
    import array_api_compat as aac

    xp = aac.array_namespace(x)
    n = x.shape[0]
    D = xp.arange(1, n + 1, dtype=x.dtype)
    f = xp.sum(D * x * x)
    ce = xp.reshape(xp.sum(x * x) - 1, (1,))
    return ncvx_ref.Evaluation(f, 2 * D * x, ce=ce, ce_grad=xp.reshape(2 * x, (n, 1)))


@pytest.mark.parametrize("fun,x0,opts", [
    (ex2_xp, [5.5, 5.5], dict(mu0=100)),
    (ex2_xp, [5.5, 5.5], dict(mu0=100, limited_mem_size=3)),
    (quadratic_eq_xp, [1.0, 0.5, -0.3, 0.2], dict(maxit=60)),
    (quadratic_eq_xp, [1.0, 0.5, -0.3, 0.2], dict(maxit=40, regularize_threshold=1e3)),
    (quadratic_eq_xp, [1.0, 0.5, -0.3, 0.2], dict(maxit=60, qp_warm_start=True)),
    (ex2_xp, [5.5, 5.5], dict(mu0=100, qp_warm_start=True)),
])
def test_array_api_strict_run_matches_numpy(fun, x0, opts):
    ref = ncvx_ref.solve(fun, np.asarray(x0), record_history=True, print_level=0, **opts)
    x0s = xps.asarray(x0, dtype=xps.float64)
    res = ncvx_ref.solve(fun, x0s, record_history=True, print_level=0, **opts)
    assert type(res.final.x) is type(x0s)  # the iterates stay in the caller's namespace
    assert res.termination_code == ref.termination_code
    assert (res.iters, res.fn_evals) == (ref.iters, ref.fn_evals)
    for a, b in zip(res.history, ref.history):
        np.testing.assert_allclose(a.x, b.x, rtol=1e-12, atol=1e-14)
        assert a.mu == b.mu and a.fallback_level == b.fallback_level


def test_float32_run_stays_float32():
    x0 = np.asarray([5.5, 5.5], dtype=np.float32)

    def ex2_32(x):
        ev = ex2_xp(x)
        return ncvx_ref.Evaluation(np.float32(ev.f), ev.f_grad.astype(np.float32), ev.ci.astype(np.float32),
                                   ev.ci_grad.astype(np.float32))

    res = ncvx_ref.solve(ex2_32, x0, mu0=100, print_level=0, opt_tol=1e-4)
    assert res.final.x.dtype == np.float32
    assert abs(res.final.f - (1 - 2 ** -0.5) ** 2) < 1e-3


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_torch_dot_is_array_api_vecdot_bit_for_bit(dtype_name):
    """Backend.dot on torch skips array_api_compat's wrapper around vecdot's one matmul: the
    same value, contiguous or strided, at every size."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp
    from ncvx_ref.backend import Backend

    dtype = getattr(torch, dtype_name)
    backend = Backend.of(torch.zeros(3, dtype=dtype))
    assert backend.torch_namespace
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 17, 100, 4096, 100_000):
        a = torch.randn(2 * n, dtype=dtype, generator=gen)[::2]  # a strided view
        b = torch.randn(n, dtype=dtype, generator=gen)
        assert backend.dot(a, b) == float(xp.vecdot(a, b))
        assert backend.dot(b, b) == float(xp.vecdot(b, b))
