"""Runners for the peer solvers (PyGRANSO, SciPy); each has ncvx_runner's ``run`` contract."""
