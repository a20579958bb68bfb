"""Conformance with MATLAB GRANSO 1.6.4: solve the reference cases, compare, report.

``python -m ncvx_ref.conformance [PATH]`` runs every case of a reference set (default
``<repo>/../shared/granso_reference``) and prints one row per case and a summary by family;
see :mod:`ncvx_ref.conformance.compare` for what is compared and with which tolerances.
"""
from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np

from .cases import case_paths, iter_cases, load_case, solve_options
from .compare import CaseComparison, compare_case, failed_row, summarize


def run_case(case: Dict[str, Any], qp_solver: Any = None, **extra_options: Any):
    """Solve a reference case with its stored x0 and options; returns the ``Result`` (with history)."""
    from .. import problems, solve

    prob = problems.from_case(case)
    opts = solve_options(case)
    opts.update(extra_options)
    return solve(prob.evaluate, np.asarray(prob.x0), qp_solver=qp_solver, record_history=True, **opts)


def check_case(case: Dict[str, Any], qp_solver: Any = None) -> CaseComparison:
    """Run a case and compare it with GRANSO's reference (an exception becomes a failed row)."""
    t = time.perf_counter()
    try:
        result = run_case(case, qp_solver=qp_solver)
    except Exception as exc:  # a crash is a conformance failure to report, not to hide
        return failed_row(case, exc, time.perf_counter() - t)
    return compare_case(case, result, time.perf_counter() - t)


__all__ = ["run_case", "check_case", "load_case", "iter_cases", "case_paths", "solve_options",
           "compare_case", "summarize", "CaseComparison"]
