"""Unscaled copies of the reported points when pre-scaling was applied (ALGORITHM.md §1.3, §16)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from .backend import Backend
from .penalty import _max_ignoring_nan, _fmax
from .result import PointRecord, Result


def _unscale(pt: Optional[PointRecord], sc, options, backend: Backend) -> Optional[PointRecord]:
    if pt is None:
        return None
    xp = backend.xp
    f = pt.f / sc.f if sc.f is not None else pt.f
    ci = pt.ci / sc.ci if (sc.ci is not None and pt.ci is not None) else pt.ci
    ce = pt.ce / sc.ce if (sc.ce is not None and pt.ce is not None) else pt.ce
    if ci is None and ce is None:
        return dataclasses.replace(pt, f=f)
    tvi = max(float(xp.max(ci)), 0.0) if ci is not None else 0.0
    tve = _max_ignoring_nan(backend, xp.abs(ce)) if ce is not None else 0.0
    return dataclasses.replace(pt, f=f, ci=ci, ce=ce, tvi=tvi, tve=tve, tv=_fmax(tvi, tve),
                               feasible_to_tol=bool(tvi <= options.viol_ineq_tol and tve <= options.viol_eq_tol))


def with_unscaled_points(res: Result, scalings, options, backend: Backend) -> Result:
    """``res`` with ``final_unscaled``, ``best_unscaled`` and ``most_feasible_unscaled`` filled in."""
    return dataclasses.replace(
        res, final_unscaled=_unscale(res.final, scalings, options, backend),
        best_unscaled=_unscale(res.best, scalings, options, backend),
        most_feasible_unscaled=_unscale(res.most_feasible, scalings, options, backend))
