"""JAX adapter: write ``f``, ``c_I``, ``c_E`` in ``jax.numpy``; the evaluation is jit-compiled.

The core runs on JAX arrays (JAX implements the Array API itself).  One evaluation is one call
of a jit-compiled function returning the values and all gradients: the outputs are stacked
into ``z = (f, c_I, c_E)`` of length ``1 + m`` and differentiated at once, with
``jax.jacrev`` (reverse mode, vectorized over the ``1 + m`` cotangents) when ``1 + m <= n``
and ``jax.jacfwd`` (forward mode, vectorized over the ``n`` tangents) otherwise.

The user function returns ``f``, ``(f, ci)`` or ``(f, ci, ce)`` (``f`` a scalar, each group
``None``, one array of any shape, or a list/tuple/dict of arrays; see
:mod:`ncvx_ref.adapters.variables` for the flattening order) and receives

- the variables by name (``fn(W=..., b=...)``) for a mapping ``{name: shape}`` or
  ``{name: initial array}``,
- the flat vector ``x`` for a flat problem (``variables=n``),
- the whole pytree for ``pytree=...`` (``fn(params)``, e.g. a nested dict of network weights);
  a pytree is flattened in JAX's leaf order (``jax.tree_util``: dict keys *sorted*), each leaf
  row-major, as ``jax.flatten_util.ravel_pytree`` does.

**float64.**  JAX computes in float32 unless its 64-bit mode is on.  This adapter never
changes that global setting by itself: call :func:`enable_x64` once at program start (or set
the environment variable ``JAX_ENABLE_X64=1``) before creating arrays.  float64 initial values
while the mode is off are an error, not a silent downcast.

Nonsmooth points get JAX's subgradient choices (``abs'(0) = 0``, ``relu'(0) = 0``, ties in
``max`` share the gradient).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ncvx_ref.evaluation import Evaluation

from ._solve import Solution, run_solve
from .variables import AdapterError, GroupSizes, Variables, group_arrays, split_output

__all__ = ["Problem", "solve", "enable_x64"]

_MODES = ("auto", "rev", "fwd")


def enable_x64() -> None:
    """Turn on JAX's 64-bit mode (``jax_enable_x64``), needed for float64 runs.

    This is a process-wide JAX setting; call it once, at program start, before creating arrays.
    """
    jax.config.update("jax_enable_x64", True)


def _x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


class _PytreeLayout:
    """The leaves of an example pytree as variables, in JAX's leaf order."""

    def __init__(self, example: Any):
        leaves, self.treedef = jax.tree_util.tree_flatten(example)
        if not leaves:
            raise AdapterError("the pytree has no leaves: nothing to optimize")
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(example)[0]]
        self.variables = Variables.from_shapes({p: tuple(np.shape(v)) for p, v in zip(paths, leaves)})
        self.flat = False

    @property
    def n(self) -> int:
        return self.variables.n

    def unflatten(self, x) -> Any:
        parts = self.variables.unflatten(x)
        return jax.tree_util.tree_unflatten(self.treedef, list(parts.values()))

    def call(self, fn: Callable, x) -> Any:
        return fn(self.unflatten(x))

    def flatten(self, tree: Any):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        if treedef != self.treedef:
            raise AdapterError(f"the pytree structure {treedef} does not match the problem's "
                               f"{self.treedef}")
        return self.variables.flatten(dict(zip(self.variables.names, leaves)))


def _layout(variables, pytree):
    if pytree is not None:
        if variables is not None:
            raise AdapterError("give either `variables` or `pytree`, not both")
        return _PytreeLayout(pytree)
    if isinstance(variables, Variables):
        return variables
    if isinstance(variables, Mapping):
        return Variables.from_shapes(variables)
    if variables is None:
        raise AdapterError("give `variables` (n, or a mapping {name: shape}) or `pytree`")
    return Variables.flat_vector(variables)


def _check_output(t: Any, dtype, what: str) -> None:
    """At trace time: an output must be a floating JAX array of x's dtype."""
    if not isinstance(t, jax.Array):
        raise AdapterError(
            f"{what} is a {type(t).__name__}, not a JAX array, so it cannot be differentiated: "
            f"compute it with jax.numpy operations on the variables (no NumPy, no float())")
    if not jnp.issubdtype(t.dtype, jnp.floating):
        raise AdapterError(f"{what} has dtype {t.dtype}, which is not differentiable (argmax, "
                           f"comparisons and integer casts have no gradient): return a floating array")
    if t.dtype != dtype:
        raise AdapterError(f"{what} has dtype {t.dtype} but the variables are {dtype}: create "
                           f"your data with the variables' dtype (e.g. jnp.asarray(data, {dtype}))")


class Problem:
    """A JAX function of named variables (or of a pytree) as the core's ``x -> Evaluation``.

    Parameters
    ----------
    fn
        ``fn(**variables)``, ``fn(x)`` (flat) or ``fn(pytree)``, returning ``f``, ``(f, ci)`` or
        ``(f, ci, ce)``.
    variables
        ``n`` (flat), a mapping ``{name: shape}`` or a :class:`Variables` layout.
    pytree
        An example pytree (e.g. the initial parameters) whose leaves are the variables.
    mode
        ``"auto"`` (reverse if ``1 + m <= n`` else forward), ``"rev"`` or ``"fwd"``.
    """

    def __init__(self, fn: Callable, variables=None, *, pytree: Any = None, mode: str = "auto"):
        if mode not in _MODES:
            raise AdapterError(f"`mode` must be one of {_MODES}, got {mode!r}")
        self.fn = fn
        self.layout = _layout(variables, pytree)
        self.mode = mode
        self.groups: Optional[GroupSizes] = None
        self._compiled: Optional[Callable] = None
        self._dtype = None

    @property
    def variables(self) -> Variables:
        return self.layout.variables if isinstance(self.layout, _PytreeLayout) else self.layout

    @property
    def n(self) -> int:
        return self.layout.n

    def unflatten(self, x):
        return self.layout.unflatten(x)

    def flatten(self, values):
        return self.layout.flatten(values)

    # -- evaluation ---------------------------------------------------------------------------
    def _split(self, x) -> Tuple[Any, list, list]:
        f, ci, ce = split_output(self.layout.call(self.fn, x))
        _check_output(f, x.dtype, "the objective")
        if f.size != 1:
            raise AdapterError(f"the objective must be a scalar, got shape {tuple(f.shape)}: "
                               f"reduce it (sum, mean, max, ...)")
        groups = []
        for kind, group in (("inequality", ci), ("equality", ce)):
            arrays = group_arrays(group, f"the {kind} constraints")
            for k, a in enumerate(arrays):
                _check_output(a, x.dtype, f"the {kind} constraints (item {k})")
            groups.append([jnp.reshape(a, (-1,)) for a in arrays])
        return f, groups[0], groups[1]

    def _stacked(self, x):
        f, ci, ce = self._split(x)
        z = jnp.concatenate([jnp.reshape(f, (1,))] + ci + ce)
        return z, z

    def _setup(self, x) -> None:
        """First evaluation: check x, find the group sizes by abstract tracing, pick the mode, jit."""
        if tuple(x.shape) != (self.n,):
            raise AdapterError(f"x must have shape ({self.n},), got {tuple(x.shape)}")
        if x.dtype not in (jnp.float32, jnp.float64):
            raise AdapterError(f"x has dtype {x.dtype}; the solver runs in float64 or float32")
        shapes = jax.eval_shape(lambda v: self._split(v)[1:], x)
        sizes = [sum(int(np.prod(a.shape)) for a in group) for group in shapes]
        self.groups = GroupSizes(*sizes)
        self._dtype = x.dtype
        rows = 1 + self.groups.m
        mode = ("rev" if rows <= self.n else "fwd") if self.mode == "auto" else self.mode
        transform = jax.jacrev if mode == "rev" else jax.jacfwd
        mi, me = self.groups.m_ineq, self.groups.m_eq
        jac_fn = transform(self._stacked, has_aux=True)

        def evaluate(v):
            jac, z = jac_fn(v)
            ci = ci_grad = ce = ce_grad = None
            if mi:
                ci, ci_grad = z[1:1 + mi], jac[1:1 + mi].T  # n x m_I: columns are gradients
            if me:
                ce, ce_grad = z[1 + mi:], jac[1 + mi:].T
            return z[0], jac[0], ci, ci_grad, ce, ce_grad

        self.resolved_mode = mode
        self._compiled = jax.jit(evaluate)

    def __call__(self, x) -> Evaluation:
        if not isinstance(x, jax.Array):
            raise AdapterError(f"x must be a JAX array, got {type(x).__name__}: start the run "
                               f"from a JAX x0")
        if self._compiled is None:
            self._setup(x)
        elif x.dtype != self._dtype:
            raise AdapterError(f"x has dtype {x.dtype}, the problem was set up for {self._dtype}")
        return Evaluation(*self._compiled(x))


def _initial(values: Any) -> Any:
    """Initial values as JAX arrays; float64 input with 64-bit mode off is an error, not a downcast."""
    leaves = jax.tree_util.tree_leaves(values)
    for leaf in leaves:
        if np.dtype(getattr(leaf, "dtype", np.float64)) == np.float64 and not _x64_enabled():
            raise AdapterError(
                "the initial values are float64 but JAX's 64-bit mode is off (JAX would silently "
                "compute in float32): call ncvx_ref.adapters.jax.enable_x64() at program start, "
                "or set JAX_ENABLE_X64=1, or pass float32 values")
    # explicit dtype: a weakly typed x0 (from Python scalars) would make jit compile twice
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=jnp.asarray(v).dtype), values)


def solve(fn: Callable, x0: Any, *, pytree: bool = False, mode: str = "auto", options=None,
          qp_solver=None, callback: Optional[Callable] = None, record_history: bool = False,
          **option_kwargs) -> Solution:
    """Minimize the JAX problem ``fn`` and give the variables back in the structure of ``x0``.

    ``x0``: a flat mapping ``{name: array}`` (``fn`` receives the variables by name), a 1-D
    array (``fn(x)``), or any other pytree, nested mappings included (``fn(tree)``; with
    ``pytree=True`` a flat mapping is passed whole too).  The dtype of the run is that of ``x0`` (see :func:`enable_x64` for float64).
    """
    x0 = _initial(x0)
    named = isinstance(x0, Mapping) and all(isinstance(v, jax.Array) for v in x0.values())
    if pytree or not (named or (isinstance(x0, jax.Array) and x0.ndim == 1)):
        problem = Problem(fn, pytree=x0, mode=mode)
    elif isinstance(x0, Mapping):
        problem = Problem(fn, Variables.from_arrays(x0), mode=mode)
    else:
        problem = Problem(fn, Variables.flat_vector(x0.shape[0]), mode=mode)
    x = problem.flatten(x0)
    return run_solve(problem, x, problem.unflatten, options=options, qp_solver=qp_solver,
                     callback=callback, record_history=record_history, **option_kwargs)
