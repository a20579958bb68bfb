"""ncvx_ref: BFGS-SQP for nonsmooth, nonconvex, constrained optimization on the Python Array API."""
from ._version import __version__
from .evaluation import Evaluation
from .termination import TerminationCode
from .result import Result, PointRecord, BFGSCounts
from .history import IterationState, HistoryEntry, HistoryRecorder
from .options import Options, OptionError
from .evaluator import ProblemDefinitionError, UserFunctionError
from .api import solve

__all__ = ["__version__", "Evaluation", "TerminationCode", "Result", "PointRecord", "BFGSCounts",
           "IterationState", "HistoryEntry", "HistoryRecorder", "Options", "OptionError",
           "ProblemDefinitionError", "UserFunctionError", "solve"]
