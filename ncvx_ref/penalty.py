"""Violation measures and the exact L1 penalty function (ALGORITHM.md §2).

A :class:`PenaltyPoint` is the frozen record of everything the method knows at one evaluated
point: the user's values and gradients, the l∞ violations used for feasibility and reporting,
the l1 violations used in the penalty, and ``p(x; mu) = mu*f + tv_l1`` with its gradient.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .backend import Backend
from .evaluation import Evaluation

Array = Any
_fmax_reduce = np.fmax.reduce


@dataclass(frozen=True)
class PenaltyPoint:
    """One evaluated point, with its violations and penalty value under ``mu``."""

    x: Array
    f: float
    f_grad: Array
    ci: Optional[Array]
    ci_grad: Optional[Array]
    ce: Optional[Array]
    ce_grad: Optional[Array]
    tvi: float  # l∞ inequality violation, max(0, max c_I)
    tve: float  # l∞ equality violation, max |c_E| (ignoring NaN)
    tv: float  # max(tvi, tve): the l∞ total violation (GRANSO's docs say "vi + ve"; it is a max)
    tvi_l1: float
    tvi_l1_grad: Optional[Array]
    tve_l1: float
    tve_l1_grad: Optional[Array]
    tv_l1: float
    tv_l1_grad: Optional[Array]  # None when unconstrained
    mu: float
    p: float
    p_grad: Array
    feasible_to_tol: bool

    @property
    def constrained(self) -> bool:
        return self.ci is not None or self.ce is not None

    def with_mu(self, mu: float) -> "PenaltyPoint":
        """The same point under another penalty parameter (no evaluation; §3 ``set_mu``)."""
        if not self.constrained:
            return self
        p, p_grad = _penalty(mu, self.f, self.f_grad, self.tv_l1, self.tv_l1_grad)
        return _record({**self.__dict__, "mu": float(mu), "p": p, "p_grad": p_grad})


_FIELDS = frozenset(f.name for f in dataclasses.fields(PenaltyPoint))


def _record(fields: dict) -> PenaltyPoint:
    """A :class:`PenaltyPoint` of ``fields`` (every field, by name), made without the frozen
    dataclass's ``__init__``: that sets its 22 fields one ``object.__setattr__`` call at a
    time (about 3 µs, at every evaluation and every change of ``mu``)."""
    assert fields.keys() == _FIELDS, "a PenaltyPoint needs every one of its fields"
    pt = object.__new__(PenaltyPoint)
    pt.__dict__.update(fields)
    return pt


def _max_ignoring_nan(backend: Backend, v) -> float:
    """MATLAB's ``max``: NaN entries skipped, NaN only if every entry is NaN."""
    if backend.host_f64 and type(v) is np.ndarray:
        return float(_fmax_reduce(v))  # fmax skips NaN, and gives NaN when all are
    xp = backend.xp
    nan = xp.isnan(v)
    if bool(xp.all(nan)):
        return float("nan")
    return float(xp.max(xp.where(nan, -float("inf"), v)))


def _fmax(a: float, b: float) -> float:
    if a != a:
        return b
    if b != b:
        return a
    return max(a, b)


def _column_sum(J, mask, backend: Backend):
    """Sum of the columns of ``J`` selected by ``mask``.

    A product with the 0/1 mask costs one pass and no ``n x m`` temporary; unselected columns
    add exact zeros.  Only an inf/NaN in an *unselected* column could leak in (``0 * inf``), so
    a non-finite product is recomputed the slow, exact way.
    """
    xp = backend.xp
    out = J @ (mask.astype(J.dtype) if backend.host_f64 else xp.astype(mask, J.dtype))
    if backend.all_finite(out):
        return out
    return xp.sum(xp.where(mask[None, :], J, xp.zeros_like(J)), axis=1)


def _penalty(mu: float, f: float, f_grad, tv_l1: float, tv_l1_grad):
    if tv_l1_grad is None:  # unconstrained: mu is fixed to 1
        return f, f_grad
    return mu * f + tv_l1, mu * f_grad + tv_l1_grad


def penalty_point(x: Array, ev: Evaluation, mu: float, backend: Backend,
                  viol_ineq_tol: float, viol_eq_tol: float) -> PenaltyPoint:
    """Violation measures (§2.1–2.4) and the penalty value/gradient at an evaluated point."""
    xp = backend.xp
    f = float(ev.f)
    tvi = tvi_l1 = tve = tve_l1 = 0.0
    gi = ge = None
    if ev.ci is not None:
        active = ev.ci >= 0  # GRANSO: a constraint exactly at 0 is "active"; NaN is not
        v = xp.where(active, ev.ci, 0.0 if backend.host_f64 else xp.zeros_like(ev.ci))
        tvi = backend.max(v)
        tvi_l1 = backend.sum(v)
        gi = _column_sum(ev.ci_grad, active, backend)
    if ev.ce is not None:
        v = xp.abs(ev.ce)
        tve = _max_ignoring_nan(backend, v)
        tve_l1 = backend.sum(v)
        nonneg = ev.ce >= 0
        ge = (_column_sum(ev.ce_grad, nonneg, backend)
              - _column_sum(ev.ce_grad, xp.logical_not(nonneg), backend))
    constrained = gi is not None or ge is not None
    if constrained:
        tv_l1 = tvi_l1 + tve_l1
        tv_l1_grad = gi + ge if (gi is not None and ge is not None) else (gi if gi is not None else ge)
    else:
        tv_l1, tv_l1_grad, mu = 0.0, None, 1.0
    p, p_grad = _penalty(mu, f, ev.f_grad, tv_l1, tv_l1_grad)
    return _record(dict(
        x=x, f=f, f_grad=ev.f_grad, ci=ev.ci, ci_grad=ev.ci_grad, ce=ev.ce, ce_grad=ev.ce_grad,
        tvi=tvi, tve=tve, tv=_fmax(tvi, tve), tvi_l1=tvi_l1, tvi_l1_grad=gi, tve_l1=tve_l1,
        tve_l1_grad=ge, tv_l1=tv_l1, tv_l1_grad=tv_l1_grad, mu=float(mu), p=p, p_grad=p_grad,
        feasible_to_tol=bool(tvi <= viol_ineq_tol and tve <= viol_eq_tol),
    ))
