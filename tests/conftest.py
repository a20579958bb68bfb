"""Test-session settings: one BLAS/OpenMP thread (2-core CI machines; thread contention makes small
matrix products 1000x slower) and the location of GRANSO's reference outputs."""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
