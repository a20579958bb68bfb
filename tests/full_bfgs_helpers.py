"""Shared pieces of the large-n full-BFGS tests (test_bfgs_rank2, test_product_memo,
test_bfgs_factored): update pairs and a smooth constrained problem.  The fixture
``matrix_from_the_first_update`` is in conftest.py."""
import math

import numpy as np

from ncvx_ref.hessian import SKIPPED_INFNAN


def pair(rng, n):
    """An update pair with sᵀy > 0 (y a perturbed copy of s) and its sᵀy."""
    s = rng.standard_normal(n)
    y = s + 0.3 * rng.standard_normal(n)
    return s, y, float(s @ y)


def update_then_skip_an_inf(H, rng, n):
    """One update of ``H``, then one whose ``s`` holds an inf, which must be skipped; returns
    ``H.state()`` from between the two (each caller checks what its path kept)."""
    H.update(*pair(rng, n), False)
    before = H.state()
    s, y, sty = pair(rng, n)
    s[3] = np.inf
    assert H.update(s, y, sty, False) == SKIPPED_INFNAN
    return before


def eigen_problem(n, seed=0):
    """``min xᵀAx`` s.t. ``xᵀx = 1`` in the six-tuple form: ``(fun, x0, smallest eigenvalue)``."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    A = (G + G.T) / (2 * math.sqrt(n))

    def fun(x):
        Ax = A @ x
        return float(x @ Ax), 2 * Ax, None, None, np.array([x @ x - 1.0]), (2 * x)[:, None]

    x0 = rng.standard_normal(n)
    return fun, x0 / np.linalg.norm(x0), float(np.linalg.eigvalsh(A)[0])

