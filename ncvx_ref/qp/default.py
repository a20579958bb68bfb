"""Choosing a QP solver: the measured default, name lookup, and a recording wrapper.

The default (PIQP + active-set polishing) was chosen by measurement on the QPs the method
builds; see ``docs/qp_solvers.md`` and ``benchmarks/qp_comparison.py``.  Large QPs (``k > n``,
``k >= 1000``) are asked for in structured form and solved by the lifted path
(:mod:`ncvx_ref.qp.lifted`, ``docs/large_qps.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .interface import BoxQP, QPSolver
from .lifted import LiftedQPSolver
from .size_switch import SizeSwitchedQPSolver
from .solvers import SOLVER_CLASSES, DAQPSolver, PIQPSolver

__all__ = ["DEFAULT_QP_SOLVER", "default_qp_solver", "get_qp_solver", "available_qp_solvers",
           "RecordingQPSolver", "QPRecord", "load_qp_corpus"]

DEFAULT_QP_SOLVER = "daqp+piqp"


#: the default solver's DAQP iterations before the QP goes to PIQP (docs/qp_solvers.md)
DAQP_ITERATIONS_BEFORE_PIQP = 1000

#: QPs of ``8 < k <=`` this many variables go to the compiled exact active-set method from a
#: cold start before any library (docs/qp_solvers.md, "Cold-start active set first")
ACTIVE_SET_FIRST_MAX_K = 200


def default_qp_solver() -> QPSolver:
    """A fresh instance of the default QP solver: DAQP for small dense QPs and PIQP (both
    polished) for larger ones (:class:`~ncvx_ref.qp.size_switch.SizeSwitchedQPSolver`), and the
    lifted path (:class:`~ncvx_ref.qp.lifted.LiftedQPSolver`) for structured ones.  QPs of
    ``8 < k <=`` :data:`ACTIVE_SET_FIRST_MAX_K` variables are first solved by the exact
    active-set method from a cold start; a library is called only when that does not certify
    (every second such QP of the reference corpus, 1640: all certified, 430 ms against 1571 ms
    for the library and polishing).

    DAQP gives up after :data:`DAQP_ITERATIONS_BEFORE_PIQP` iterations and PIQP takes the QP:
    on the 2629 QPs with ``8 < k <= 64`` of the reference runs, the 7% that need more are 82% of
    DAQP's time (its proximal iterations crawl on ill-conditioned and rank-deficient ``Q``),
    and PIQP answers them in a fraction of it (all 2629: 5.4 s -> 3.0 s, all certified).

    A solver given by name (``qp_solver="piqp"``) does not ask for structured QPs, so it keeps
    every QP on the dense path.
    """
    first = ACTIVE_SET_FIRST_MAX_K
    daqp = DAQPSolver(iter_limit=DAQP_ITERATIONS_BEFORE_PIQP, limit_is_failure=True,
                      active_set_first_max_k=first)
    piqp = PIQPSolver(active_set_first_max_k=first)
    return LiftedQPSolver(dense=SizeSwitchedQPSolver(daqp, piqp), name=DEFAULT_QP_SOLVER)


def available_qp_solvers() -> list[str]:
    """Names :func:`get_qp_solver` accepts (each also with the suffix ``-raw``: no polishing)."""
    return sorted(SOLVER_CLASSES)


def get_qp_solver(spec: Union[str, QPSolver, None] = None) -> QPSolver:
    """Resolve ``spec`` to a QP solver.

    ``None`` gives :func:`default_qp_solver`; a string names a library adapter (``"daqp"``,
    ``"proxsuite"``, ``"clarabel"``, ``"piqp"``, ``"osqp"``, polished; append ``-raw`` for the
    library's answer as is); any object with a callable ``solve`` is passed through unchanged.
    """
    if spec is None:
        return default_qp_solver()
    if isinstance(spec, str):
        key = spec.strip().lower()
        raw = key.endswith("-raw")
        base = key[: -len("-raw")] if raw else key
        if base not in SOLVER_CLASSES:
            valid = ", ".join(f"'{n}'" for n in available_qp_solvers())
            raise ValueError(f"Unknown `qp_solver` name '{spec}'. Valid names: {valid} "
                             f"(optionally with the suffix '-raw'), or pass an object with a "
                             f"`solve(qp) -> y` method.")
        return SOLVER_CLASSES[base](polish=not raw)
    if not callable(getattr(spec, "solve", None)):
        raise TypeError(f"`qp_solver` must be a solver name or an object with a `solve(qp)` "
                        f"method; got {type(spec).__name__}.")
    return spec


@dataclass(frozen=True)
class QPRecord:
    """One QP seen by :class:`RecordingQPSolver` and what the wrapped solver answered.

    ``y`` is None and ``error`` holds the message when the solver raised.
    """

    qp: BoxQP
    y: Optional[np.ndarray]
    error: Optional[str] = None


class RecordingQPSolver:
    """Wraps any QP solver and keeps every QP it is asked and every answer (or error).

    Use it to collect the QPs a run produces (``ncvx_ref.solve(..., qp_solver=rec)``) and
    :meth:`save` them as an ``.npz`` corpus for ``benchmarks/qp_comparison.py``.
    """

    def __init__(self, inner: Union[str, QPSolver, None] = None) -> None:
        self.inner = get_qp_solver(inner)
        self.name = f"recording({getattr(self.inner, 'name', type(self.inner).__name__)})"
        self.records: list[QPRecord] = []

    def wants_structure(self, n: int, k: int) -> bool:
        """Whatever the wrapped solver wants (see :func:`ncvx_ref.qp.lifted.wants_structure`)."""
        from .lifted import wants_structure
        return wants_structure(self.inner, n, k)

    def solve(self, qp: BoxQP) -> np.ndarray:
        try:
            y = self.inner.solve(qp)
        except Exception as exc:
            self.records.append(QPRecord(qp, None, f"{type(exc).__name__}: {exc}"))
            raise
        self.records.append(QPRecord(qp, np.array(y, dtype=np.float64, copy=True)))
        return y

    def save(self, path: Union[str, Path]) -> None:
        """Write every recorded QP to one compressed ``.npz`` file (see :func:`load_qp_corpus`)."""
        arrays: dict[str, np.ndarray] = {"count": np.array(len(self.records))}
        for i, rec in enumerate(self.records):
            p = f"qp{i}_"
            arrays[p + "Q"] = rec.qp.Q
            arrays[p + "q"] = rec.qp.q
            arrays[p + "lb"] = rec.qp.lb
            arrays[p + "ub"] = rec.qp.ub
            arrays[p + "kind"] = np.array(rec.qp.kind)
            if rec.qp.eq_coeffs is not None:
                arrays[p + "a"] = rec.qp.eq_coeffs
                arrays[p + "b"] = np.array(rec.qp.eq_rhs)
            if rec.y is not None:
                arrays[p + "y"] = rec.y
            if rec.error is not None:
                arrays[p + "error"] = np.array(rec.error)
        np.savez_compressed(path, **arrays)


def load_qp_corpus(path: Union[str, Path]) -> list[QPRecord]:
    """Read a corpus written by :meth:`RecordingQPSolver.save`."""
    with np.load(path, allow_pickle=False) as data:
        out = []
        for i in range(int(data["count"])):
            p = f"qp{i}_"
            a = data[p + "a"] if p + "a" in data else None
            qp = BoxQP(Q=data[p + "Q"], q=data[p + "q"], lb=data[p + "lb"], ub=data[p + "ub"],
                       eq_coeffs=a, eq_rhs=float(data[p + "b"]) if a is not None else 0.0,
                       kind=str(data[p + "kind"]))
            y = data[p + "y"] if p + "y" in data else None
            err = str(data[p + "error"]) if p + "error" in data else None
            out.append(QPRecord(qp, y, err))
        return out

