"""Analytic adapter: the user returns values *and* gradients themselves (GRANSO's way).

Works with any Array-API namespace (NumPy, CuPy, array_api_strict, ...): the arrays the
user returns are handed to the core as they are, after shape checks.

The user function receives the variables by name (``fn(W=..., b=...)``) or, for a flat
problem, the vector ``x``, and returns ``(f, f_grad, ci, ci_grad, ce, ce_grad)`` with
``None`` for an absent constraint group (values and gradient):

- ``f``: a scalar (Python float or any array with one element);
- ``f_grad``: the flat ``(n,)`` gradient (an ``(n, 1)`` column is accepted), or a mapping
  ``{name: array of the variable's shape}``;
- ``ci``/``ce``: an array of any shape (flattened row-major, see
  :mod:`ncvx_ref.adapters.variables`);
- ``ci_grad``/``ce_grad``: the ``(n, m)`` matrix whose column ``j`` is the gradient of
  constraint ``j``, or a mapping ``{name: array of shape (*var_shape, *group_shape)}``.

:func:`check_gradients` compares the gradients of any adapted problem against central
finite differences and reports the worst entries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import array_api_compat as aac
import numpy as np

from ncvx_ref.backend import to_host
from ncvx_ref.evaluation import Evaluation

from ._solve import Solution, run_solve
from .variables import AdapterError, GroupSizes, Variables

Array = Any
VariablesSpec = Union[int, Mapping[str, Any], Variables]

__all__ = ["Problem", "from_separate", "solve", "check_gradients", "GradientCheck",
           "GradientMismatch"]


def _layout(variables: VariablesSpec) -> Variables:
    if isinstance(variables, Variables):
        return variables
    if isinstance(variables, Mapping):
        return Variables.from_shapes(variables)
    return Variables.flat_vector(variables)


def _check_like_x(a: Array, x: Array, what: str) -> None:
    """``a`` must be an array of ``x``'s namespace, dtype and device."""
    try:
        aac.array_namespace(a, x)
    except TypeError:
        raise AdapterError(f"{what} is a {type(a).__name__} but x is a {type(x).__name__}: "
                           f"return arrays of the namespace of x") from None
    if a.dtype != x.dtype:
        raise AdapterError(f"{what} has dtype {a.dtype} but x has dtype {x.dtype}: compute it "
                           f"in x's dtype (e.g. create constants with dtype=x.dtype)")
    if aac.device(a) != aac.device(x):
        raise AdapterError(f"{what} is on {aac.device(a)} but x is on {aac.device(x)}: keep "
                           f"every array on x's device")


class Problem:
    """A user function returning values and gradients, as the core's ``x -> Evaluation``.

    Parameters
    ----------
    fn
        ``fn(**variables) -> (f, f_grad, ci, ci_grad, ce, ce_grad)`` (``fn(x)`` for a flat problem).
    variables
        ``n`` (a flat problem), a mapping ``{name: shape}``, or a :class:`Variables` layout.
    """

    def __init__(self, fn: Callable, variables: VariablesSpec):
        self.fn = fn
        self.variables = _layout(variables)
        self.groups: Optional[GroupSizes] = None

    @property
    def n(self) -> int:
        return self.variables.n

    def __call__(self, x: Array) -> Evaluation:
        out = self.variables.call(self.fn, x)
        if not isinstance(out, (tuple, list)) or len(out) != 6:
            got = f"a {type(out).__name__}" + (f" of length {len(out)}"
                                               if isinstance(out, (tuple, list)) else "")
            raise AdapterError(f"the analytic function must return (f, f_grad, ci, ci_grad, ce, "
                               f"ce_grad) with None for absent groups; got {got}.  To have "
                               f"gradients computed for you, use the torch, jax or autograd adapter")
        f, g, ci, ci_grad, ce, ce_grad = out
        xp = aac.array_namespace(x)
        f = self._objective(f, x)
        g = self._gradient(g, x, xp)
        ci, ci_grad = self._group(ci, ci_grad, x, xp, "inequality")
        ce, ce_grad = self._group(ce, ce_grad, x, xp, "equality")
        m_i = 0 if ci is None else ci.shape[0]
        m_e = 0 if ce is None else ce.shape[0]
        if self.groups is None:
            self.groups = GroupSizes(m_i, m_e)
        else:
            self.groups.check(m_i, m_e)
        return Evaluation(f=f, f_grad=g, ci=ci, ci_grad=ci_grad, ce=ce, ce_grad=ce_grad)

    # -- normalization of each output ---------------------------------------------------------
    @staticmethod
    def _objective(f: Any, x: Array) -> Any:
        if isinstance(f, (int, float)) and not isinstance(f, bool):
            return float(f)
        if not hasattr(f, "shape"):
            raise AdapterError(f"the objective must be a scalar (a float or a one-element array), "
                               f"got a {type(f).__name__}")
        if math.prod(f.shape) != 1:
            raise AdapterError(f"the objective must be a scalar, got an array of shape "
                               f"{tuple(f.shape)}: reduce it (sum, mean, max, ...)")
        _check_like_x(f, x, "the objective")
        return aac.array_namespace(f).reshape(f, ())

    def _gradient(self, g: Any, x: Array, xp) -> Array:
        n = self.n
        if isinstance(g, Mapping):
            g = self.variables.flatten_gradient(g, None, "the objective gradient")
        if g is None or not hasattr(g, "shape"):
            raise AdapterError(f"the objective gradient must be an array of shape ({n},), got "
                               f"{type(g).__name__}")
        if tuple(g.shape) not in ((n,), (n, 1)):
            raise AdapterError(f"the objective gradient has shape {tuple(g.shape)}, expected "
                               f"({n},) (or an ({n}, 1) column)")
        _check_like_x(g, x, "the objective gradient")
        return xp.reshape(g, (n,))

    def _group(self, c: Any, grad: Any, x: Array, xp, kind: str) -> Tuple[Optional[Array],
                                                                          Optional[Array]]:
        n = self.n
        absent = c is None or (hasattr(c, "shape") and math.prod(c.shape) == 0)
        if absent:
            if grad is not None and not (hasattr(grad, "shape") and math.prod(grad.shape) == 0):
                raise AdapterError(f"no {kind} values were returned but a {kind} gradient was: "
                                   f"return None for both or neither")
            return None, None
        if not hasattr(c, "shape"):
            raise AdapterError(f"the {kind} constraints must be an array, got {type(c).__name__}")
        _check_like_x(c, x, f"the {kind} constraint values")
        m = math.prod(c.shape)
        c = xp.reshape(c, (m,))
        if grad is None:
            raise AdapterError(f"{kind} constraint values were returned without their gradient "
                               f"matrix: return it as an ({n}, {m}) array")
        if isinstance(grad, Mapping):
            grad = self.variables.flatten_gradient(grad, m, f"the {kind} constraint gradients")
        if tuple(grad.shape) != (n, m):
            hint = (f" (that is the transpose: return {kind} gradients as columns)"
                    if tuple(grad.shape) == (m, n) and m != n else "")
            raise AdapterError(f"the {kind} constraint gradients have shape {tuple(grad.shape)}, "
                               f"expected ({n}, {m}): column j is the gradient of constraint j"
                               f"{hint}")
        _check_like_x(grad, x, f"the {kind} constraint gradients")
        return c, grad


def from_separate(obj_fn: Callable, ineq_fn: Optional[Callable] = None,
                  eq_fn: Optional[Callable] = None, *, variables: VariablesSpec) -> Problem:
    """GRANSO's separate format: ``obj_fn -> (f, f_grad)``, ``ineq_fn``/``eq_fn -> (c, grad)`` or None."""

    def combined(*args, **kwargs):
        f, g = obj_fn(*args, **kwargs)
        ci = ci_grad = ce = ce_grad = None
        if ineq_fn is not None:
            ci, ci_grad = ineq_fn(*args, **kwargs)
        if eq_fn is not None:
            ce, ce_grad = eq_fn(*args, **kwargs)
        return f, g, ci, ci_grad, ce, ce_grad

    return Problem(combined, variables)


def solve(fn: Callable, x0: Union[Array, Mapping[str, Array]], *, options=None, qp_solver=None,
          callback: Optional[Callable] = None, record_history: bool = False,
          **option_kwargs) -> Solution:
    """Minimize the analytic problem ``fn`` from ``x0`` (a flat array or ``{name: array}``).

    The run's namespace, dtype and device are those of ``x0``; the solution gives the variables
    back in the same structure.  ``options``/``option_kwargs`` are the core's options.
    """
    if isinstance(x0, Mapping):
        variables = Variables.from_arrays(x0)
    else:
        if len(getattr(x0, "shape", ())) != 1:
            raise AdapterError("x0 must be a 1-D array or a mapping {name: array}")
        variables = Variables.flat_vector(x0.shape[0])
    x = variables.flatten(x0)
    problem = Problem(fn, variables)
    return run_solve(problem, x, variables.unflatten, options=options, qp_solver=qp_solver,
                     callback=callback, record_history=record_history, **option_kwargs)


# -- gradient checking --------------------------------------------------------------------------

@dataclass(frozen=True)
class GradientMismatch:
    """One compared entry: d(output)/d(x[index])."""

    output: str        # "f", "ci[j]" or "ce[j]"
    index: int         # position in the flat x
    variable: str      # the variable and element, e.g. "W[1, 2]"
    analytic: float
    finite_difference: float
    error: float       # |analytic - fd| / max(1, |analytic|, |fd|)


@dataclass(frozen=True)
class GradientCheck:
    """The result of :func:`check_gradients`: the worst entries and whether all are within ``tol``."""

    max_error: float
    tol: float
    step: float
    worst: Tuple[GradientMismatch, ...]
    n_compared: int

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tol

    def __str__(self) -> str:
        head = (f"gradient check: {'OK' if self.ok else 'MISMATCH'}; max error "
                f"{self.max_error:.3g} (tol {self.tol:.3g}, step {self.step:.3g}, "
                f"{self.n_compared} entries)")
        rows = [f"  d {w.output:<10} / d {w.variable:<16} analytic {w.analytic: .6e}  "
                f"finite-diff {w.finite_difference: .6e}  error {w.error:.3g}" for w in self.worst]
        return "\n".join([head] + rows)


def _element_name(variables: Optional[Variables], i: int) -> str:
    if variables is None or variables.flat:
        return f"x[{i}]"
    for name, shape, off, size in zip(variables.names, variables.shapes, variables.offsets,
                                      variables.sizes):
        if off <= i < off + size:
            idx = np.unravel_index(i - off, shape) if shape else ()
            return f"{name}[{', '.join(str(int(k)) for k in idx)}]" if shape else name
    return f"x[{i}]"  # pragma: no cover - i < n always


def _as_evaluation(out: Any) -> Evaluation:
    if isinstance(out, Evaluation):
        return out
    if isinstance(out, (tuple, list)) and len(out) == 6:
        return Evaluation(*out)
    raise AdapterError("check_gradients needs a function x -> Evaluation (any adapter's problem) "
                       "or x -> (f, f_grad, ci, ci_grad, ce, ce_grad)")


def _stack_host(ev: Evaluation, n: int) -> Tuple[np.ndarray, np.ndarray, list]:
    """Values (1+m,) and gradients (n, 1+m) of one evaluation, on the host in float64."""
    vals = [np.reshape(to_host(ev.f) if hasattr(ev.f, "shape") else np.float64(ev.f), (1,))]
    grads = [np.reshape(to_host(ev.f_grad), (n, 1))]
    labels = ["f"]
    for name, c, cg in (("ci", ev.ci, ev.ci_grad), ("ce", ev.ce, ev.ce_grad)):
        if c is not None:
            ch = np.reshape(to_host(c), (-1,))
            vals.append(ch)
            grads.append(np.reshape(to_host(cg), (n, ch.shape[0])))
            labels += [f"{name}[{j}]" for j in range(ch.shape[0])]
    return np.concatenate(vals), np.concatenate(grads, axis=1), labels


def check_gradients(fun: Callable, x: Union[Array, Mapping[str, Array]], *,
                    step: Optional[float] = None, tol: Optional[float] = None,
                    n_worst: int = 5) -> GradientCheck:
    """Compare the gradients ``fun`` returns at ``x`` with central finite differences.

    ``fun`` is an adapted problem (any adapter's ``Problem``; for a named problem ``x`` may be
    the ``{name: array}`` mapping) or any ``x -> Evaluation`` / 6-tuple function.  Costs
    ``2 n + 1`` evaluations.  The step defaults to ``eps**(1/3) * max(1, |x_i|)`` and the
    tolerance on the relative error ``|a - d| / max(1, |a|, |d|)`` to ``eps**(1/3)`` of x's
    dtype (truncation and round-off of central differences are both of that order).  At a
    point where the function is not differentiable the two legitimately differ: check at a
    generic point.  Returns a :class:`GradientCheck` (``ok``, ``max_error``, the ``n_worst``
    entries); print it for a table.
    """
    variables = getattr(fun, "variables", None)
    if isinstance(x, Mapping):
        if not isinstance(variables, Variables):
            raise AdapterError("x is a mapping of named variables, but `fun` has no named "
                               "layout: pass the adapter's Problem, or a flat x")
        x = variables.flatten(x)
    if not isinstance(variables, Variables):
        variables = None
    xp = aac.array_namespace(x)
    n = x.shape[0]
    eps = float(xp.finfo(x.dtype).eps)
    tol = eps ** (1.0 / 3.0) if tol is None else float(tol)
    base = eps ** (1.0 / 3.0) if step is None else float(step)
    x_host = to_host(x)
    _, analytic, labels = _stack_host(_as_evaluation(fun(x)), n)
    fd = np.empty_like(analytic)
    for i in range(n):
        h = base * max(1.0, abs(x_host[i]))
        values, where = [], []
        for sign in (1.0, -1.0):
            xi = x_host.copy()
            xi[i] += sign * h
            xi_dev = xp.asarray(xi, dtype=x.dtype, device=aac.device(x))
            where.append(to_host(xi_dev)[i])  # the step actually taken, after rounding to x's dtype
            values.append(_stack_host(_as_evaluation(fun(xi_dev)), n)[0])
        fd[i] = (values[0] - values[1]) / (where[0] - where[1])
    err = np.abs(analytic - fd) / np.maximum(1.0, np.maximum(np.abs(analytic), np.abs(fd)))
    err = np.where(np.isnan(err), np.inf, err)
    order = np.argsort(err, axis=None, kind="stable")[::-1][:n_worst]
    worst = []
    for flat_idx in order:
        i, j = np.unravel_index(flat_idx, err.shape)
        worst.append(GradientMismatch(output=labels[j], index=int(i),
                                      variable=_element_name(variables, int(i)),
                                      analytic=float(analytic[i, j]),
                                      finite_difference=float(fd[i, j]), error=float(err[i, j])))
    return GradientCheck(max_error=float(err.max()) if err.size else 0.0, tol=tol,
                         step=base, worst=tuple(worst), n_compared=int(err.size))
