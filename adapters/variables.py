"""Named, shaped variables and constraint groups <-> the flat vectors the core works on.

The core sees one 1-D array ``x`` of length ``n``.  Users think in named variables of any
shape (a weight matrix ``W``, a bias ``b``, ...).  A :class:`Variables` layout maps one to
the other, and the same flattening is used by every adapter, so a problem gives the same
``x`` (and the same iterates) whichever framework evaluates it.

**Flattening order** (the PyGRANSO convention): variables in mapping order (the order the
names were given; for a ``torch.nn.Module`` the order of ``named_parameters()``), each
variable flattened row-major (C order).  ``x[offset(v) : offset(v) + size(v)]`` is
``v.reshape(-1)``.  A scalar variable (shape ``()``) takes one slot.

**Constraint groups** (the inequalities ``c_I`` and the equalities ``c_E``, separately) may
be returned as ``None`` (no such constraints), one array of any shape, or a sequence
(list/tuple) or mapping of arrays; they are flattened the same way: each array row-major,
arrays in sequence/mapping order, concatenated.  Whether a group exists, and its length,
is fixed by the first evaluation (GRANSO decides it at ``x0``); a later evaluation that
changes it is an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import array_api_compat as aac

Array = Any
Shape = Tuple[int, ...]


class AdapterError(ValueError):
    """A user function or user input does not fit what the adapter needs (the message says what to change)."""


def _as_shape(name: str, shape: Union[int, Sequence[int]]) -> Shape:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise AdapterError(f"variable `{name}`: a shape must be an int or a sequence of ints, "
                           f"got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise AdapterError(f"variable `{name}`: shape {shape} has a negative dimension")
    return shape


@dataclass(frozen=True)
class Variables:
    """The layout of named variables in the flat vector ``x`` (see the module docstring).

    ``flat=True`` marks a problem written on the flat vector itself (one variable ``x``
    of shape ``(n,)``, passed positionally to the user function).
    """

    names: Tuple[str, ...]
    shapes: Tuple[Shape, ...]
    flat: bool = False

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_shapes(cls, spec: Mapping[str, Union[int, Sequence[int]]]) -> "Variables":
        """Layout from ``{name: shape}`` (mapping order is the flattening order)."""
        if not isinstance(spec, Mapping) or len(spec) == 0:
            raise AdapterError("variables must be a non-empty mapping {name: shape}, e.g. "
                               "{'W': (3, 4), 'b': (4,)}")
        names = tuple(str(k) for k in spec)
        return cls(names=names, shapes=tuple(_as_shape(k, spec[k]) for k in spec))

    @classmethod
    def from_arrays(cls, values: Mapping[str, Array]) -> "Variables":
        """Layout of a mapping of initial values ``{name: array}``."""
        if not isinstance(values, Mapping) or len(values) == 0:
            raise AdapterError("initial values must be a non-empty mapping {name: array}")
        return cls.from_shapes({k: tuple(v.shape) for k, v in values.items()})

    @classmethod
    def flat_vector(cls, n: int) -> "Variables":
        """Layout of a problem written on the flat vector ``x`` of length ``n``."""
        if int(n) != n or n < 1:
            raise AdapterError(f"`n` must be a positive integer, got {n!r}")
        return cls(names=("x",), shapes=((int(n),),), flat=True)

    # -- sizes -----------------------------------------------------------------------------
    @property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> Tuple[int, ...]:
        out, k = [], 0
        for s in self.sizes:
            out.append(k)
            k += s
        return tuple(out)

    @property
    def n(self) -> int:
        return sum(self.sizes)

    def slice_of(self, name: str) -> slice:
        """Where variable ``name`` lives in ``x``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.sizes[i])

    # -- flat <-> named --------------------------------------------------------------------
    def unflatten(self, x: Array) -> Union[Dict[str, Array], Array]:
        """``x`` (1-D, length ``n``) -> ``{name: array of its shape}`` (reshaped slices of ``x``)."""
        if self.flat:
            return x
        xp = aac.array_namespace(x)
        return {name: xp.reshape(x[o:o + s], shape)
                for name, shape, o, s in zip(self.names, self.shapes, self.offsets, self.sizes)}

    def call(self, fn: Callable, x: Array) -> Any:
        """Call the user function with the variables by name (``fn(x)`` for a flat problem)."""
        if self.flat:
            return fn(x)
        return fn(**self.unflatten(x))

    def flatten(self, values: Union[Mapping[str, Array], Array]) -> Array:
        """``{name: array}`` -> the flat 1-D ``x`` (checks names, shapes, dtype and device)."""
        if self.flat:
            x = values
            if tuple(getattr(x, "shape", ())) != (self.n,):
                raise AdapterError(f"x0 must be a 1-D array of length {self.n}, got shape "
                                   f"{tuple(getattr(x, 'shape', ()))}")
            check_same_backend({"x0": x})
            return x
        if not isinstance(values, Mapping):
            raise AdapterError(f"initial values must be a mapping {{name: array}} with names "
                               f"{list(self.names)}, got {type(values).__name__}")
        missing = [k for k in self.names if k not in values]
        extra = [k for k in values if k not in self.names]
        if missing or extra:
            raise AdapterError(f"initial values: missing {missing}, unexpected {extra}; "
                               f"expected exactly {list(self.names)}")
        for name, shape in zip(self.names, self.shapes):
            got = tuple(values[name].shape)
            if got != shape:
                raise AdapterError(f"variable `{name}` has shape {got}, expected {shape}")
        ordered = {k: values[k] for k in self.names}
        xp = check_same_backend(ordered)
        return xp.concat([xp.reshape(v, (-1,)) for v in ordered.values()])

    def flatten_gradient(self, grads: Union[Mapping[str, Array], Array], m: Optional[int],
                         what: str) -> Array:
        """Per-variable (sub)gradients -> the flat layout.

        ``m is None``: gradient of a scalar, ``grads[name]`` has the variable's shape ->
        ``(n,)``.  Otherwise the Jacobian of ``m`` constraints: ``grads[name]`` has shape
        ``(*var_shape, *group_shape)`` (variable axes first, like GRANSO's ``n x m``) ->
        ``(n, m)`` with column ``j`` the gradient of constraint ``j``.
        """
        if not isinstance(grads, Mapping):
            raise AdapterError(f"{what}: expected a flat array or a mapping {{name: gradient}} "
                               f"with names {list(self.names)}, got {type(grads).__name__}")
        if set(grads) != set(self.names):
            raise AdapterError(f"{what}: gradient names {sorted(grads)} do not match the "
                               f"variables {list(self.names)}")
        xp = aac.array_namespace(*[grads[k] for k in self.names])
        parts = []
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            g = grads[name]
            want = size if m is None else size * m
            if math.prod(g.shape) != want or tuple(g.shape[:len(shape)]) != shape:
                expect = shape if m is None else f"{shape} + (constraint shape with {m} entries)"
                raise AdapterError(f"{what}: gradient for `{name}` has shape {tuple(g.shape)}, "
                                   f"expected {expect}")
            parts.append(xp.reshape(g, (size,) if m is None else (size, m)))
        return xp.concat(parts, axis=0)


def check_same_backend(arrays: Mapping[str, Array]) -> Any:
    """All arrays share one namespace, one real floating dtype and one device; return the namespace.

    Raises :class:`AdapterError` naming the offending arrays otherwise.
    """
    items = list(arrays.items())
    try:
        xp = aac.array_namespace(*[a for _, a in items])
    except TypeError as e:
        kinds = {k: type(a).__name__ for k, a in items}
        raise AdapterError(f"the variables mix array types {kinds}: give all of them as arrays of "
                           f"one library ({e})") from None
    name0, a0 = items[0]
    for name, a in items:
        if not xp.isdtype(a.dtype, "real floating"):
            raise AdapterError(f"variable `{name}` has dtype {a.dtype}; the solver needs a real "
                               f"floating dtype (float64 recommended, float32 supported): cast it")
        if a.dtype != a0.dtype:
            raise AdapterError(f"variables `{name0}` ({a0.dtype}) and `{name}` ({a.dtype}) have "
                               f"different dtypes: cast them to one dtype (float64 recommended)")
        if aac.device(a) != aac.device(a0):
            raise AdapterError(f"variables `{name0}` (on {aac.device(a0)}) and `{name}` (on "
                               f"{aac.device(a)}) are on different devices: move them to one device")
    return xp


# -- the user function's return value ---------------------------------------------------------

def split_output(out: Any) -> Tuple[Any, Any, Any]:
    """The user's return value -> ``(f, ci, ce)``.

    Accepted: ``f``, ``(f,)``, ``(f, ci)`` or ``(f, ci, ce)``; a group may be ``None``.
    """
    if isinstance(out, tuple):
        if not 1 <= len(out) <= 3:
            raise AdapterError(
                f"the function returned a tuple of {len(out)} items; return `f`, `(f, ci)` or "
                f"`(f, ci, ce)` (None for an absent group).  If you compute gradients yourself, "
                f"use ncvx_ref.adapters.analytic instead")
        out = tuple(out) + (None,) * (3 - len(out))
        return out[0], out[1], out[2]
    return out, None, None


def group_arrays(value: Any, what: str) -> list:
    """A constraint group (None / array / sequence / mapping) -> its list of arrays, in order."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    items = [v for v in items if v is not None]
    for v in items:
        if not hasattr(v, "shape") or not hasattr(v, "dtype"):
            raise AdapterError(f"{what}: got a {type(v).__name__}, expected an array of the "
                               f"framework the function is written in")
    return items


@dataclass(frozen=True)
class GroupSizes:
    """How many inequality and equality constraints the problem has (fixed at the first evaluation)."""

    m_ineq: int
    m_eq: int

    @property
    def m(self) -> int:
        return self.m_ineq + self.m_eq

    def check(self, m_ineq: int, m_eq: int) -> None:
        """Raise when a later evaluation changes the constraint counts."""
        if (m_ineq, m_eq) != (self.m_ineq, self.m_eq):
            raise AdapterError(
                f"the constraint counts changed from (ineq={self.m_ineq}, eq={self.m_eq}) at the "
                f"first evaluation to (ineq={m_ineq}, eq={m_eq}): every evaluation must return "
                f"the same constraint shapes (use None only for a group that is always absent)")
