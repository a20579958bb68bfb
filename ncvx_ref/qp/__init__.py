"""Quadratic programs of the method: the interface, the solvers, and GRANSO's failure rule.

``get_qp_solver(name_or_object)`` resolves the ``qp_solver`` argument of :func:`ncvx_ref.solve`;
``default_qp_solver()`` is the measured default (see docs/qp_solvers.md).
"""
from .interface import BoxQP, QPSolver, QPSolverError
from .default import (DEFAULT_QP_SOLVER, RecordingQPSolver, available_qp_solvers, default_qp_solver,
                      get_qp_solver)
from .polish import kkt_residual

__all__ = ["BoxQP", "QPSolver", "QPSolverError", "DEFAULT_QP_SOLVER", "RecordingQPSolver",
           "available_qp_solvers", "default_qp_solver", "get_qp_solver", "kkt_residual"]
