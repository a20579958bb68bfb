"""Quadratic programs of the method: the interface, the default solver, and the failure rule."""
from .interface import BoxQP, QPSolver, QPSolverError

__all__ = ["BoxQP", "QPSolver", "QPSolverError"]
