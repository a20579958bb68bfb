"""Shared pieces of the large-n full-BFGS tests (test_bfgs_rank2, test_product_memo,
test_bfgs_factored): update pairs and a smooth constrained problem.  The fixture
``matrix_from_the_first_update`` is in conftest.py."""
import math

import numpy as np


def pair(rng, n):
    """An update pair with sᵀy > 0 (y a perturbed copy of s) and its sᵀy."""
    s = rng.standard_normal(n)
    y = s + 0.3 * rng.standard_normal(n)
    return s, y, float(s @ y)


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

