"""CPU torch runs go through the core on NumPy views (ncvx_ref/host_views.py); the user sees torch."""
import numpy as np
import pytest

import ncvx_ref
from ncvx_ref import host_views
from ncvx_ref.bfgs_kernels import RANK2_MIN_N
from ncvx_ref.evaluator import ProblemDefinitionError

from test_backends import ex2_xp, quadratic_eq_xp

torch = pytest.importorskip("torch")


@pytest.fixture(params=[True, False], ids=["views", "torch-core"])
def views_enabled(request, monkeypatch):
    """Both routes of a CPU torch run: NumPy views (the default) and the core on torch tensors
    (the CUDA route, kept covered on machines without a GPU)."""
    monkeypatch.setattr(host_views, "ENABLED", request.param)
    return request.param


CASES = [
    (ex2_xp, [5.5, 5.5], dict(mu0=100)),
    (ex2_xp, [5.5, 5.5], dict(mu0=100, limited_mem_size=3)),
    (quadratic_eq_xp, [1.0, 0.5, -0.3, 0.2], dict(maxit=60)),
    (quadratic_eq_xp, list(np.linspace(1.0, -1.0, RANK2_MIN_N)), dict(maxit=15)),  # in-place rank-2
]


@pytest.mark.parametrize("fun,x0,opts", CASES)
def test_torch_run_matches_numpy_and_stays_torch(views_enabled, fun, x0, opts):
    ref = ncvx_ref.solve(fun, np.asarray(x0), print_level=0, **opts)
    x0t = torch.tensor(x0, dtype=torch.float64)
    seen = []
    res = ncvx_ref.solve(fun, x0t, print_level=0, callback=lambda s: seen.append(s) and False,
                         **opts)
    assert res.termination_code == ref.termination_code
    assert (res.iters, res.fn_evals) == (ref.iters, ref.fn_evals)
    if views_enabled:  # NumPy's own run, bit for bit
        assert res.final.x.numpy().tobytes() == ref.final.x.tobytes()
    else:  # torch's kernels round differently; the nonsmooth runs end within opt_tol alike
        np.testing.assert_allclose(res.final.x.numpy(), ref.final.x, rtol=1e-7, atol=1e-10)
    for point in (res.final, res.best, res.most_feasible):
        assert point is None or isinstance(point.x, torch.Tensor)
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float64
    H = res.H_final
    assert all(isinstance(a, torch.Tensor) for a in (H.values() if isinstance(H, dict) else [H])
               if hasattr(a, "shape"))
    state = seen[-1]
    assert isinstance(state.x, torch.Tensor) and isinstance(state.point.f_grad, torch.Tensor)
    assert isinstance(state.direction, torch.Tensor) and isinstance(state.stat_vec, torch.Tensor)


def test_the_function_gets_torch_and_the_core_numpy():
    """With views, the user's x is a torch view of the core's NumPy array (no copy)."""
    types = []

    def fun(x):
        types.append(type(x))
        return ex2_xp(x)

    res = ncvx_ref.solve(fun, torch.tensor([5.5, 5.5], dtype=torch.float64), mu0=100,
                         print_level=0, maxit=5, record_history=True)
    assert set(types) == {torch.Tensor}
    assert isinstance(res.history[-1].x, np.ndarray)  # history: NumPy copies on every backend


def test_float32_torch_run_stays_float32(views_enabled):
    def ex2_32(x):
        ev = ex2_xp(x)
        return ncvx_ref.Evaluation(ev.f, ev.f_grad, ev.ci, ev.ci_grad.to(torch.float32))

    res = ncvx_ref.solve(ex2_32, torch.tensor([5.5, 5.5], dtype=torch.float32), mu0=100,
                         print_level=0, opt_tol=1e-4)
    assert res.final.x.dtype == torch.float32
    assert abs(res.final.f - (1 - 2 ** -0.5) ** 2) < 1e-3


@pytest.mark.parametrize("bad, match", [
    (lambda ev: ev.f_grad.numpy(), "f_grad is a numpy array but x0 is a torch tensor"),
    (lambda ev: ev.f_grad.to(torch.float32), "f_grad has dtype torch.float32 but x0 has dtype"),
])
def test_outputs_of_another_namespace_or_dtype_are_named(bad, match):
    def fun(x):
        ev = ex2_xp(x)
        return ncvx_ref.Evaluation(ev.f, bad(ev), ev.ci, ev.ci_grad)

    with pytest.raises(ProblemDefinitionError, match=match):
        ncvx_ref.solve(fun, torch.tensor([5.5, 5.5], dtype=torch.float64), print_level=0)


@pytest.mark.parametrize("as_number", [float, np.float64, lambda f: f.to(torch.float32)])
def test_the_objective_is_read_as_a_number(views_enabled, as_number):
    """As on every backend, f may be a Python or NumPy number or a tensor of another dtype."""
    def fun(x):
        ev = ex2_xp(x)
        return ncvx_ref.Evaluation(as_number(ev.f), ev.f_grad, ev.ci, ev.ci_grad)

    res = ncvx_ref.solve(fun, torch.tensor([5.5, 5.5], dtype=torch.float64), mu0=100,
                         print_level=0, maxit=10)
    assert res.iters == 10 and isinstance(res.x, torch.Tensor)


def test_tensor_H0_and_warm_start_from_a_torch_result(views_enabled):
    x0 = torch.tensor([1.0, 0.5, -0.3, 0.2], dtype=torch.float64)
    first = ncvx_ref.solve(quadratic_eq_xp, x0, maxit=5, print_level=0,
                           H0=2.0 * torch.eye(4, dtype=torch.float64))
    again = ncvx_ref.solve(quadratic_eq_xp, first.final.x, maxit=60, print_level=0,
                           H0=first.H_final, scaleH0=False)
    lbfgs = ncvx_ref.solve(quadratic_eq_xp, x0, maxit=5, print_level=0, limited_mem_size=3)
    warm = ncvx_ref.solve(quadratic_eq_xp, lbfgs.final.x, maxit=60, print_level=0,
                          limited_mem_size=3, limited_mem_warm_start=lbfgs.H_final)
    for res in (again, warm):
        assert res.termination_code == 0 and isinstance(res.x, torch.Tensor)
        assert abs(res.fun - 1.0) < 1e-6  # the smallest entry of D = diag(1..4)


def test_interrupted_run_keeps_its_best_point_as_torch():
    calls = [0]

    def fun(x):
        calls[0] += 1
        if calls[0] == 30:
            raise KeyboardInterrupt
        return ex2_xp(x)

    with pytest.raises(KeyboardInterrupt) as info:
        ncvx_ref.solve(fun, torch.tensor([5.5, 5.5], dtype=torch.float64), mu0=100, print_level=0)
    partial = info.value.ncvx_result
    assert isinstance(partial.final.x, torch.Tensor)
    assert isinstance(partial.most_feasible.x, torch.Tensor)
    assert partial.iters >= 1 and partial.most_feasible.tv < 10.0  # progress kept (tv(x0) = 10)


def test_deferred_H_final_is_formed_on_read_as_torch(monkeypatch):
    """A short full-BFGS run at n >= 512 ends with rank-2 terms: H_final formed on first read."""
    from ncvx_ref.result import Deferred

    n = 600
    x0 = torch.linspace(1.0, -1.0, n, dtype=torch.float64)
    res = ncvx_ref.solve(quadratic_eq_xp, x0, maxit=3, print_level=0)
    assert isinstance(res.__dict__["_H_final"], Deferred)
    H = res.H_final
    assert isinstance(H, torch.Tensor) and H.shape == (n, n)
    assert not isinstance(res.__dict__["_H_final"], Deferred)


def test_dtypes_numpy_lacks_keep_the_torch_core():
    assert host_views.TorchViews.of(torch.zeros(3, dtype=torch.bfloat16)) is None
    assert host_views.TorchViews.of(torch.zeros(3, dtype=torch.float32)) is not None
    assert host_views.TorchViews.of(np.zeros(3)) is None
