"""PyTorch adapter: write ``f``, ``c_I``, ``c_E`` in torch; gradients come from ``torch.func``.

On CUDA the core runs on torch tensors through array-api-compat: ``x``, every gradient and
every Jacobian stay on the variables' device, with no round trip through NumPy.  On the CPU it
runs on NumPy views of the same memory (``ncvx_ref/host_views.py``: nothing is copied, and the
function sees torch tensors), for NumPy's lower per-operation cost.

The user function returns ``f``, ``(f, ci)`` or ``(f, ci, ce)``; ``f`` a scalar tensor, each
constraint group ``None``, one tensor of any shape, or a list/tuple/dict of tensors
(flattened as documented in :mod:`ncvx_ref.adapters.variables`).  It receives

- the variables by name (``fn(W=..., b=...)``) for a mapping ``{name: shape}``,
- the flat vector ``x`` for a flat problem (``variables=n``),
- the module itself for ``module=net`` (``fn(net)``): inside ``fn`` the module's trainable
  parameters are the solver's variables (via ``torch.func.functional_call``); the module's
  own parameters are never modified and never accumulate ``.grad``.

**One evaluation = one forward pass + vectorized derivative passes.**  The outputs are
``z = (f, c_I, c_E)`` of length ``1 + m``.  When ``1 + m <= n``, reverse mode: one forward
pass under ``torch.func.vjp``, then one plain backward pass for ``f`` and one backward pass
``vmap``-ped over the ``m`` constraint cotangents, in which the objective's part of the graph
gets an *unbatched* zero cotangent, so it runs once at size ``n`` instead of ``m`` times (the
cost of ``jacrev`` on the stacked ``z``, which pushes all ``1 + m`` cotangents through every
op).  Otherwise forward mode (``torch.func.jacfwd``: ``n`` vmapped tangents).
``mode="loop"`` (one ``autograd.grad`` per output) exists for functions that ``vmap`` cannot
batch (e.g. Python control flow on tensor values under forward mode) and for benchmarks.
Nonsmooth points get torch's subgradient choices (``abs'(0) = 0``, ``relu'(0) = 0``, ties
in ``max``/``amax`` share the gradient).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch

from ncvx_ref.evaluation import Evaluation

from ._solve import Solution, run_solve
from .variables import (AdapterError, GroupSizes, Variables, group_arrays, split_output)

Tensor = torch.Tensor

__all__ = ["Problem", "solve", "load_parameters", "AdapterWarning"]

_MODES = ("auto", "rev", "fwd", "loop")


class AdapterWarning(UserWarning):
    """Something legal but probably unintended (e.g. an output that does not depend on x)."""


class _ModuleLayout:
    """The trainable parameters of an ``nn.Module`` as named variables, in ``named_parameters()`` order."""

    def __init__(self, module: torch.nn.Module):
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise AdapterError("the module has no trainable parameters (requires_grad=True): "
                               "nothing to optimize")
        self.module = module
        self.variables = Variables.from_shapes({k: tuple(p.shape) for k, p in named})
        self.flat = False

        class _Call(torch.nn.Module):  # runs fn(module) under functional_call's reparametrization
            def __init__(self, inner):
                super().__init__()
                self.inner = inner
                self.fn: Optional[Callable] = None

            def forward(self):
                return self.fn(self.inner)

        self._caller = _Call(module)

    @property
    def n(self) -> int:
        return self.variables.n

    def unflatten(self, x: Tensor) -> Dict[str, Tensor]:
        return self.variables.unflatten(x)

    def flatten(self, values: Mapping[str, Tensor]) -> Tensor:
        return self.variables.flatten(values)

    def call(self, fn: Callable, x: Tensor) -> Any:
        params = {"inner." + k: v for k, v in self.variables.unflatten(x).items()}
        self._caller.fn = fn
        try:
            return torch.func.functional_call(self._caller, params, ())
        finally:
            self._caller.fn = None

    def initial_x(self) -> Tensor:
        named = dict(self.module.named_parameters())
        return self.flatten({k: named[k].detach() for k in self.variables.names}).clone()


def _layout(variables, module):
    if module is not None:
        if variables is not None:
            raise AdapterError("give either `variables` or `module`, not both")
        if not isinstance(module, torch.nn.Module):
            raise AdapterError(f"`module` must be a torch.nn.Module, got {type(module).__name__}")
        return _ModuleLayout(module)
    if isinstance(variables, Variables):
        return variables
    if isinstance(variables, Mapping):
        return Variables.from_shapes(variables)
    if variables is None:
        raise AdapterError("give `variables` (n, or a mapping {name: shape}) or `module`")
    return Variables.flat_vector(variables)


def _check_output(t: Any, x: Tensor, what: str) -> None:
    """An output must be a floating tensor of x's dtype on x's device."""
    if not isinstance(t, torch.Tensor):
        raise AdapterError(
            f"{what} is a {type(t).__name__}, not a torch tensor, so it cannot be "
            f"differentiated: compute it with torch operations on the variables (no .item(), "
            f"no NumPy, no Python floats)")
    if not t.is_floating_point():
        raise AdapterError(f"{what} has dtype {t.dtype}, which is not differentiable (argmax, "
                           f"comparisons and integer casts have no gradient): return a floating "
                           f"tensor")
    if t.device != x.device:
        raise AdapterError(f"{what} is on {t.device} but the variables are on {x.device}: "
                           f"create your data on the variables' device (e.g. data.to(x.device))")
    if t.dtype != x.dtype:
        raise AdapterError(f"{what} has dtype {t.dtype} but the variables are {x.dtype}: "
                           f"create your data with the variables' dtype (e.g. data.to({x.dtype}))")


class Problem:
    """A torch function of named variables (or of a module) as the core's ``x -> Evaluation``.

    Parameters
    ----------
    fn
        ``fn(**variables)``, ``fn(x)`` (flat) or ``fn(module)``, returning ``f``,
        ``(f, ci)`` or ``(f, ci, ce)``.
    variables
        ``n`` (flat), a mapping ``{name: shape}`` or a :class:`Variables` layout.
    module
        An ``nn.Module`` whose trainable parameters are the variables (instead of ``variables``).
    mode
        ``"auto"`` (reverse if ``1 + m <= n`` else forward), ``"rev"``, ``"fwd"`` or ``"loop"``.
    chunk_size
        Reverse mode: at most this many constraint cotangents per vmapped backward pass
        (bounds its temporaries to ``chunk_size x n``); None: all ``m`` in one pass (fastest
        when memory allows: one large matrix product beats many thin ones).
    """

    def __init__(self, fn: Callable, variables=None, *, module: Optional[torch.nn.Module] = None,
                 mode: str = "auto", chunk_size: Optional[int] = None):
        if mode not in _MODES:
            raise AdapterError(f"`mode` must be one of {_MODES}, got {mode!r}")
        if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 1):
            raise AdapterError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}")
        self.fn = fn
        self.layout = _layout(variables, module)
        self.mode = mode
        self.chunk_size = chunk_size
        self.groups: Optional[GroupSizes] = None
        self._resolved_mode: Optional[str] = None

    @property
    def variables(self) -> Variables:
        return self.layout.variables if isinstance(self.layout, _ModuleLayout) else self.layout

    @property
    def n(self) -> int:
        return self.layout.n

    def unflatten(self, x: Tensor):
        return self.layout.unflatten(x)

    def flatten(self, values) -> Tensor:
        return self.layout.flatten(values)

    # -- evaluation ---------------------------------------------------------------------------
    def _stack(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """x -> z = (f, c_I, c_E) stacked, returned twice (value and aux for jacrev/jacfwd)."""
        f, c = self._split(x)
        z = torch.cat([f.reshape(1), c])
        return z, z

    def _probe(self, x: Tensor) -> None:
        """First evaluation: validate the outputs with plain autograd and fix the group sizes."""
        if tuple(x.shape) != (self.n,):
            raise AdapterError(f"x must have shape ({self.n},), got {tuple(x.shape)}")
        if x.dtype not in (torch.float32, torch.float64):
            raise AdapterError(f"x has dtype {x.dtype}; the solver runs in float64 (default) or "
                               f"float32: cast the variables")
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            try:
                out = self.layout.call(self.fn, xg)
            except RuntimeError as e:
                if "device" in str(e):
                    raise AdapterError(f"the function mixes devices ({e}); the variables are on "
                                       f"{x.device}: move your data there") from e
                raise
            f, ci, ce = split_output(out)
            _check_output(f, x, "the objective")
            if f.numel() != 1:
                raise AdapterError(f"the objective must be a scalar, got shape {tuple(f.shape)}: "
                                   f"reduce it (sum, mean, max, ...)")
            sizes = []
            for kind, group in (("inequality", ci), ("equality", ce)):
                arrays = group_arrays(group, f"the {kind} constraints")
                for k, a in enumerate(arrays):
                    _check_output(a, x, f"the {kind} constraints (item {k})")
                sizes.append(sum(a.numel() for a in arrays))
                if arrays and not any(a.requires_grad for a in arrays):
                    warnings.warn(f"the {kind} constraints do not depend on the variables "
                                  f"(detached?): their gradients are zero", AdapterWarning,
                                  stacklevel=4)
            if not f.requires_grad:
                warnings.warn("the objective does not depend on the variables (detached, or a "
                              "constant): its gradient is zero", AdapterWarning, stacklevel=4)
        self.groups = GroupSizes(*sizes)
        rows = 1 + self.groups.m
        self._resolved_mode = ("rev" if rows <= self.n else "fwd") if self.mode == "auto" \
            else self.mode

    def jacobian(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(z, J)``: the stacked outputs ``(1 + m,)`` and their Jacobian ``(1 + m, n)``."""
        z, f_grad, c_grad = self.derivatives(x)
        return z, torch.cat([f_grad[None], c_grad.T])

    def derivatives(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(z, f_grad, c_grad)``: the stacked outputs ``(1 + m,)``, the objective's gradient
        ``(n,)`` and the constraint gradients as the columns of an ``(n, m)`` array (the core's
        layout; a view, so the vectorized pass's result is handed on without a copy)."""
        if self.groups is None:
            self._probe(x)
        x = x.detach()
        mode = self._resolved_mode
        if mode == "loop":
            z, jac = self._loop_jacobian(x)
            return z, jac[0], jac[1:].T
        try:
            if mode == "rev":
                return self._reverse_derivatives(x)
            jac, z = torch.func.jacfwd(self._stack, has_aux=True)(x)  # jacfwd has no chunk_size
        except RuntimeError as e:
            if "vmap" in str(e) or "batching" in str(e).lower():
                raise AdapterError(f"torch.func could not vectorize the function ({e}); pass "
                                   f"mode='loop' (one backward pass per output), or avoid "
                                   f"data-dependent Python control flow") from e
            raise
        if jac.dtype != x.dtype:
            # torch 2.x forward mode promotes some tangents to float64 (e.g. of `sum(b) - 1.0`
            # for a 0-d float32 result); the values are right, only the dtype drifts
            jac = jac.to(x.dtype)
        return z, jac[0], jac[1:].T

    def _split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """x -> (f, c): the objective (0-d) and the constraints stacked as ``(c_I, c_E)``."""
        f, ci, ce = split_output(self.layout.call(self.fn, x))
        parts = [a.reshape(-1) for a in group_arrays(ci, "the inequality constraints")]
        parts += [a.reshape(-1) for a in group_arrays(ce, "the equality constraints")]
        return f.reshape(()), (torch.cat(parts) if parts else x.new_zeros(0))

    def _reverse_derivatives(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One forward pass; ``f``'s gradient by one backward pass, the constraint gradients by
        backward passes vmapped over the cotangent basis (``chunk_size`` rows at a time).  The
        objective's cotangent stays an unbatched zero in the vmapped passes, so the part of the
        graph that only ``f`` uses is not batched (the engine still visits it, at the cost of one
        unbatched backward)."""
        (f, c), vjp_fn = torch.func.vjp(self._split, x)
        m = c.shape[0]
        f_grad = vjp_fn((torch.ones_like(f), torch.zeros_like(c)))[0]
        zero = torch.zeros_like(f)
        rows = torch.vmap(lambda ct: vjp_fn((zero, ct))[0])
        step = self.chunk_size or max(m, 1)
        chunks = []
        for start in range(0, m, step):
            stop = min(m, start + step)
            basis = c.new_zeros((stop - start, m))  # rows start..stop-1 of the identity
            basis[:, start:stop].fill_diagonal_(1.0)
            chunks.append(rows(basis).T)  # (n, rows): torch's batched matmul backward already
            # returns this layout, so the transpose is free
        if len(chunks) == 1:
            c_grad = chunks[0]
        elif chunks:
            c_grad = torch.cat(chunks, dim=1)
        else:
            c_grad = x.new_zeros((x.shape[0], 0))
        return torch.cat([f.reshape(1), c]).detach(), f_grad, c_grad

    def _loop_jacobian(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """The Jacobian by one ``autograd.grad`` call per output (the slow reference)."""
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            z, _ = self._stack(xg)
            rows = []
            for j in range(z.shape[0]):
                if z.requires_grad:
                    (g,) = torch.autograd.grad(z[j], xg, retain_graph=j + 1 < z.shape[0],
                                               allow_unused=True)
                else:
                    g = None
                rows.append(torch.zeros_like(x) if g is None else g)
        return z.detach(), torch.stack(rows)

    def __call__(self, x: Tensor) -> Evaluation:
        z, f_grad, c_grad = self.derivatives(x)
        groups = self.groups
        if z.shape[0] != 1 + groups.m:
            raise AdapterError(f"the function returned {z.shape[0] - 1} constraint values, but "
                               f"{groups.m} at the first evaluation: the constraint shapes must "
                               f"not change between evaluations")
        mi, me = groups.m_ineq, groups.m_eq
        ci = ci_grad = ce = ce_grad = None
        if mi:
            ci, ci_grad = z[1:1 + mi], c_grad[:, :mi]  # n x m_I: columns are gradients
        if me:
            ce, ce_grad = z[1 + mi:], c_grad[:, mi:]
        return Evaluation(f=z[0], f_grad=f_grad, ci=ci, ci_grad=ci_grad, ce=ce, ce_grad=ce_grad)


def load_parameters(module: torch.nn.Module, values: Mapping[str, Tensor]) -> None:
    """Copy named values (e.g. ``solution.x`` of a module problem) into ``module``'s parameters."""
    params = dict(module.named_parameters())
    unknown = [k for k in values if k not in params]
    if unknown:
        raise AdapterError(f"`module` has no parameters named {unknown}")
    with torch.no_grad():
        for k, v in values.items():
            params[k].copy_(v)


def solve(fn: Callable, x0: Union[Tensor, Mapping[str, Tensor], None] = None, *,
          module: Optional[torch.nn.Module] = None, mode: str = "auto",
          chunk_size: Optional[int] = None, options=None, qp_solver=None,
          callback: Optional[Callable] = None, record_history: bool = False,
          **option_kwargs) -> Solution:
    """Minimize the torch problem ``fn`` and give the variables back by name.

    ``x0``: a mapping ``{name: tensor}`` (``fn`` receives the variables by name), a 1-D
    tensor (``fn(x)``), or None with ``module=`` (start from the module's parameters;
    ``fn(module)``).  The run uses the dtype and device of the initial values (float64
    recommended).  The module is not modified: copy the answer in with
    ``load_parameters(module, solution.x)``.
    """
    if module is not None:
        problem = Problem(fn, module=module, mode=mode, chunk_size=chunk_size)
        x = problem.layout.initial_x() if x0 is None else problem.flatten(x0)
    elif isinstance(x0, Mapping):
        problem = Problem(fn, Variables.from_arrays(x0), mode=mode, chunk_size=chunk_size)
        x = problem.flatten(x0)
    elif isinstance(x0, torch.Tensor) and x0.ndim == 1:
        problem = Problem(fn, Variables.flat_vector(x0.shape[0]), mode=mode,
                          chunk_size=chunk_size)
        x = problem.flatten(x0)
    else:
        raise AdapterError("x0 must be a mapping {name: tensor}, a 1-D tensor, or None with "
                           "module=...")
    x = x.detach().clone()
    return run_solve(problem, x, problem.unflatten, options=options, qp_solver=qp_solver,
                     callback=callback, record_history=record_history, **option_kwargs)
