"""Regularization of the inverse Hessian used inside the QPs (ALGORITHM.md §12, ``make_qp_H``).

With ``regularize_threshold = inf`` (default) the QPs use ``H`` itself.  Otherwise the
eigenvalues of a copy are clipped so that its condition number is at most the threshold;
``H`` itself is never modified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from .hessian import BFGSInverseHessian

Array = Any


@dataclass(frozen=True)
class QPMetric:
    """The inverse Hessian the QPs of one iteration use: ``apply(V) = H_QP V``.

    ``regularized`` is the regularized matrix when it differs from ``H`` (for the callback),
    else None.  ``eig_failed`` reports a failed eigendecomposition (``H_QP = H`` then).
    ``apply_each(arrays)``: the products of arrays that may recur in later iterations, kept up
    to date across updates (``BFGSInverseHessian.apply_each``,
    ``LBFGSInverseHessian.apply_each``); None when ``H_QP`` does not memoize (then callers form
    one product of their joined matrix, as GRANSO does).
    ``implicit(arrays)``: ``H_QP A`` for the arrays side by side, held implicitly (an
    :class:`~ncvx_ref.lbfgs_compact.ImplicitProduct`: ``Aᵀ H_QP A`` and ``H_QP A y`` without
    forming ``H_QP A``); compact L-BFGS only, else None.
    """

    apply: Callable[[Array], Array]
    regularized: Optional[Array] = None
    eig_failed: bool = False
    apply_each: Optional[Callable[[List[Array]], List[Array]]] = None
    implicit: Optional[Callable[[List[Array]], Any]] = None


def make_qp_metric(H, threshold: float, lower_top: bool) -> QPMetric:
    """Build ``H_QP`` from the current (L-)BFGS object ``H`` (a frozen copy for full memory)."""
    if not isinstance(H, BFGSInverseHessian):  # L-BFGS (never regularized, §12)
        if not H.memoizes:
            return QPMetric(apply=H.apply)
        return QPMetric(apply=H.apply, apply_each=H.apply_each, implicit=H.implicit)
    if not threshold < math.inf or H.is_initial_sparse:  # §19.11: no work while H is still the sparse H0
        return QPMetric(apply=H.apply, apply_each=H.apply_each if H.memoizes else None)
    dense = H.dense
    xp = H._b.xp
    try:
        lam, V = xp.linalg.eigh(dense)
    except Exception:
        return QPMetric(apply=lambda v, M=dense: M @ v, eig_failed=True)
    new = None
    if lower_top:
        m = float(xp.min(xp.abs(lam)))
        if m > 0:
            cap = m * threshold
            big = lam > cap
            if bool(xp.any(big)):
                new = xp.where(big, xp.full_like(lam, cap), lam)
        else:
            lower_top = False
    if not lower_top:
        floor = float(xp.max(lam)) / threshold
        small = lam < floor
        if bool(xp.any(small)):
            new = xp.where(small, xp.full_like(lam, floor), lam)
    if new is None:
        return QPMetric(apply=lambda v, M=dense: M @ v)
    Hqp = (V * new[None, :]) @ V.T
    return QPMetric(apply=lambda v, M=Hqp: M @ v, regularized=Hqp)
