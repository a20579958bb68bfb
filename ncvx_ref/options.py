"""Solver options under GRANSO 1.6.4's names and program defaults, validated up front.

:class:`Options` is a frozen, keyword-only dataclass holding every option of GRANSO's
``gransoOptions`` and ``gransoOptionsAdvanced`` (OPTIONS.md §B, §C) except the per-problem data
``x0``, ``H0``, ``halt_log_fn`` and ``limited_mem_warm_start``, which the front ends take
separately.  Defaults are the values the 1.6.4 *program* uses where its documentation differs
(``viol_ineq_tol = 1e-6``, ``linesearch_reattempts = 0``, ``linesearch_reattempts_x0 = 10``).
Every value is checked in ``__post_init__`` with GRANSO's rules (OPTIONS.md §A):

* *real*: a real, non-NaN scalar (±inf allowed unless the range excludes it), stored as float;
* *integer*: a finite real scalar with an integer value (``5.0`` from JSON is fine), stored as int;
* *logical*: ``True``/``False`` (Python or NumPy bool); the numbers 0/1 are rejected.

A violation raises :class:`OptionError` naming the option, the bad value and what is allowed.
Which fields the caller set explicitly is remembered (:attr:`Options.explicit`), because
GRANSO checks ``max_fallback_level >= min_fallback_level`` only when the user set
``max_fallback_level`` (ALGORITHM.md §19.15).

Three ncvx_ref extensions (defaults keep GRANSO's behaviour): ``exact_cache_distances``,
``random_seed`` and ``qp_warm_start``.  ``bfgs_damping = 0`` means "no damping" here (GRANSO
1.6.4 crashes, §19.14).
"""
from __future__ import annotations

import difflib
import functools
import math
import numbers
import sys
import types
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

__all__ = ["Options", "OptionError", "PER_PROBLEM_OPTIONS", "PYGRANSO_ONLY_OPTIONS"]


class OptionError(ValueError):
    """An option name or value that GRANSO's rules reject; the message says what to use instead."""


#: GRANSO options that are per-problem data: the front ends take them separately, and an empty
#: value (None, empty array) means "use the default" (OPTIONS.md §A).
PER_PROBLEM_OPTIONS = ("x0", "H0", "halt_log_fn", "limited_mem_warm_start")

#: PyGRANSO-only option names (OPTIONS.md §D) and what to do instead in ncvx_ref.
PYGRANSO_ONLY_OPTIONS: Dict[str, str] = {
    "QPsolver": "pass a QP solver object as the qp_solver argument of ncvx_ref.solve "
                "(see ncvx_ref.qp)",
    "torch_device": "put x0 on the device you want; every array of the run follows x0's device",
    "double_precision": "choose x0's dtype (float64 or float32); the run follows x0's dtype",
    "globalAD": "have fun(x) return values and gradients, or wrap an autodiff function with one "
                "of the adapters in ncvx_ref.adapters",
    "stat_l2_model": "ncvx_ref always uses GRANSO's 2-norm stationarity measure; remove it",
    "init_step_size": "the line search always starts at t = 1 as in GRANSO; remove it",
    "linesearch_maxit": "GRANSO's weak Wolfe line search has a fixed evaluation budget; for "
                        "non-descent directions see linesearch_nondescent_maxit",
    "is_backtrack_linesearch": "ncvx_ref implements GRANSO's weak Wolfe line search only; remove it",
    "search_direction_rescaling": "GRANSO does not rescale search directions; remove it",
    "disable_terminationcode_6": "use halt_on_linesearch_bracket=False to try the fallback "
                                 "directions before stopping with code 6",
}


# -- validation rules --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    """The kind of value one option takes and, for numbers, its allowed interval."""

    kind: str  # "real" | "integer" | "logical" | "mapping"
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    none_ok: bool = False  # None is a legal value (means "computed default")
    text: Optional[str] = None  # how to describe the range, when the interval notation is unclear

    def describe(self) -> str:
        kind = {"real": "a real number", "integer": "an integer", "logical": "True or False",
                "mapping": "a dict of QP solver options"}[self.kind]
        if self.text is not None:
            rng = self.text
        elif self.kind in ("logical", "mapping"):
            rng = ""
        elif self.lo == -math.inf and self.hi == math.inf:
            rng = "(±inf allowed)" if self.kind == "real" else ""
        elif self.hi == math.inf:
            rng = f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        elif self.kind == "integer" and not self.lo_open and not self.hi_open:
            rng = "in {" + f"{_num(self.lo)},...,{_num(self.hi)}" + "}"
        else:
            rng = (f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                   f"{')' if self.hi_open else ']'}")
        out = f"{kind} {rng}".strip()
        return out + (" or None" if self.none_ok else "")


def _num(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


_REAL_GE0 = _Rule("real", lo=0.0)
_REAL_GT0 = _Rule("real", lo=0.0, lo_open=True)
_REAL_01_OPEN = _Rule("real", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
_INT_GE0 = _Rule("integer", lo=0)
_INT_GT0 = _Rule("integer", lo=0, lo_open=True)
_LOGICAL = _Rule("logical")

_RULES: Dict[str, _Rule] = {
    # OPTIONS.md §B
    "mu0": _REAL_GE0,
    "checkH0": _LOGICAL,
    "scaleH0": _LOGICAL,
    "bfgs_damping": _Rule("real", lo=0.0, hi=1.0),
    "limited_mem_size": _INT_GE0,
    "limited_mem_fixed_scaling": _LOGICAL,
    "prescaling_threshold": _REAL_GT0,
    "prescaling_info_msg": _LOGICAL,
    "opt_tol": _REAL_GE0,
    "rel_tol": _REAL_GE0,
    "step_tol": _REAL_GT0,
    "viol_ineq_tol": _REAL_GE0,
    "viol_eq_tol": _REAL_GE0,
    "ngrad": _Rule("integer", lo=0, lo_open=True, none_ok=True),
    "evaldist": _REAL_GT0,
    "maxit": _INT_GT0,
    "maxclocktime": _REAL_GT0,
    "fvalquit": _Rule("real"),
    "halt_on_quadprog_error": _LOGICAL,
    "halt_on_linesearch_bracket": _LOGICAL,
    "quadprog_info_msg": _LOGICAL,
    "print_level": _Rule("integer", lo=0, hi=3),
    "print_frequency": _Rule("integer", lo=1),
    "print_width": _Rule("integer", lo=9, hi=23),
    "print_ascii": _LOGICAL,
    "print_use_orange": _LOGICAL,
    "debug_mode": _LOGICAL,
    # OPTIONS.md §C
    "min_fallback_level": _Rule("integer", lo=0, hi=4),
    # and >= min_fallback_level when given (see __post_init__)
    "max_fallback_level": _Rule("integer", lo=0, hi=4, text="in {min_fallback_level,...,4}"),
    "max_random_attempts": _INT_GT0,
    "steering_l1_model": _LOGICAL,
    "steering_ineq_margin": _REAL_GE0,
    "steering_maxit": _INT_GT0,
    "steering_c_viol": _REAL_01_OPEN,
    "steering_c_mu": _REAL_01_OPEN,
    "regularize_threshold": _Rule("real", lo=1.0),
    "regularize_max_eigenvalues": _LOGICAL,
    "quadprog_opts": _Rule("mapping", none_ok=True),
    "wolfe1": _Rule("real", lo=0.0, hi=0.5),
    # lower bound wolfe1, see __post_init__
    "wolfe2": _Rule("real", lo=0.0, hi=1.0, hi_open=True, text="in [wolfe1, 1)"),
    "linesearch_nondescent_maxit": _INT_GE0,
    "linesearch_reattempts": _INT_GE0,
    "linesearch_reattempts_x0": _INT_GE0,
    "linesearch_c_mu": _REAL_01_OPEN,
    "linesearch_c_mu_x0": _REAL_01_OPEN,
    # ncvx_ref extensions
    "exact_cache_distances": _LOGICAL,
    "random_seed": _INT_GE0,
    "qp_warm_start": _LOGICAL,
}


def _is_scalar_like(v: Any) -> bool:
    """A 0-d array (NumPy, torch, ...) counts as a scalar, like a MATLAB 1x1."""
    return getattr(v, "ndim", None) == 0 and not isinstance(v, (str, bytes))


def _bad(name: str, value: Any, rule: _Rule, why: str = "") -> OptionError:
    return OptionError(f"invalid option {name}={value!r}: must be {rule.describe()}{why}.")


def _check_value(name: str, value: Any, rule: _Rule) -> Any:
    """Return ``value`` converted to the option's Python type, or raise :class:`OptionError`."""
    if value is None and rule.none_ok:
        return None
    if rule.kind == "logical":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_scalar_like(value) and getattr(getattr(value, "dtype", None), "kind", "") == "b":
            return bool(value)
        raise _bad(name, value, rule, " (numbers such as 0/1 are not accepted)")
    if rule.kind == "mapping":
        if isinstance(value, Mapping):
            return types.MappingProxyType(dict(value))
        raise _bad(name, value, rule)
    # real / integer
    if isinstance(value, (bool, np.bool_)) or not (
            isinstance(value, numbers.Real) or _is_scalar_like(value)):
        raise _bad(name, value, rule)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _bad(name, value, rule) from None
    if math.isnan(x):
        raise _bad(name, value, rule, " (NaN is not allowed)")
    if rule.kind == "integer":
        if not math.isfinite(x) or x != math.floor(x):
            raise _bad(name, value, rule)
        x = int(x)
    below = x <= rule.lo if rule.lo_open else x < rule.lo
    above = x >= rule.hi if rule.hi_open else x > rule.hi
    if below or above:
        raise _bad(name, value, rule)
    return x


def _default_print_ascii() -> bool:
    """GRANSO prints plain ASCII borders by default on Windows only."""
    return sys.platform.startswith("win")


# -- the options record -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Options:
    """Every GRANSO 1.6.4 option (OPTIONS.md §B, §C) plus two ncvx_ref extensions.

    Build with keywords (``Options(maxit=200, opt_tol=1e-6)``), from a GRANSO-style struct or
    dict with :meth:`from_granso`, or from another instance with :meth:`replace`.  The meaning,
    range and default of each field are listed in ``docs/options.md``.
    """

    # -- standard options (gransoOptions) --
    mu0: float = 1.0
    checkH0: bool = True
    scaleH0: bool = True
    bfgs_damping: float = 1e-4
    limited_mem_size: int = 0
    limited_mem_fixed_scaling: bool = True
    prescaling_threshold: float = math.inf
    prescaling_info_msg: bool = True
    opt_tol: float = 1e-8
    rel_tol: float = 0.0
    step_tol: float = 1e-12
    viol_ineq_tol: float = 1e-6
    viol_eq_tol: float = 1e-6
    ngrad: Optional[int] = None  # None: min(100, 2n, n+10), see resolved_ngrad
    evaldist: float = 1e-4
    maxit: int = 1000
    maxclocktime: float = math.inf
    fvalquit: float = -math.inf
    halt_on_quadprog_error: bool = False
    halt_on_linesearch_bracket: bool = True
    quadprog_info_msg: bool = True
    print_level: int = 1
    print_frequency: int = 1
    print_width: int = 14
    print_ascii: bool = field(default_factory=_default_print_ascii)
    print_use_orange: bool = True
    debug_mode: bool = False
    # -- advanced options (gransoOptionsAdvanced) --
    min_fallback_level: int = 0
    max_fallback_level: int = 3
    max_random_attempts: int = 5
    steering_l1_model: bool = True
    steering_ineq_margin: float = 1e-6
    steering_maxit: int = 10
    steering_c_viol: float = 0.1
    steering_c_mu: float = 0.9
    regularize_threshold: float = math.inf
    regularize_max_eigenvalues: bool = False
    quadprog_opts: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    wolfe1: float = 1e-4
    wolfe2: float = 0.5
    linesearch_nondescent_maxit: int = 0
    linesearch_reattempts: int = 0
    linesearch_reattempts_x0: int = 10
    linesearch_c_mu: float = 0.5
    linesearch_c_mu_x0: float = 0.5
    # -- ncvx_ref extensions --
    exact_cache_distances: bool = False  # True: fix GRANSO 1.6.4's cache-distance bug (§10.2)
    random_seed: int = 0  # seeds the default x0 and the level-4 random directions
    qp_warm_start: bool = False  # True: stationarity QPs start from the previous answer
    # names the caller set explicitly (filled in by __init__, see below)
    _explicit: frozenset = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # The options given are checked in declaration order (wolfe1 before wolfe2, min before
        # max level); the others hold their defaults, checked once at import
        # (:data:`_CONVERTED_DEFAULTS`): 48 checks cost ~80 µs, a whole tiny solve ~1 ms.
        explicit = self._explicit
        for name in _FIELD_NAMES:
            if name in explicit:
                object.__setattr__(self, name, _check_value(name, getattr(self, name), _RULES[name]))
        for name, value in _CONVERTED_DEFAULTS:
            if name not in explicit:
                object.__setattr__(self, name, value)
        if self.wolfe2 < self.wolfe1:
            raise OptionError(
                f"invalid option wolfe2={self.wolfe2!r}: must be a real number in [wolfe1, 1) "
                f"= [{self.wolfe1!r}, 1) (wolfe2 must not be below wolfe1).")
        # GRANSO checks max >= min only when max_fallback_level was given (§19.15).
        if "max_fallback_level" in self._explicit and self.max_fallback_level < self.min_fallback_level:
            raise OptionError(
                f"invalid option max_fallback_level={self.max_fallback_level!r}: must be an "
                f"integer in {{min_fallback_level,...,4}} = {{{self.min_fallback_level},...,4}}.")

    # -- construction helpers ------------------------------------------------------------------
    @property
    def explicit(self) -> frozenset:
        """The option names the caller set explicitly (whatever their value)."""
        return self._explicit

    def replace(self, **changes: Any) -> "Options":
        """A validated copy with ``changes`` applied; explicitly set names stay explicit."""
        kw = {name: getattr(self, name) for name in self._explicit}
        kw.update(changes)
        return Options(**kw)

    @classmethod
    def from_granso(cls, opts: Any = None) -> Tuple["Options", Dict[str, Any]]:
        """Options from a GRANSO-style struct: a mapping, an object with attributes, or None.

        Returns ``(options, extras)`` where ``extras`` maps each of ``x0``, ``H0``,
        ``halt_log_fn``, ``limited_mem_warm_start`` to its value, or None when absent or empty
        (empty means "use the default" for these four).  Any other option given as None or
        empty is an error (OPTIONS.md §A), as are unknown and PyGRANSO-only names.
        """
        if opts is None:
            return cls(), {k: None for k in PER_PROBLEM_OPTIONS}
        if isinstance(opts, Options):
            return opts, {k: None for k in PER_PROBLEM_OPTIONS}
        items = _as_items(opts)
        extras: Dict[str, Any] = {k: None for k in PER_PROBLEM_OPTIONS}
        kw: Dict[str, Any] = {}
        for name, value in items.items():
            if name in PER_PROBLEM_OPTIONS:
                extras[name] = None if _is_empty(value) else value
                continue
            _check_name(name)
            if name == "quadprog_opts" and (value is None or (isinstance(value, Mapping) and not value)):
                continue  # an empty QP-options struct is GRANSO's default
            if _is_empty(value):
                raise OptionError(
                    f"invalid option {name}={value!r}: an empty value is only allowed for "
                    f"{', '.join(PER_PROBLEM_OPTIONS)}; remove {name} to use its default.")
            kw[name] = value
        return cls(**kw), extras

    def resolved_ngrad(self, n: int) -> int:
        """The gradient-cache capacity for ``n`` variables: ``ngrad``, or min(100, 2n, n+10)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n (the number of variables) must be a positive integer, got {n!r}.")
        if self.ngrad is not None:
            return self.ngrad
        n = int(n)
        return min(100, 2 * n, n + 10)

    def to_dict(self) -> Dict[str, Any]:
        """Every option (GRANSO names) with its value."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_explicit"}

    def __repr__(self) -> str:
        shown = [f"{name}={value!r}" for name, value in self.to_dict().items()
                 if name in self._explicit or value != _DEFAULTS.get(name, value)]
        return f"Options({', '.join(shown)})"


def _as_items(opts: Any) -> Dict[str, Any]:
    if isinstance(opts, Mapping):
        items = dict(opts)
    elif hasattr(opts, "_asdict"):  # namedtuple
        items = dict(opts._asdict())
    elif hasattr(opts, "__dict__"):  # SimpleNamespace, a PyGRANSO-style struct object, ...
        items = {k: v for k, v in vars(opts).items() if not k.startswith("_")}
    else:
        raise OptionError(
            f"options must be a mapping (dict), an object with option attributes, or None; "
            f"got {type(opts).__name__}.")
    for k in items:
        if not isinstance(k, str):
            raise OptionError(f"option names must be strings, got {k!r}.")
    return items


def _is_empty(value: Any) -> bool:
    """MATLAB's isempty for the values a Python user might pass: None, '', [], (), {}, size-0 arrays."""
    if value is None:
        return True
    size = getattr(value, "size", None)
    if callable(getattr(value, "numel", None)):  # torch tensors: .size is a method
        return int(value.numel()) == 0
    if isinstance(size, numbers.Integral):
        return size == 0
    if isinstance(value, (str, bytes, list, tuple, dict, Mapping)):
        return len(value) == 0
    return False


_FIELD_NAMES = tuple(name for name in _RULES)
_DEFAULTS: Dict[str, Any] = {}


def _check_name(name: str) -> None:
    """Raise :class:`OptionError` for a name that is not an Options field, with a suggestion."""
    if name in _RULES:
        return
    if name in PER_PROBLEM_OPTIONS:
        raise OptionError(
            f"{name} is per-problem data, not an Options field: pass it to ncvx_ref.solve / "
            f"ncvx_ref.granso directly (Options.from_granso separates it from a GRANSO opts struct).")
    if name in PYGRANSO_ONLY_OPTIONS:
        raise OptionError(f"{name} is a PyGRANSO-only option, not a GRANSO one: "
                          f"{PYGRANSO_ONLY_OPTIONS[name]}.")
    lower = {n.lower(): n for n in _FIELD_NAMES}
    close = [lower[name.lower()]] if name.lower() in lower else []
    close += [c for c in difflib.get_close_matches(name, _FIELD_NAMES, n=3, cutoff=0.6) if c not in close]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise OptionError(f"unknown option {name!r}.{hint} The valid names are the fields of "
                      f"ncvx_ref.Options (listed in docs/options.md).")


def _converted_defaults() -> Tuple[Tuple[str, Any], ...]:
    """``(name, checked value)`` of every default that :func:`_check_value` converts (a
    mapping to a read-only view, say); the other defaults are kept as the field holds them."""
    out = []
    for f in fields(Options):
        if f.name == "_explicit":
            continue
        raw = f.default if f.default is not MISSING else f.default_factory()
        value = _check_value(f.name, raw, _RULES[f.name])
        if value is not raw:
            out.append((f.name, value))
    return tuple(out)


_CONVERTED_DEFAULTS = _converted_defaults()
_generated_init = Options.__init__


@functools.wraps(_generated_init)
def _init(self: Options, **kwargs: Any) -> None:
    for name in kwargs:
        _check_name(name)
    object.__setattr__(self, "_explicit", frozenset(kwargs))
    _generated_init(self, **kwargs)


Options.__init__ = _init  # type: ignore[method-assign]
_DEFAULTS.update(Options().to_dict())
