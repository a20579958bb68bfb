"""Test-session settings: one BLAS/OpenMP thread (2-core CI machines; thread contention makes small
matrix products 1000x slower), set before anything imports NumPy, and shared fixtures."""
import os

import pytest

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.fixture
def matrix_from_the_first_update(monkeypatch):
    """Full BFGS without rank-2 terms kept first (tests/test_bfgs_factored.py covers those):
    the n x n matrix exists from the first update and is updated in place."""
    monkeypatch.setattr("ncvx_ref.hessian.term_capacity", lambda n: 0)
