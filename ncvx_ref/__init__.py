"""ncvx_ref: BFGS-SQP for nonsmooth, nonconvex, constrained optimization on the Python Array API."""
from ._version import __version__
from .evaluation import Evaluation
from .termination import TerminationCode
from .result import Result, PointRecord, BFGSCounts
from .history import IterationState, HistoryEntry, HistoryRecorder

__all__ = ["__version__", "Evaluation", "TerminationCode", "Result", "PointRecord", "BFGSCounts",
           "IterationState", "HistoryEntry", "HistoryRecorder"]
