"""Steering (ALGORITHM.md §7): the penalty-SQP direction via its box-constrained dual QP, with
``mu`` lowered until the direction is predicted to reduce the linearized violation enough.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import numpy as np

from .backend import Backend, to_host
from .penalty import PenaltyPoint
from .qp.interface import BoxQP
from .qp.lifted import host_gradients, host_metric, wants_structure

Array = Any


@dataclass(frozen=True)
class SteeringParameters:
    l1_model: bool = True
    ineq_margin: float = 1e-6
    maxit: int = 10
    c_viol: float = 0.1
    c_mu: float = 0.9


class _SteeringQP:
    """The data shared by every ``solve(nu)`` of one steering call.

    Large QPs (``k > n`` and ``k >= 1000``, when the QP solver asks for them, see
    ``docs/large_qps.md``) are passed in structured form ``Q = Cᵀ M C`` (host ``C``, sparse when
    it is, and host ``M``) and ``d = −(ν·Mg) − M(C y)``; otherwise the dense ``Q`` of §7.1.
    """

    def __init__(self, pt: PenaltyPoint, apply_M: Callable[[Array], Array], backend: Backend,
                 qp_solver=None, apply_each: Optional[Callable[[List[Array]], List[Array]]] = None):
        xp = backend.xp
        blocks = [j for j in (pt.ce_grad, pt.ci_grad) if j is not None]  # equalities first
        vals = [v for v in (pt.ce, pt.ci) if v is not None]
        self.C = blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)
        self.c = vals[0] if len(vals) == 1 else xp.concat(vals)
        n, k = int(self.C.shape[0]), int(self.c.shape[0])
        self.structure = None
        if wants_structure(qp_solver, n, k):
            available, M = host_metric(apply_M, n, backend)
            if available:
                self.structure = (host_gradients([to_host(b) for b in blocks]), M)
                self.apply_M = apply_M
        if self.structure is None and apply_each is not None:
            # the stationarity QP has just multiplied these very arrays (with H before the update)
            products = apply_each([pt.f_grad] + blocks)
            self.Mg = products[0]
            self.MC = products[1] if len(blocks) == 1 else xp.concat(products[1:], axis=1)
        else:
            self.Mg = apply_M(pt.f_grad)
            if self.structure is None:
                self.MC = apply_M(self.C)
        if self.structure is None:
            Q = to_host(self.C.T @ self.MC)
            self.Q = (Q + Q.T) / 2
        m_e = 0 if pt.ce is None else int(pt.ce.shape[0])
        self.lb = np.concatenate([-np.ones(m_e), np.zeros(k - m_e)])
        self.ub = np.ones(k)
        self.backend = backend

    def solve(self, nu: float, qp_solver) -> Array:
        numg = nu * self.Mg
        q = to_host(self.C.T @ numg - self.c)
        if self.structure is not None:
            A, M = self.structure
            y = qp_solver.solve(BoxQP(None, q, self.lb, self.ub, kind="steering", A=A, M=M))
            return -numg - self.apply_M(self.C @ self.backend.from_host(y))
        y = qp_solver.solve(BoxQP(self.Q, q, self.lb, self.ub, kind="steering"))
        return -numg - self.MC @ self.backend.from_host(y)


def _predicted_reduction(pt: PenaltyPoint, d: Array, V: float, l1: bool, backend: Backend) -> float:
    """Predicted reduction of the violation under the linearized constraints (§7.1)."""
    xp = backend.xp
    ineq = 0.0
    if pt.ci is not None:
        lin = pt.ci + pt.ci_grad.T @ d
        if l1:  # the sum of max(lin, 0): negative entries zeroed (NaN kept), as clip(min=0) does
            ineq = backend.sum(xp.where(lin < 0.0, xp.zeros_like(lin), lin))
        else:
            ineq = max(backend.max(lin), 0.0)
    eq = 0.0
    if pt.ce is not None:
        lin = xp.abs(pt.ce + pt.ce_grad.T @ d)
        eq = backend.sum(lin) if l1 else backend.max(lin)
    if not l1 and pt.ci is None:
        return math.nan  # §19.16: GRANSO's empty array; every test on it is false
    return V - ineq - eq


def steer(pt: PenaltyPoint, apply_M: Callable[[Array], Array], params: SteeringParameters,
          qp_solver, backend: Backend,
          apply_each: Optional[Callable[[List[Array]], List[Array]]] = None):
    """Return ``(d, mu)``: the steered direction and the (possibly lowered) penalty parameter.

    ``apply_each``: ``M``'s memoizing product of several arrays (``QPMetric.apply_each``), or None.
    A QP failure propagates as :class:`~ncvx_ref.qp.QPSolverError` (the caller falls back).
    """
    V = pt.tv_l1 if params.l1_model else pt.tv
    tol = math.sqrt(backend.eps) * max(V, 1.0)  # eps of the run's dtype (2^-52 in float64)
    data = _SteeringQP(pt, apply_M, backend, qp_solver, apply_each)

    def pred(d):
        return _predicted_reduction(pt, d, V, params.l1_model, backend)

    mu = pt.mu
    d = data.solve(mu, qp_solver)
    r = pred(d)
    if r >= params.c_viol * V - tol:
        return d, mu
    if (params.ineq_margin < math.inf and pt.ce is None
            and not bool(backend.xp.any(pt.ci > -params.ineq_margin))):
        return d, mu
    r_ref = pred(data.solve(0.0, qp_solver))
    if r >= params.c_viol * r_ref - tol:
        return d, mu
    for _ in range(params.maxit):
        mu = params.c_mu * mu
        d = data.solve(mu, qp_solver)
        if pred(d) >= params.c_viol * r_ref - tol:
            return d, mu
    return d, mu
