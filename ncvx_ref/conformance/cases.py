"""Loading GRANSO reference cases and turning their options into ``ncvx_ref.solve`` keywords."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Union

_NONFINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}

#: GRANSO options whose values are integers (JSON from Octave writes them as floats, e.g. 5.0).
INTEGER_OPTIONS = frozenset({
    "maxit", "limited_mem_size", "ngrad", "print_level", "print_frequency", "print_width",
    "min_fallback_level", "max_fallback_level", "max_random_attempts", "steering_maxit",
    "linesearch_nondescent_maxit", "linesearch_reattempts", "linesearch_reattempts_x0",
})

#: GRANSO options that are logical (Octave may write them as 0/1 in ``resolved_options``).
LOGICAL_OPTIONS = frozenset({
    "checkH0", "scaleH0", "limited_mem_fixed_scaling", "prescaling_info_msg",
    "halt_on_quadprog_error", "halt_on_linesearch_bracket", "steering_l1_model",
    "regularize_max_eigenvalues", "quadprog_info_msg", "print_ascii", "print_use_orange",
    "debug_mode",
})

#: The repository's default location of the reference set: ``<repo>/../shared/granso_reference``.
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "granso_reference"


def decode(obj: Any) -> Any:
    """Replace the strings "Infinity", "-Infinity", "NaN" by floats, recursively."""
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    return obj


def load_case(path: Union[str, Path]) -> Dict[str, Any]:
    """Read one case JSON file and decode its non-finite floats."""
    with open(path, "r", encoding="utf-8") as fh:
        return decode(json.load(fh))


def cases_dir(reference_dir: Union[str, Path, None] = None) -> Path:
    """The ``cases`` folder of a reference set (a path to the set or to its cases folder)."""
    root = Path(reference_dir) if reference_dir is not None else DEFAULT_REFERENCE_DIR
    return root if root.name == "cases" or not (root / "cases").is_dir() else root / "cases"


def case_paths(reference_dir: Union[str, Path, None] = None) -> List[Path]:
    """All case files of a reference set, sorted by id; [] when the folder does not exist."""
    d = cases_dir(reference_dir)
    return sorted(d.glob("*.json")) if d.is_dir() else []


def iter_cases(reference_dir: Union[str, Path, None] = None) -> Iterator[Dict[str, Any]]:
    for p in case_paths(reference_dir):
        yield load_case(p)


def normalize_option(name: str, value: Any) -> Any:
    """Octave's JSON value of option ``name`` as the Python type ``ncvx_ref.Options`` expects."""
    if name in INTEGER_OPTIONS and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"option `{name}` must be an integer; the case stores {value!r}.")
        return int(value)
    if name in LOGICAL_OPTIONS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return bool(value)
    return value


def solve_options(case: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword options reproducing a case's GRANSO run: the options it set, plus ``ngrad``.

    Every other option is left at its default (the cases ran with GRANSO's defaults).  ``ngrad``
    is passed explicitly because GRANSO computed its default from the case's own ``n`` in a
    fresh process (README: "Behaviours of GRANSO 1.6.4"); passing it pins that value.
    """
    opts = {k: normalize_option(k, v) for k, v in case["options"].items()}
    opts["ngrad"] = normalize_option("ngrad", case["resolved_options"]["ngrad"])
    return opts


def resolved_options(case: Dict[str, Any]) -> Dict[str, Any]:
    """All of GRANSO's resolved option values for a case, normalized (for default checks)."""
    return {k: normalize_option(k, v) for k, v in case["resolved_options"].items()}
