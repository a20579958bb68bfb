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
    it is, and host ``M``) and ``d = −(ν·Mg) − M(C y)``; otherwise the dense ``Q`` of §7.1,
    from ``M [g | C]`` itself or, in compact L-BFGS, from that product held implicitly.
    """

    def __init__(self, pt: PenaltyPoint, apply_M: Callable[[Array], Array], backend: Backend,
                 qp_solver=None, apply_each: Optional[Callable[[List[Array]], List[Array]]] = None,
                 implicit: Optional[Callable[[List[Array]], Any]] = None):
        xp = backend.xp
        blocks = [j for j in (pt.ce_grad, pt.ci_grad) if j is not None]  # equalities first
        vals = [v for v in (pt.ce, pt.ci) if v is not None]
        self.C = blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)
        self.c = vals[0] if len(vals) == 1 else xp.concat(vals)
        n, k = int(self.C.shape[0]), int(self.c.shape[0])
        self.structure = None
        self.implicit = None
        if wants_structure(qp_solver, n, k):
            available, M = host_metric(apply_M, n, backend)
            if available:
                self.structure = (host_gradients([to_host(b) for b in blocks]), M)
                self.apply_M = apply_M
        if self.structure is None and implicit is not None:
            # M [g | C] held implicitly: its Gram gives Q and Cᵀ M g, and a direction is one
            # product M (ν g + C y)
            self.implicit = implicit([pt.f_grad] + blocks)
            G = self.implicit.gram()
            G = (G + G.T) / 2
            self.Q, self.CtMg = np.ascontiguousarray(G[1:, 1:]), G[1:, 0].copy()
        elif self.structure is None and apply_each is not None:
            # the stationarity QP has just multiplied these very arrays (with H before the update)
            products = apply_each([pt.f_grad] + blocks)
            self.Mg = products[0]
            self.MC = products[1] if len(blocks) == 1 else xp.concat(products[1:], axis=1)
        else:
            self.Mg = apply_M(pt.f_grad)
            if self.structure is None:
                self.MC = apply_M(self.C)
        if self.structure is None and self.implicit is None:
            Q = to_host(self.C.T @ self.MC)
            self.Q = (Q + Q.T) / 2
        self.m_e = m_e = 0 if pt.ce is None else int(pt.ce.shape[0])
        self.lb = np.zeros(k)
        self.lb[:m_e] = -1.0  # equality multipliers in [-1, 1], inequality ones in [0, 1]
        self.ub = np.ones(k)
        self.backend = backend

    def solve(self, nu: float, qp_solver) -> "_Candidate":
        if self.implicit is not None:
            q = nu * self.CtMg - to_host(self.c)
            y = qp_solver.solve(BoxQP(self.Q, q, self.lb, self.ub, kind="steering"))
            # d = −M(ν g + C y) is formed only if chosen; Cᵀd = −(ν CᵀMg + CᵀMC y) is known
            Ctd = self.backend.from_host(-(nu * self.CtMg + self.Q @ y))
            return _Candidate(None, np.concatenate([[nu], y]), Ctd[:self.m_e], Ctd[self.m_e:],
                              self.implicit)
        return _Candidate(self._direction(nu, qp_solver))

    def _direction(self, nu: float, qp_solver) -> Array:
        numg = nu * self.Mg
        q = to_host(self.C.T @ numg - self.c)
        if self.structure is not None:
            A, M = self.structure
            y = qp_solver.solve(BoxQP(None, q, self.lb, self.ub, kind="steering", A=A, M=M))
            return -numg - self.apply_M(self.C @ self.backend.from_host(y))
        y = qp_solver.solve(BoxQP(self.Q, q, self.lb, self.ub, kind="steering"))
        return -numg - self.MC @ self.backend.from_host(y)


class _Candidate:
    """A steering QP's direction ``d`` and the constraint products ``JEᵀd``, ``JIᵀd`` that its
    predicted reduction needs.  Held implicitly (``d = −M A z`` for ``A = [g | C]``), ``d``
    is formed only for the candidate steering returns (a pass over the stored pairs)."""

    def __init__(self, d: Optional[Array], z=None, JEd=None, JId=None, implicit=None) -> None:
        self._d, self._z, self._implicit = d, z, implicit
        self._JEd, self._JId = JEd, JId

    def vector(self) -> Array:
        if self._d is None:
            self._d = -self._implicit.times(self._z)
        return self._d

    def JEd(self, pt: PenaltyPoint) -> Array:
        return pt.ce_grad.T @ self._d if self._JEd is None else self._JEd

    def JId(self, pt: PenaltyPoint) -> Array:
        return pt.ci_grad.T @ self._d if self._JId is None else self._JId


def _predicted_reduction(pt: PenaltyPoint, d: _Candidate, V: float, l1: bool,
                         backend: Backend) -> float:
    """Predicted reduction of the violation under the linearized constraints (§7.1)."""
    xp = backend.xp
    ineq = 0.0
    if pt.ci is not None:
        lin = pt.ci + d.JId(pt)
        if l1:  # the sum of max(lin, 0): negative entries zeroed (NaN kept), as clip(min=0) does
            zero = 0.0 if backend.host_f64 else xp.zeros_like(lin)
            ineq = backend.sum(xp.where(lin < 0.0, zero, lin))
        else:
            ineq = max(backend.max(lin), 0.0)
    eq = 0.0
    if pt.ce is not None:
        lin = xp.abs(pt.ce + d.JEd(pt))
        eq = backend.sum(lin) if l1 else backend.max(lin)
    if not l1 and pt.ci is None:
        return math.nan  # §19.16: GRANSO's empty array; every test on it is false
    return V - ineq - eq


def steer(pt: PenaltyPoint, apply_M: Callable[[Array], Array], params: SteeringParameters,
          qp_solver, backend: Backend,
          apply_each: Optional[Callable[[List[Array]], List[Array]]] = None,
          implicit: Optional[Callable[[List[Array]], Any]] = None):
    """Return ``(d, mu)``: the steered direction and the (possibly lowered) penalty parameter.

    ``apply_each``: ``M``'s memoizing product of several arrays (``QPMetric.apply_each``), or None;
    ``implicit``: ``M A`` held implicitly (``QPMetric.implicit``), used instead when given.
    A QP failure propagates as :class:`~ncvx_ref.qp.QPSolverError` (the caller falls back).
    """
    V = pt.tv_l1 if params.l1_model else pt.tv
    tol = math.sqrt(backend.eps) * max(V, 1.0)  # eps of the run's dtype (2^-52 in float64)
    data = _SteeringQP(pt, apply_M, backend, qp_solver, apply_each, implicit)

    def pred(d):
        return _predicted_reduction(pt, d, V, params.l1_model, backend)

    mu = pt.mu
    d = data.solve(mu, qp_solver)
    r = pred(d)
    if r >= params.c_viol * V - tol:
        return d.vector(), mu
    if (params.ineq_margin < math.inf and pt.ce is None
            and not backend.any(pt.ci > -params.ineq_margin)):
        return d.vector(), mu
    r_ref = pred(data.solve(0.0, qp_solver))
    if r >= params.c_viol * r_ref - tol:
        return d.vector(), mu
    for _ in range(params.maxit):
        mu = params.c_mu * mu
        d = data.solve(mu, qp_solver)
        if pred(d) >= params.c_viol * r_ref - tol:
            return d.vector(), mu
    return d.vector(), mu
