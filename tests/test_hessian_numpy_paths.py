"""The NumPy fast paths of the (L-)BFGS inverse Hessians give the generic code's bits exactly.

``_two_loop_numpy`` (in-place, column-wise two-loop recursion) must equal ``_two_loop`` and
the blocked ``bfgs_matrix`` the spec's elementwise expression, bit for bit (signed zeros
included), since the iterates of every NumPy run depend on them.
"""
import numpy as np
import pytest

from ncvx_ref import bfgs_kernels
from ncvx_ref.backend import Backend
from ncvx_ref.bfgs_kernels import bfgs_matrix
from ncvx_ref.hessian import (BFGSInverseHessian, LBFGSInverseHessian, _two_loop,
                              _two_loop_numpy)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def lbfgs(n, pairs, rng, dtype=np.float64, H0=None, m=5):
    H = LBFGSInverseHessian(n, m, Backend.of(np.zeros(1, dtype=dtype)), H0=H0)
    for _ in range(pairs):
        s = rng.standard_normal(n).astype(dtype)
        y = (s + 0.3 * rng.standard_normal(n)).astype(dtype)
        assert H.update(s, y, float(s @ y), False) in (0, 1)
    return H


@pytest.mark.parametrize("k", [None, 1, 2, 3, 8, 9, 31])
@pytest.mark.parametrize("pairs", [1, 5, 7])
def test_two_loop_numpy_equals_generic(k, pairs):
    rng = np.random.default_rng(k or 0)
    n = 57
    H = lbfgs(n, pairs, rng)
    V = rng.standard_normal(n if k is None else (n, k))
    V[3] = 0.0  # zero rows: signed zeros must come out the same
    fast = _two_loop_numpy(H._S, H._Y, H._rho, H.gamma, None, V)
    assert same_bits(fast, _two_loop(H._S, H._Y, H._rho, H.gamma, None, V))
    assert same_bits(H.apply(V), fast)
    assert same_bits(V, V.copy())  # the input is not written


def test_two_loop_numpy_with_H0_and_float32():
    rng = np.random.default_rng(7)
    n = 20
    A = rng.standard_normal((n, n))
    H0 = A @ A.T / n + np.eye(n)
    H = lbfgs(n, 4, rng, H0=H0)
    V = rng.standard_normal((n, 4))
    assert same_bits(H.apply(V), _two_loop(H._S, H._Y, H._rho, H.gamma, H0, V))
    H32 = lbfgs(n, 3, rng, dtype=np.float32)
    V32 = rng.standard_normal((n, 2)).astype(np.float32)
    out = H32.apply(V32)
    assert out.dtype == np.float32
    assert same_bits(out, _two_loop(H32._S, H32._Y, H32._rho, H32.gamma, None, V32))


def test_two_loop_non_contiguous_input_uses_the_generic_path():
    rng = np.random.default_rng(3)
    H = lbfgs(30, 3, rng)
    V = np.asfortranarray(rng.standard_normal((30, 4)))
    assert same_bits(H.apply(V), _two_loop(H._S, H._Y, H._rho, H.gamma, None, V))


def spec_update(H, u, s, w):
    return (H - (s[:, None] * u[None, :] + u[:, None] * s[None, :])) + w[:, None] * w[None, :]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 130, 300])  # n <= 4: the Python-float path
def test_blocked_bfgs_update_equals_the_spec_expression(n, monkeypatch):
    monkeypatch.setattr(bfgs_kernels, "BLOCK_ELEMENTS", 1000)  # several blocks, a partial last one
    rng = np.random.default_rng(n)
    b = Backend.of(np.zeros(1))
    A = rng.standard_normal((n, n))
    H = A @ A.T
    u, s, w = rng.standard_normal((3, n))
    s[0] = 0.0
    assert same_bits(bfgs_matrix(H, u, s, w, b), spec_update(H, u, s, w))
    for gamma in (1.0, 0.37):  # a scaled identity, never formed
        assert same_bits(bfgs_matrix(None, u, s, w, b, identity_scale=gamma),
                         spec_update(gamma * np.eye(n), u, s, w))


@pytest.mark.parametrize("n", [3, 50])
def test_blocked_bfgs_update_reports_inf_and_nan(n):
    b = Backend.of(np.zeros(1))
    u, s, w = np.ones((3, n))
    for bad in (np.inf, np.nan):
        w2 = w.copy()
        w2[-1] = bad
        assert bfgs_matrix(np.eye(n), u, s, w2, b) is None
        assert bfgs_matrix(None, u, s, w2, b, identity_scale=1.0) is None


def test_first_full_bfgs_update_from_the_identity_matches_a_formed_H0():
    rng = np.random.default_rng(11)
    n = 40
    b = Backend.of(np.zeros(1))
    implicit = BFGSInverseHessian(n, b)  # H0 = I held as a scalar, scaled at the first update
    formed = BFGSInverseHessian(n, b, H0=np.eye(n))
    for _ in range(3):
        s = rng.standard_normal(n)
        y = s + 0.2 * rng.standard_normal(n)
        assert implicit.update(s, y, float(s @ y), False) == formed.update(s, y, float(s @ y), False)
        assert same_bits(implicit.state(), formed.state())
