"""Termination codes: GRANSO 1.6.4's numbers and meanings (ALGORITHM.md §15)."""
from __future__ import annotations

from enum import IntEnum


class TerminationCode(IntEnum):
    """Why a run stopped.  The numbers are GRANSO's, so MATLAB users keep their meaning."""

    CONVERGED = 0
    REL_TOL = 1
    FVALQUIT = 2
    USER_HALT = 3
    MAXIT = 4
    MAXCLOCKTIME = 5
    LINESEARCH_BRACKET_FEASIBLE = 6
    LINESEARCH_BRACKET_INFEASIBLE = 7
    LINESEARCH_NOT_BRACKETED = 8
    NO_DESCENT_DIRECTION = 9
    UNUSED_10 = 10
    USER_FUNCTION_ERROR = 11
    QP_FAILURE = 12
    UNKNOWN_ERROR = 13

    @property
    def success(self) -> bool:
        """True for the codes that certify a usable answer (0: stationary and feasible; 2: target met)."""
        return self in (TerminationCode.CONVERGED, TerminationCode.FVALQUIT)


def termination_message(code: TerminationCode, *, constrained: bool, final_tv: float = float("nan"),
                        mu_lowest: float | None = None) -> str:
    """The end-of-run message for ``code`` (GRANSO's meaning, in our words)."""
    c = TerminationCode(code)
    if c is TerminationCode.CONVERGED:
        return ("converged: approximately stationary to opt_tol"
                + (" and feasible to viol_ineq_tol / viol_eq_tol." if constrained else "."))
    if c is TerminationCode.REL_TOL:
        return ("relative change of the " + ("penalty function" if constrained else "objective")
                + " at or below rel_tol" + (" at a point feasible to tolerances." if constrained else "."))
    if c is TerminationCode.FVALQUIT:
        return "target objective value fvalquit reached" + (
            " at a point feasible to tolerances." if constrained else ".")
    if c is TerminationCode.USER_HALT:
        return "stopped by the user's callback (halt_log_fn returned True)."
    if c is TerminationCode.MAXIT:
        return "maximum number of iterations (maxit) reached."
    if c is TerminationCode.MAXCLOCKTIME:
        return "wall-clock time limit (maxclocktime) reached."
    if c is TerminationCode.LINESEARCH_BRACKET_FEASIBLE:
        where = ("a strictly feasible point" if final_tv == 0 else "a point feasible to tolerances") \
            if constrained else "the current iterate"
        return ("line search bracketed a minimizer but failed to satisfy the weak Wolfe conditions at "
                + where + "; this may be an indication that approximate stationarity has been attained.")
    if c is TerminationCode.LINESEARCH_BRACKET_INFEASIBLE:
        return ("line search bracketed a minimizer but failed to satisfy the weak Wolfe conditions at an "
                "infeasible point; the closest point to feasibility found is in most_feasible.")
    if c is TerminationCode.LINESEARCH_NOT_BRACKETED:
        msg = "line search failed to bracket a minimizer: the objective may be unbounded below."
        if mu_lowest is not None:
            msg += (f" The lowest penalty parameter tried was mu = {mu_lowest:g}; consider restarting "
                    "with mu0 below it.")
        return msg
    if c is TerminationCode.NO_DESCENT_DIRECTION:
        return "failed to produce a descent direction."
    if c is TerminationCode.USER_FUNCTION_ERROR:
        return "a user-supplied function raised an error (see Result.error); the last accepted iterate is kept."
    if c is TerminationCode.QP_FAILURE:
        return "steering aborted by a QP solver error (see halt_on_quadprog_error and Result.error)."
    return "unknown termination condition (an internal error; see Result.error)."
