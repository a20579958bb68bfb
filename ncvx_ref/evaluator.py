"""The penalty-function evaluator (ALGORITHM.md §1.2, §1.3, §3): calls the user's function,
counts evaluations, applies pre-scaling, keeps the best and most-feasible points, and holds the
current point and the snapshot of the accepted iterate.

Everything it stores is an immutable :class:`~ncvx_ref.penalty.PenaltyPoint`; ``snapshot`` and
``restore`` only move references, never copy arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import array_api_compat as aac

from .backend import Backend
from .evaluation import Evaluation
from .penalty import PenaltyPoint, penalty_point
from .result import PointRecord

Array = Any


class ProblemDefinitionError(ValueError):
    """The user's function returned something the solver cannot use (checked at x0)."""


class UserFunctionError(RuntimeError):
    """The user's function raised during the run (termination code 11); the cause is chained."""


def as_evaluation(out) -> Evaluation:
    """Accept an :class:`Evaluation` or GRANSO's combined 6-tuple ``(f, g, ci, Ji, ce, Je)``."""
    if isinstance(out, Evaluation):
        return out
    if isinstance(out, tuple) and len(out) == 6:
        return Evaluation(*out)
    if isinstance(out, tuple) and len(out) == 2:
        return Evaluation(out[0], out[1])
    raise ProblemDefinitionError(
        "the function must return an ncvx_ref.Evaluation or a tuple (f, f_grad, ci, ci_grad, ce, "
        f"ce_grad) (None for an absent constraint group), not {type(out).__name__}")


def _is_empty(a) -> bool:
    return a is None or (hasattr(a, "shape") and math.prod(a.shape) == 0)


def _check_at_x0(ev: Evaluation, n: int, backend: Backend) -> Evaluation:
    """The initialization checks of §1.2, with messages that say what to change."""
    xp = backend.xp
    f = ev.f
    if hasattr(f, "shape") and tuple(f.shape) not in ((), (1,), (1, 1)):
        raise ProblemDefinitionError(f"the objective must be a scalar, got an array of shape {tuple(f.shape)}")
    try:
        f_val = float(f if not hasattr(f, "shape") or f.shape == () else xp.reshape(f, ()))
    except Exception as exc:
        raise ProblemDefinitionError(f"the objective must be a real scalar, got {f!r}") from exc
    if not math.isfinite(f_val):
        raise ProblemDefinitionError(f"the objective at x0 is not finite ({f_val}); start from a point where "
                                     "f and the constraints are finite")
    fields = {"f": f_val, "f_grad": _vector(ev.f_grad, n, "f_grad", backend)}
    for name in ("ci", "ce"):
        val, jac = getattr(ev, name), getattr(ev, name + "_grad")
        if _is_empty(val):
            if not _is_empty(jac):
                raise ProblemDefinitionError(f"{name} is empty but {name}_grad is not")
            fields[name] = fields[name + "_grad"] = None
            continue
        v = _vector(val, None, name, backend)
        m = int(v.shape[0])
        if jac is None or not hasattr(jac, "shape"):
            raise ProblemDefinitionError(f"{name}_grad is missing: give an (n, {m}) = ({n}, {m}) matrix whose "
                                         f"columns are the gradients of the {m} constraints")
        if m == 1 and tuple(jac.shape) == (n,):
            jac = xp.reshape(jac, (n, 1))
        if tuple(jac.shape) != (n, m):
            hint = " (it looks transposed: columns must be the constraint gradients)" \
                if tuple(jac.shape) == (m, n) else ""
            raise ProblemDefinitionError(f"{name}_grad has shape {tuple(jac.shape)}, expected (n, m) = "
                                         f"({n}, {m}){hint}")
        _check_array(jac, name + "_grad", backend)
        fields[name], fields[name + "_grad"] = v, jac
    for key, a in fields.items():
        if key != "f" and a is not None and not backend.all_finite(a):
            raise ProblemDefinitionError(f"{key} at x0 contains NaN or Inf; start from a point where the "
                                         "functions and their gradients are finite")
    return Evaluation(**fields)


def _check_array(a, name: str, backend: Backend) -> None:
    try:
        xp = aac.array_namespace(a)
    except TypeError as exc:
        raise ProblemDefinitionError(f"{name} is not an array ({type(a).__name__})") from exc
    if xp is not backend.xp:
        raise ProblemDefinitionError(
            f"{name} is a {xp.__name__} array but x0 is a {backend.xp.__name__} array: return arrays of "
            "x's namespace (use an adapter from ncvx_ref.adapters to convert)")
    if a.dtype != backend.dtype:
        raise ProblemDefinitionError(f"{name} has dtype {a.dtype} but x0 has dtype {backend.dtype}: return "
                                     "arrays of x's dtype")
    if aac.device(a) != backend.device:
        raise ProblemDefinitionError(f"{name} is on device {aac.device(a)} but x0 is on {backend.device}: "
                                     "keep every array on x's device")


def _vector(a, n: Optional[int], name: str, backend: Backend):
    if not hasattr(a, "shape"):
        raise ProblemDefinitionError(f"{name} must be an array, got {type(a).__name__}")
    _check_array(a, name, backend)
    shape = tuple(a.shape)
    if len(shape) == 2 and shape[1] == 1:
        a = backend.xp.reshape(a, (shape[0],))
    elif len(shape) != 1:
        raise ProblemDefinitionError(f"{name} must be a vector, got shape {shape}")
    if n is not None and int(a.shape[0]) != n:
        raise ProblemDefinitionError(f"{name} has length {int(a.shape[0])}, expected n = {n}")
    return a


@dataclass(frozen=True)
class Scalings:
    """Pre-scaling factors decided at x0 (§1.3); ``None`` for a group that is not scaled."""

    f: Optional[float]
    ci: Optional[Array]
    ce: Optional[Array]

    def apply(self, ev: Evaluation) -> Evaluation:
        f, g, ci, Ji, ce, Je = ev.f, ev.f_grad, ev.ci, ev.ci_grad, ev.ce, ev.ce_grad
        if self.f is not None:
            f, g = float(f) * self.f, g * self.f
        if self.ci is not None:
            ci, Ji = ci * self.ci, Ji * self.ci[None, :]
        if self.ce is not None:
            ce, Je = ce * self.ce, Je * self.ce[None, :]
        return Evaluation(f, g, ci, Ji, ce, Je)

    def as_dict(self) -> dict:
        return {k: v for k, v in (("f", self.f), ("ci", self.ci), ("ce", self.ce)) if v is not None}


def _decide_scalings(ev: Evaluation, threshold: float, backend: Backend) -> Optional[Scalings]:
    if not threshold < math.inf:
        return None
    xp = backend.xp
    gnorm = backend.norm(ev.f_grad)
    sf = threshold / gnorm if gnorm > threshold else None
    groups = []
    for jac in (ev.ci_grad, ev.ce_grad):
        if jac is None:
            groups.append(None)
            continue
        norms = xp.linalg.vector_norm(jac, axis=0)
        big = norms > threshold
        groups.append(xp.where(big, threshold / norms, xp.ones_like(norms)) if bool(xp.any(big)) else None)
    if sf is None and groups[0] is None and groups[1] is None:
        return None
    return Scalings(sf, groups[0], groups[1])


def point_record(pt: PenaltyPoint) -> PointRecord:
    """The reportable part of a point (§3.1 record)."""
    if not pt.constrained:
        return PointRecord(x=pt.x, f=pt.f)
    return PointRecord(x=pt.x, f=pt.f, ci=pt.ci, ce=pt.ce, tvi=pt.tvi, tve=pt.tve, tv=pt.tv,
                       feasible_to_tol=pt.feasible_to_tol, mu=pt.mu)


class PenaltyEvaluator:
    """GRANSO's penalty-function object ``EV`` (§3), over immutable point records."""

    def __init__(self, fun: Callable[[Array], Any], x0: Array, mu0: float, backend: Backend,
                 viol_ineq_tol: float, viol_eq_tol: float, prescaling_threshold: float = math.inf):
        self._fun = fun
        self._backend = backend
        self._tols = (viol_ineq_tol, viol_eq_tol)
        self.n = int(x0.shape[0])
        self.fn_evals = 0
        try:
            raw = as_evaluation(fun(x0))
        except ProblemDefinitionError:
            raise
        except Exception as exc:
            raise ProblemDefinitionError(f"the user function raised at x0: {type(exc).__name__}: {exc}") from exc
        ev = _check_at_x0(raw, self.n, backend)
        self.fn_evals = 1
        self.gradient_norms_x0 = self._gradient_norms(ev)
        self.scalings = _decide_scalings(ev, prescaling_threshold, backend)
        if self.scalings is not None:
            ev = self.scalings.apply(ev)
        self.m_ineq = 0 if ev.ci is None else int(ev.ci.shape[0])
        self.m_eq = 0 if ev.ce is None else int(ev.ce.shape[0])
        self.constrained = self.m_ineq + self.m_eq > 0
        self.current = penalty_point(x0, ev, mu0 if self.constrained else 1.0, backend, *self._tols)
        self.stat_value = math.nan
        self._snapshot = self.current
        self._snapshot_stat_value = math.nan
        self._at_snapshot = False
        first = point_record(self.current)
        self.most_feasible: Optional[PointRecord] = first if self.constrained else None
        self.best: Optional[PointRecord] = first if (not self.constrained or first.feasible_to_tol) else None

    def _gradient_norms(self, ev: Evaluation) -> dict:
        xp = self._backend.xp
        out = {"f": self._backend.norm(ev.f_grad)}
        for name in ("ci_grad", "ce_grad"):
            jac = getattr(ev, name)
            out[name[:2]] = None if jac is None else xp.linalg.vector_norm(jac, axis=0)
        return out

    @property
    def mu(self) -> float:
        return self.current.mu

    def evaluate(self, x: Array) -> PenaltyPoint:
        """One function evaluation at ``x`` with the current ``mu`` (updates the best records)."""
        self.fn_evals += 1
        self._at_snapshot = False
        self.stat_value = math.nan
        try:
            out = self._fun(x)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise UserFunctionError(f"the user function raised at evaluation {self.fn_evals}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        ev = as_evaluation(out)
        ev = _normalize(ev, self.n, self._backend)
        if self.scalings is not None:
            ev = self.scalings.apply(ev)
        pt = penalty_point(x, ev, self.current.mu, self._backend, *self._tols)
        self.current = pt
        self._track_best(pt)
        return pt

    def _track_best(self, pt: PenaltyPoint) -> None:
        if not self.constrained:
            if pt.f < self.best.f:
                self.best = point_record(pt)
            return
        record = None
        mf = self.most_feasible
        if pt.tv < mf.tv or (pt.tv == mf.tv and pt.f < mf.f):
            record = point_record(pt)
            self.most_feasible = record
        if pt.feasible_to_tol and (self.best is None or pt.f < self.best.f):
            self.best = record if record is not None else point_record(pt)

    def set_mu(self, mu: float) -> PenaltyPoint:
        """Change ``mu`` at the current point (no evaluation; no best-record update)."""
        if self.constrained:
            self.current = self.current.with_mu(mu)
        return self.current

    def snapshot(self) -> PenaltyPoint:
        self._snapshot = self.current
        self._snapshot_stat_value = self.stat_value
        self._at_snapshot = True
        return self._snapshot

    def restore(self) -> PenaltyPoint:
        self.current = self._snapshot
        self.stat_value = self._snapshot_stat_value
        self._at_snapshot = True
        return self.current

    def set_stat_value(self, value: float) -> None:
        self.stat_value = value
        if self._at_snapshot:
            self._snapshot_stat_value = value


def _normalize(ev: Evaluation, n: int, backend: Backend) -> Evaluation:
    """Cheap reshapes after x0 (columns -> vectors, a single gradient -> an (n, 1) matrix); no checks."""
    xp = backend.xp
    g = ev.f_grad
    ci, Ji, ce, Je = ev.ci, ev.ci_grad, ev.ce, ev.ce_grad
    if (len(g.shape) == 1
            and (ci is None or (len(ci.shape) == 1 and ci.shape[0] > 0
                                and Ji is not None and len(Ji.shape) == 2))
            and (ce is None or (len(ce.shape) == 1 and ce.shape[0] > 0
                                and Je is not None and len(Je.shape) == 2))):
        return ev  # already in the core's layout (the common case): no new record
    if len(g.shape) == 2:
        g = xp.reshape(g, (n,))
    if ci is not None and len(ci.shape) == 2:
        ci = xp.reshape(ci, (ci.shape[0],))
    if ce is not None and len(ce.shape) == 2:
        ce = xp.reshape(ce, (ce.shape[0],))
    if Ji is not None and len(Ji.shape) == 1:
        Ji = xp.reshape(Ji, (n, 1))
    if Je is not None and len(Je.shape) == 1:
        Je = xp.reshape(Je, (n, 1))
    if ci is not None and math.prod(ci.shape) == 0:
        ci = Ji = None
    if ce is not None and math.prod(ce.shape) == 0:
        ce = Je = None
    return Evaluation(ev.f, g, ci, Ji, ce, Je)
