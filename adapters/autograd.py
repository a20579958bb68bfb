"""HIPS autograd adapter: write ``f``, ``c_I``, ``c_E`` with ``autograd.numpy``; the core runs on NumPy.

The user function returns ``f``, ``(f, ci)`` or ``(f, ci, ce)`` (``f`` a scalar, each group
``None``, one array of any shape, or a list/tuple/dict of arrays; see
:mod:`ncvx_ref.adapters.variables` for the flattening order) and receives the variables by
name (``fn(W=..., b=...)``) or, for a flat problem, the vector ``x``.

One evaluation = one forward pass, recorded once, then one reverse sweep per output
(``1 + m`` sweeps over the same tape, as ``autograd.jacobian`` does).  HIPS autograd cannot
batch those sweeps: for many constraints prefer the torch or JAX adapter, which vectorize them.
Nonsmooth points get autograd's subgradient choices (``abs'(0) = 0``; ties in ``max`` share
the gradient).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping, Optional

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.tracer import getval

from ncvx_ref.evaluation import Evaluation

from ._solve import Solution, run_solve
from .variables import AdapterError, GroupSizes, Variables, group_arrays, split_output

__all__ = ["Problem", "solve"]


def _layout(variables) -> Variables:
    if isinstance(variables, Variables):
        return variables
    if isinstance(variables, Mapping):
        return Variables.from_shapes(variables)
    return Variables.flat_vector(variables)


def _check_output(t: Any, dtype, what: str) -> None:
    """An output must be a floating NumPy array (or an autograd box of one) of x's dtype."""
    value = getval(t)
    if isinstance(value, float):
        return  # a Python float mixes with any dtype (it can only be a constant)
    if not isinstance(value, (np.ndarray, np.generic)):
        raise AdapterError(f"{what} is a {type(value).__name__}: compute it with autograd.numpy "
                           f"operations on the variables")
    if not np.issubdtype(value.dtype, np.floating):
        raise AdapterError(f"{what} has dtype {value.dtype}, which is not differentiable (argmax, "
                           f"comparisons and integer casts have no gradient): return a floating array")
    if value.dtype != dtype:
        raise AdapterError(f"{what} has dtype {value.dtype} but the variables are {dtype}: create "
                           f"your data with the variables' dtype")


class Problem:
    """An ``autograd.numpy`` function of named variables as the core's ``x -> Evaluation``.

    Parameters
    ----------
    fn
        ``fn(**variables)`` or ``fn(x)`` (flat), returning ``f``, ``(f, ci)`` or ``(f, ci, ce)``.
    variables
        ``n`` (flat), a mapping ``{name: shape}`` or a :class:`Variables` layout.
    """

    def __init__(self, fn: Callable, variables):
        self.fn = fn
        self.variables = _layout(variables)
        self.groups: Optional[GroupSizes] = None

    @property
    def n(self) -> int:
        return self.variables.n

    def _stacked(self, x):
        f, ci, ce = split_output(self.variables.call(self.fn, x))
        _check_output(f, x.dtype, "the objective")
        if math.prod(np.shape(getval(f))) != 1:
            raise AdapterError(f"the objective must be a scalar, got shape "
                               f"{np.shape(getval(f))}: reduce it (sum, mean, max, ...)")
        sizes, parts = [], [anp.reshape(f, (1,))]
        for kind, group in (("inequality", ci), ("equality", ce)):
            arrays = group_arrays(group, f"the {kind} constraints")
            for k, a in enumerate(arrays):
                _check_output(a, x.dtype, f"the {kind} constraints (item {k})")
            parts += [anp.reshape(a, (-1,)) for a in arrays]
            sizes.append(sum(math.prod(np.shape(getval(a))) for a in arrays))
        if self.groups is None:
            self.groups = GroupSizes(*sizes)
        else:
            self.groups.check(*sizes)
        return anp.concatenate(parts)

    def __call__(self, x: np.ndarray) -> Evaluation:
        if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
            raise AdapterError(f"x must be a NumPy float64 or float32 array, got "
                               f"{type(x).__name__} {getattr(x, 'dtype', '')}")
        if x.shape != (self.n,):
            raise AdapterError(f"x must have shape ({self.n},), got {x.shape}")
        with warnings.catch_warnings():
            # autograd warns when an output does not depend on x; its gradient is then zero
            warnings.filterwarnings("ignore", message="Output seems independent of input")
            vjp, z = make_vjp(self._stacked)(x)
            eye = np.eye(z.shape[0], dtype=x.dtype)
            jac = np.stack([np.asarray(vjp(eye[j]), dtype=x.dtype) for j in range(z.shape[0])])
        z = np.asarray(z, dtype=x.dtype)
        mi, me = self.groups.m_ineq, self.groups.m_eq
        ci = ci_grad = ce = ce_grad = None
        if mi:
            ci, ci_grad = z[1:1 + mi], jac[1:1 + mi].T  # n x m_I: columns are gradients
        if me:
            ce, ce_grad = z[1 + mi:], jac[1 + mi:].T
        return Evaluation(f=np.reshape(z[:1], ()), f_grad=jac[0], ci=ci, ci_grad=ci_grad, ce=ce, ce_grad=ce_grad)


def solve(fn: Callable, x0: Any, *, options=None, qp_solver=None,
          callback: Optional[Callable] = None, record_history: bool = False,
          **option_kwargs) -> Solution:
    """Minimize the autograd problem ``fn`` from ``x0`` (a 1-D NumPy array or ``{name: array}``).

    The dtype of the run is that of ``x0`` (float64 recommended); the solution gives the
    variables back in the same structure.
    """
    if isinstance(x0, Mapping):
        x0 = {k: np.asarray(v) for k, v in x0.items()}
        variables = Variables.from_arrays(x0)
    else:
        x0 = np.asarray(x0)
        if x0.ndim != 1:
            raise AdapterError("x0 must be a 1-D array or a mapping {name: array}")
        variables = Variables.flat_vector(x0.shape[0])
    x = np.array(variables.flatten(x0))
    problem = Problem(fn, variables)
    return run_solve(problem, x, variables.unflatten, options=options, qp_solver=qp_solver,
                     callback=callback, record_history=record_history, **option_kwargs)
