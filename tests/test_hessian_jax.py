"""The jit-compiled L-BFGS two-loop recursion used on JAX arrays (ncvx_ref.hessian._two_loop_jax):
the generic recursion's values; zero-pair padding changes nothing beyond rounding."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from ncvx_ref.hessian import _two_loop, _two_loop_jax  # noqa: E402


def pairs(rng, p, n):
    S = [rng.standard_normal(n) for _ in range(p)]
    Y = [s + 0.3 * rng.standard_normal(n) for s in S]
    rho = [1.0 / float(s @ y) for s, y in zip(S, Y)]
    return S, Y, rho


@pytest.mark.parametrize("p,capacity", [(1, 5), (3, 5), (5, 5)])
@pytest.mark.parametrize("k", [None, 1, 4])
def test_compiled_two_loop_equals_the_generic_one(p, capacity, k):
    rng = np.random.default_rng(10 * p + capacity)
    n = 30
    S, Y, rho = pairs(rng, p, n)
    V = rng.standard_normal(n if k is None else (n, k))
    expected = _two_loop(S, Y, rho, 0.7, None, V)  # NumPy, generic
    got = _two_loop_jax([jnp.asarray(s) for s in S], [jnp.asarray(y) for y in Y], rho, 0.7,
                        jnp.asarray(V), capacity)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-13)


def test_zero_pairs_are_no_ops():
    # exact no-ops in exact arithmetic; the two compiled programs may fuse differently, so the
    # results agree to rounding (measured 2.5e-16 relative), not bit for bit
    rng = np.random.default_rng(0)
    S, Y, rho = pairs(rng, 2, 12)
    args = ([jnp.asarray(s) for s in S], [jnp.asarray(y) for y in Y], rho, 1.3,
            jnp.asarray(rng.standard_normal(12)))
    np.testing.assert_allclose(np.asarray(_two_loop_jax(*args, 7)), np.asarray(_two_loop_jax(*args, 2)),
                               rtol=4e-15, atol=0)
