"""Options: GRANSO names and program defaults, every validation rule, from_granso, replace."""
from __future__ import annotations

import collections
import copy
import glob
import json
import math
import os
import pickle
import types

import numpy as np
import pytest

from ncvx_ref.options import (Options, OptionError, PER_PROBLEM_OPTIONS, PYGRANSO_ONLY_OPTIONS)

INF = math.inf
NAN = math.nan
REF_CASES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "granso_reference", "cases")

# -- defaults -------------------------------------------------------------------------------------

# OPTIONS.md §B/§C, program values (the ⚠ ones included).
EXPECTED_DEFAULTS = dict(
    mu0=1.0, checkH0=True, scaleH0=True, bfgs_damping=1e-4, limited_mem_size=0,
    limited_mem_fixed_scaling=True, prescaling_threshold=INF, prescaling_info_msg=True,
    opt_tol=1e-8, rel_tol=0.0, step_tol=1e-12, viol_ineq_tol=1e-6, viol_eq_tol=1e-6, ngrad=None,
    evaldist=1e-4, maxit=1000, maxclocktime=INF, fvalquit=-INF, halt_on_quadprog_error=False,
    halt_on_linesearch_bracket=True, quadprog_info_msg=True, print_level=1, print_frequency=1,
    print_width=14, print_use_orange=True, debug_mode=False, min_fallback_level=0,
    max_fallback_level=3, max_random_attempts=5, steering_l1_model=True, steering_ineq_margin=1e-6,
    steering_maxit=10, steering_c_viol=0.1, steering_c_mu=0.9, regularize_threshold=INF,
    regularize_max_eigenvalues=False, quadprog_opts=None, wolfe1=1e-4, wolfe2=0.5,
    linesearch_nondescent_maxit=0, linesearch_reattempts=0, linesearch_reattempts_x0=10,
    linesearch_c_mu=0.5, linesearch_c_mu_x0=0.5, exact_cache_distances=False, random_seed=0,
    qp_warm_start=False,
)


def test_defaults_are_granso_program_values():
    d = Options().to_dict()
    for name, value in EXPECTED_DEFAULTS.items():
        assert d[name] == value, name
    assert set(d) == set(EXPECTED_DEFAULTS) | {"print_ascii"}
    assert isinstance(d["print_ascii"], bool)
    for name in PER_PROBLEM_OPTIONS:
        assert name not in d


def test_types_after_validation():
    o = Options(maxit=5.0, mu0=2, checkH0=np.bool_(False), ngrad=np.int64(7), opt_tol=np.float32(0.5))
    assert type(o.maxit) is int and o.maxit == 5
    assert type(o.mu0) is float and o.mu0 == 2.0
    assert type(o.checkH0) is bool and o.checkH0 is False
    assert type(o.ngrad) is int and o.ngrad == 7
    assert type(o.opt_tol) is float
    assert Options(mu0=np.array(3.0)).mu0 == 3.0  # a 0-d array is a scalar


def test_defaults_not_given_equal_defaults_given_and_checked():
    """Options not given keep their defaults unchecked per construction (they are checked once
    at import); every value and type must be what checking them would give."""
    implicit = Options()
    explicit = Options(**implicit.to_dict())
    assert explicit.explicit == frozenset(implicit.to_dict()) and implicit.explicit == frozenset()
    for name, value in explicit.to_dict().items():
        got = getattr(implicit, name)
        assert type(got) is type(value) and got == value, name
    partial = Options(maxit=7, mu0=3)
    assert partial.maxit == 7 and type(partial.mu0) is float
    assert partial.opt_tol == implicit.opt_tol and type(partial.ngrad) is type(implicit.ngrad)


@pytest.mark.parametrize("n, expected", [(1, 2), (3, 6), (10, 20), (30, 40), (89, 99), (90, 100),
                                         (1000, 100)])
def test_resolved_ngrad_default(n, expected):
    assert Options().resolved_ngrad(n) == expected == min(100, 2 * n, n + 10)


def test_resolved_ngrad_explicit_and_bad_n():
    assert Options(ngrad=3).resolved_ngrad(1000) == 3
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            Options().resolved_ngrad(bad)


def test_frozen_hashable_picklable():
    o = Options(maxit=7)
    with pytest.raises(Exception):
        o.maxit = 8  # type: ignore[misc]
    assert hash(o) == hash(Options(maxit=7))
    assert o == Options(maxit=7) and o != Options(maxit=8)
    for c in (pickle.loads(pickle.dumps(o)), copy.copy(o), copy.deepcopy(o)):
        assert c == o and c.explicit == {"maxit"}


def test_quadprog_opts_is_a_readonly_copy():
    src = {"eps_abs": 1e-9}
    o = Options(quadprog_opts=src)
    src["eps_abs"] = 1.0
    assert o.quadprog_opts["eps_abs"] == 1e-9
    with pytest.raises(TypeError):
        o.quadprog_opts["eps_abs"] = 2.0  # type: ignore[index]
    assert dict(o.quadprog_opts) == {"eps_abs": 1e-9}
    hash(o)  # quadprog_opts does not take part in hashing


# -- every validation rule ------------------------------------------------------------------------

LOGICAL = ["checkH0", "scaleH0", "limited_mem_fixed_scaling", "prescaling_info_msg",
           "halt_on_quadprog_error", "halt_on_linesearch_bracket", "quadprog_info_msg",
           "print_ascii", "print_use_orange", "debug_mode", "steering_l1_model",
           "regularize_max_eigenvalues", "exact_cache_distances", "qp_warm_start"]

# name -> (accepted values incl. boundaries, rejected values, text the message must contain)
NUMERIC_RULES = {
    "mu0": ([0, 1e-300, INF], [-1e-300, -1], "real number >= 0"),
    "bfgs_damping": ([0, 0.5, 1], [-1e-12, 1.0000001, INF], "real number in [0, 1]"),
    "limited_mem_size": ([0, 5.0, 10], [-1, 1.5, INF], "integer >= 0"),
    "prescaling_threshold": ([1e-300, 100, INF], [0, -1], "real number > 0"),
    "opt_tol": ([0, 1e-12, INF], [-1e-9], "real number >= 0"),
    "rel_tol": ([0, INF], [-1e-9], "real number >= 0"),
    "step_tol": ([1e-300, INF], [0, -1], "real number > 0"),
    "viol_ineq_tol": ([0, INF], [-1e-9], "real number >= 0"),
    "viol_eq_tol": ([0, INF], [-1e-9], "real number >= 0"),
    "ngrad": ([None, 1, 6.0], [0, -3, 2.5, INF], "integer > 0 or None"),
    "evaldist": ([1e-300, INF], [0, -1e-4], "real number > 0"),
    "maxit": ([1, 15.0, 10**9], [0, -1, 2.5, INF], "integer > 0"),
    "maxclocktime": ([1e-3, INF], [0, -1], "real number > 0"),
    "fvalquit": ([-INF, 0.0, INF, -3.5], [], "real number"),
    "print_level": ([0, 1, 2, 3], [-1, 4, 1.5], "integer in {0,...,3}"),
    "print_frequency": ([1, 20], [0, -1, INF, 1.5], "integer >= 1"),
    "print_width": ([9, 14, 23], [8, 24, 10.5], "integer in {9,...,23}"),
    "min_fallback_level": ([0, 2, 4], [-1, 5, 0.5], "integer in {0,...,4}"),
    "max_fallback_level": ([0, 3, 4], [-1, 5, 3.5], "integer in {"),
    "max_random_attempts": ([1, 5], [0, -1, INF], "integer > 0"),
    "steering_ineq_margin": ([0, 1e-6, INF], [-1e-6], "real number >= 0"),
    "steering_maxit": ([1, 10], [0, INF], "integer > 0"),
    "steering_c_viol": ([1e-12, 0.5, 0.999999], [0, 1, -0.1, 1.5], "real number in (0, 1)"),
    "steering_c_mu": ([1e-12, 0.999999], [0, 1], "real number in (0, 1)"),
    "regularize_threshold": ([1, 1e8, INF], [0.999, 0, -INF], "real number >= 1"),
    "wolfe1": ([0, 1e-4, 0.5], [-1e-9, 0.5000001], "real number in [0, 0.5]"),
    "wolfe2": ([1e-4, 0.5, 0.999999], [1, 1.5, 5e-5], "[wolfe1, 1)"),
    "linesearch_nondescent_maxit": ([0, 7], [-1, 0.5, INF], "integer >= 0"),
    "linesearch_reattempts": ([0, 30], [-1, 0.5], "integer >= 0"),
    "linesearch_reattempts_x0": ([0, 30], [-1, 2.5], "integer >= 0"),
    "linesearch_c_mu": ([1e-9, 0.5], [0, 1], "real number in (0, 1)"),
    "linesearch_c_mu_x0": ([1e-9, 0.5], [0, 1], "real number in (0, 1)"),
    "random_seed": ([0, 12345], [-1, 1.5], "integer >= 0"),
}


def test_rule_table_covers_every_option():
    covered = set(NUMERIC_RULES) | set(LOGICAL) | {"quadprog_opts"}
    assert covered == set(Options().to_dict())


@pytest.mark.parametrize("name", sorted(NUMERIC_RULES))
def test_numeric_rule_accepts(name):
    for value in NUMERIC_RULES[name][0]:
        got = getattr(Options(**{name: value}), name)
        assert got == value or (value is None and got is None), (name, value)


@pytest.mark.parametrize("name, value", [(n, v) for n, (_, bad, _) in NUMERIC_RULES.items() for v in bad])
def test_numeric_rule_rejects_with_clear_message(name, value):
    with pytest.raises(OptionError) as err:
        Options(**{name: value})
    msg = str(err.value)
    assert f"{name}={value!r}" in msg  # names the option and the bad value
    assert NUMERIC_RULES[name][2] in msg  # and the allowed kind/range


@pytest.mark.parametrize("name", sorted(NUMERIC_RULES))
@pytest.mark.parametrize("value", [NAN, True, "1", [1.0], 1 + 2j])
def test_numeric_rule_rejects_non_real(name, value):
    with pytest.raises(OptionError, match=name):
        Options(**{name: value})


@pytest.mark.parametrize("name", LOGICAL)
def test_logical_rule(name):
    assert getattr(Options(**{name: True}), name) is True
    assert getattr(Options(**{name: np.bool_(False)}), name) is False
    for bad in (0, 1, 1.0, "true", None, np.int64(1)):
        with pytest.raises(OptionError) as err:
            Options(**{name: bad})
        assert name in str(err.value) and "True or False" in str(err.value)


def test_quadprog_opts_rule():
    assert Options(quadprog_opts=None).quadprog_opts is None
    assert dict(Options(quadprog_opts={}).quadprog_opts) == {}
    for bad in (3, "osqp", [("a", 1)]):
        with pytest.raises(OptionError, match="quadprog_opts.*dict"):
            Options(quadprog_opts=bad)


def test_wolfe2_is_checked_against_the_given_wolfe1():
    Options(wolfe1=0.3, wolfe2=0.3)
    with pytest.raises(OptionError, match=r"wolfe2=0.2.*\[0.3, 1\)"):
        Options(wolfe1=0.3, wolfe2=0.2)
    with pytest.raises(OptionError, match="wolfe1"):  # wolfe1 itself is checked first
        Options(wolfe1=0.7, wolfe2=0.2)


def test_max_fallback_level_checked_against_min_only_when_given():
    o = Options(min_fallback_level=4)  # §19.15: max stays 3 < min, no error
    assert (o.min_fallback_level, o.max_fallback_level) == (4, 3)
    assert "max_fallback_level" not in o.explicit
    Options(min_fallback_level=2, max_fallback_level=2)
    with pytest.raises(OptionError, match=r"max_fallback_level=3.*\{4,\.\.\.,4\}"):
        Options(min_fallback_level=4, max_fallback_level=3)  # explicitly given, even at its default
    # replace keeps "not explicitly set" for max_fallback_level
    assert o.replace(maxit=5).max_fallback_level == 3
    with pytest.raises(OptionError, match="max_fallback_level"):
        o.replace(max_fallback_level=3)


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("typo, suggestion", [("maxits", "maxit"), ("MaxIt", "maxit"),
                                              ("opt_toll", "opt_tol"), ("viol_ineq_tols", "viol_ineq_tol"),
                                              ("print_lvl", "print_level"), ("wolf1", "wolfe1")])
def test_unknown_name_suggests_the_closest(typo, suggestion):
    for build in (lambda: Options(**{typo: 1}), lambda: Options.from_granso({typo: 1}),
                  lambda: Options().replace(**{typo: 1})):
        with pytest.raises(OptionError) as err:
            build()
        assert repr(typo) in str(err.value) and repr(suggestion) in str(err.value)


def test_unknown_name_without_close_match():
    with pytest.raises(OptionError, match="unknown option 'zzz'") as err:
        Options(zzz=1)
    assert "Did you mean" not in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name, hint", [("QPsolver", "qp_solver argument"), ("torch_device", "x0"),
                                        ("double_precision", "dtype"), ("globalAD", "adapters"),
                                        ("disable_terminationcode_6", "halt_on_linesearch_bracket"),
                                        ("linesearch_maxit", "linesearch_nondescent_maxit")])
def test_pygranso_only_names(name, hint):
    for build in (lambda: Options(**{name: True}), lambda: Options.from_granso({name: True})):
        with pytest.raises(OptionError) as err:
            build()
        assert f"{name} is a PyGRANSO-only option" in str(err.value) and hint in str(err.value)


def test_every_pygranso_only_name_has_advice():
    assert set(PYGRANSO_ONLY_OPTIONS) == {
        "QPsolver", "torch_device", "double_precision", "globalAD", "stat_l2_model", "init_step_size",
        "linesearch_maxit", "is_backtrack_linesearch", "search_direction_rescaling",
        "disable_terminationcode_6"}
    for name in PYGRANSO_ONLY_OPTIONS:
        with pytest.raises(OptionError, match="PyGRANSO-only"):
            Options(**{name: 1})


@pytest.mark.parametrize("name", PER_PROBLEM_OPTIONS)
def test_per_problem_names_are_not_fields(name):
    with pytest.raises(OptionError, match=f"{name} is per-problem data"):
        Options(**{name: None})


def test_positional_arguments_rejected():
    with pytest.raises(TypeError):
        Options(1.0)  # type: ignore[misc]


# -- explicit tracking, replace, repr ------------------------------------------------------------

def test_explicit_and_replace():
    o = Options(maxit=20, opt_tol=1e-8)  # opt_tol given at its default value: still explicit
    assert o.explicit == {"maxit", "opt_tol"}
    r = o.replace(print_level=0)
    assert r.explicit == {"maxit", "opt_tol", "print_level"}
    assert (r.maxit, r.print_level) == (20, 0) and o.print_level == 1
    with pytest.raises(OptionError, match="maxit"):
        o.replace(maxit=0)
    assert repr(Options(maxit=20)) == "Options(maxit=20)"
    assert repr(Options()) == "Options()"


# -- from_granso -----------------------------------------------------------------------------------

def test_from_granso_none_and_instance():
    o, extras = Options.from_granso(None)
    assert o == Options() and extras == {k: None for k in PER_PROBLEM_OPTIONS}
    mine = Options(maxit=3)
    assert Options.from_granso(mine)[0] is mine


def test_from_granso_dict_with_json_numbers_and_extras():
    x0 = np.array([0.5, 0.5])
    log = lambda *a: False  # noqa: E731
    warm = {"S": np.eye(2), "Y": np.eye(2), "rho": np.ones(2), "gamma": 1.0}
    o, extras = Options.from_granso({"maxit": 15.0, "limited_mem_size": 5.0, "print_level": 0,
                                     "halt_on_linesearch_bracket": False, "mu0": 10.0,
                                     "x0": x0, "H0": None, "halt_log_fn": log,
                                     "limited_mem_warm_start": warm})
    assert (o.maxit, o.limited_mem_size, o.print_level) == (15, 5, 0)
    assert type(o.maxit) is int and o.halt_on_linesearch_bracket is False and o.mu0 == 10.0
    assert extras["x0"] is x0 and extras["H0"] is None and extras["halt_log_fn"] is log
    assert extras["limited_mem_warm_start"] is warm
    assert o.explicit == {"maxit", "limited_mem_size", "print_level", "halt_on_linesearch_bracket", "mu0"}


@pytest.mark.parametrize("empty", [None, [], (), "", np.zeros(0), np.zeros((0, 0)), {}])
def test_from_granso_empty_means_default_for_per_problem_data(empty):
    _, extras = Options.from_granso({k: empty for k in PER_PROBLEM_OPTIONS})
    assert extras == {k: None for k in PER_PROBLEM_OPTIONS}


@pytest.mark.parametrize("empty", [None, [], "", np.zeros(0)])
def test_from_granso_empty_is_an_error_for_other_options(empty):
    with pytest.raises(OptionError, match="maxit.*empty value"):
        Options.from_granso({"maxit": empty})


def test_from_granso_empty_quadprog_opts_is_its_default():
    assert Options.from_granso({"quadprog_opts": None})[0].quadprog_opts is None
    assert Options.from_granso({"quadprog_opts": {}})[0].quadprog_opts is None
    assert dict(Options.from_granso({"quadprog_opts": {"a": 1}})[0].quadprog_opts) == {"a": 1}


def test_from_granso_attribute_objects():
    ns = types.SimpleNamespace(maxit=4, opt_tol=1e-6, x0=np.ones(3))
    o, extras = Options.from_granso(ns)
    assert (o.maxit, o.opt_tol) == (4, 1e-6) and extras["x0"].shape == (3,)

    class Struct:  # a PyGRANSO-style options object
        def __init__(self):
            self.print_level = 0
            self._private = "ignored"

    assert Options.from_granso(Struct())[0].print_level == 0
    NT = collections.namedtuple("NT", "maxit print_width")
    assert Options.from_granso(NT(9, 20))[0].print_width == 20


def test_from_granso_bad_containers():
    with pytest.raises(OptionError, match="mapping"):
        Options.from_granso([("maxit", 3)])
    with pytest.raises(OptionError, match="strings"):
        Options.from_granso({1: 3})


def test_round_trip_through_a_granso_dict():
    o = Options(maxit=33, opt_tol=1e-10, checkH0=False, quadprog_opts={"x": 1}, ngrad=4,
                fvalquit=-INF, max_fallback_level=4, random_seed=7)
    back, extras = Options.from_granso(o.to_dict())
    assert back == o and extras == {k: None for k in PER_PROBLEM_OPTIONS}
    back2, _ = Options.from_granso({k: getattr(o, k) for k in o.explicit})
    assert back2 == o and back2.explicit == o.explicit
    js = json.loads(json.dumps({k: v for k, v in o.to_dict().items()
                                if k != "quadprog_opts" and v is not None and not
                                (isinstance(v, float) and math.isinf(v))}))
    assert Options.from_granso(js)[0].replace(quadprog_opts={"x": 1}) == o


# -- agreement with GRANSO's own resolved options -------------------------------------------------

def _ref_value(v, name):
    if isinstance(v, str):
        return {"Infinity": INF, "-Infinity": -INF, "NaN": NAN}[v]
    if name in LOGICAL:
        return bool(v)
    return v


@pytest.mark.skipif(not os.path.isdir(REF_CASES), reason="GRANSO reference outputs (../shared) not present")
def test_defaults_match_granso_resolved_options_of_every_reference_case():
    paths = sorted(glob.glob(os.path.join(REF_CASES, "*.json")))
    assert paths
    for path in paths:
        with open(path) as fh:
            case = json.load(fh)
        o, extras = Options.from_granso(case["options"])
        assert extras == {k: None for k in PER_PROBLEM_OPTIONS}
        for name, v in case["resolved_options"].items():
            want = _ref_value(v, name)
            got = o.resolved_ngrad(case["n"]) if name == "ngrad" else getattr(o, name)
            assert got == want, (case["id"], name, got, want)
