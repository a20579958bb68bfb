"""Property-based tests (hypothesis) of whole runs on generated instances of the test families.

Invariants: no crash, only documented termination codes, the certificate consistent with the
code, and the reported feasibility measures equal to a direct evaluation of the problem.

Metamorphic relations (each leaves the iterates unchanged):
scaling f by s > 0 with mu0 scaled by 1/s (the penalty mu f + v is unchanged), permuting the
constraints, adding a never-active constraint (constant -1, zero gradient: its steering
multiplier is 0), translating the variables (x -> x + t).

Tolerance for "unchanged": ``METAMORPHIC_RTOL`` (below), compared over the first
``METAMORPHIC_K`` iterations but only up to the first iterate where a constraint value is
within rounding of 0 (|c| <= ``TIE_ATOL``): there the sign test ``c >= 0`` is decided by the
last bits of the arithmetic (ALGORITHM.md §19.19), so reordered sums or shifted variables may
legitimately take another branch.  Scaling by a power of two is exact in binary floating
point, so that relation is checked to ``1e-12``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ncvx_ref
from ncvx_ref import Evaluation, TerminationCode
from ncvx_ref.problems import (hock_schittkowski, l1_box, maxq, nonsmooth_rosenbrock, qp_ineq,
                               rosenbrock, sphere_eig, svm_soft_margin)

from history_kinks import first_kink

METAMORPHIC_RTOL = 1e-8    # the trajectory tolerance of the conformance suite
METAMORPHIC_K = 6
TIE_ATOL = 1e-9
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Codes a run without callback / clock limit / user errors may end with (ALGORITHM.md §15).
DOCUMENTED = {0, 1, 2, 4, 6, 7, 8, 9}


def _instance(draw):
    kind = draw(st.sampled_from(["qp", "sphere", "l1box", "svm", "nsrosen", "hs071", "rosen", "maxq"]))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    if kind == "qp":
        return qp_ineq.random(draw(st.integers(2, 8)), draw(st.integers(1, 6)), seed)
    if kind == "sphere":
        return sphere_eig.random(draw(st.integers(2, 8)), seed)
    if kind == "l1box":
        return l1_box.random(draw(st.integers(2, 6)), draw(st.integers(3, 10)), seed)
    if kind == "svm":
        return svm_soft_margin.random(draw(st.integers(4, 10)), draw(st.integers(1, 3)), seed)
    if kind == "nsrosen":
        return nonsmooth_rosenbrock.make(draw(st.sampled_from(["max", "split"])),
                                         x0=rng.uniform(-3, 3, 2))
    if kind == "hs071":
        return hock_schittkowski.hs071(x0=rng.uniform(1, 5, 4))
    if kind == "rosen":
        n = draw(st.integers(2, 6))
        return rosenbrock.chained(n, x0=rng.uniform(-2, 2, n))
    return maxq.maxq(draw(st.integers(2, 8)))


instances = st.composite(_instance)
options = st.fixed_dictionaries({
    "limited_mem_size": st.sampled_from([0, 3]),
    "mu0": st.sampled_from([0.1, 1.0, 10.0]),
    "maxit": st.integers(5, 40),
    "halt_on_linesearch_bracket": st.booleans(),
})


def _solve(fun, x0, **opts):
    return ncvx_ref.solve(fun, np.asarray(x0, dtype=float), print_level=0, record_history=True, **opts)


def _direct_violation(prob, x):
    ev = prob.evaluate(np.asarray(x, dtype=float))
    tvi = max(0.0, float(np.max(ev.ci))) if ev.ci is not None else 0.0
    tve = float(np.max(np.abs(ev.ce))) if ev.ce is not None else 0.0
    return float(ev.f), tvi, tve


@SETTINGS
@given(prob=instances(), opts=options)
def test_run_invariants(prob, opts):
    r = _solve(prob.evaluate, prob.x0, **opts)
    code = int(r.termination_code)
    assert code in DOCUMENTED, f"{prob.name}: undocumented termination code {code}"
    assert r.iters <= opts["maxit"] and len(r.history) == r.iters + 1
    # certificate consistent with the code
    if code == 0:
        assert r.final.feasible_to_tol and r.stat_value <= 1e-8
    if code == 4:
        assert r.iters == opts["maxit"]
    if code == 6 and prob.constrained and opts["halt_on_linesearch_bracket"]:
        assert r.final.feasible_to_tol
    if code == 7:
        assert not r.final.feasible_to_tol
    # reported values and feasibility equal a direct evaluation at the reported points
    for rec in [r.final] + ([r.best] if r.best is not None else []) + (
            [r.most_feasible] if r.most_feasible is not None else []):
        f, tvi, tve = _direct_violation(prob, ncvx_ref.backend.to_host(rec.x))
        assert rec.f == pytest.approx(f, rel=1e-14, abs=1e-300)
        if prob.constrained:
            assert rec.tvi == pytest.approx(tvi, rel=1e-14, abs=0) and rec.tve == pytest.approx(tve, rel=1e-14, abs=0)
            assert rec.tv == max(rec.tvi, rec.tve)
            assert rec.feasible_to_tol == (rec.tvi <= 1e-6 and rec.tve <= 1e-6)
    if r.best is not None and prob.constrained:
        assert r.best.feasible_to_tol
    assert r.best is not None or prob.constrained


# -- metamorphic relations ---------------------------------------------------------------------
def _tie_free_prefix(hist, K):
    """Number of leading iterates (<= K+1) before the first constraint value within TIE_ATOL of 0."""
    k = first_kink(hist[:K + 1], TIE_ATOL)
    if k is not None:
        return k + 1     # iterate k itself is comparable; its successors may branch
    return min(len(hist), K + 1)


def _assert_same_iterates(h1, h2, rtol, shift=None, label=""):
    k_max = min(_tie_free_prefix(h1, METAMORPHIC_K), _tie_free_prefix(h2, METAMORPHIC_K))
    for k in range(k_max):
        x1 = h1[k].x
        x2 = h2[k].x if shift is None else h2[k].x - shift
        scale = max(1.0, float(np.max(np.abs(x1))))
        assert np.max(np.abs(x1 - x2)) <= rtol * scale, (
            f"{label}: iterate {k} differs by {np.max(np.abs(x1 - x2)):.2e} (scale {scale:.1e})")


constrained_instances = instances().filter(lambda p: p.constrained)


@SETTINGS
@given(prob=constrained_instances, opts=options, e=st.integers(-3, 3))
def test_scaling_f_with_mu0_leaves_iterates_unchanged(prob, opts, e):
    s = 2.0 ** e   # a power of two: the scaling is exact in binary floating point

    def scaled(x):
        ev = prob.evaluate(x)
        return dataclasses.replace(ev, f=s * ev.f, f_grad=s * ev.f_grad)

    base = _solve(prob.evaluate, prob.x0, **opts)
    other = _solve(scaled, prob.x0, **{**opts, "mu0": opts["mu0"] / s})
    # Scaling by a power of two commutes with every rounding (mu f = (mu/s)(s f) exactly, and so
    # does every later mu cut), so the runs are the same run, bit for bit, to the end -- not
    # only through the tie-free prefix (measured: 60 of 60 generated examples).
    assert len(base.history) == len(other.history), f"{prob.name} s={s}: run lengths differ"
    for a, b in zip(base.history, other.history):
        assert np.array_equal(a.x, b.x), f"{prob.name} s={s}: iterate {a.iteration} differs"
        assert a.mu == b.mu * s, f"{prob.name} s={s}: mu at iterate {a.iteration}"
    assert base.termination_code == other.termination_code


@SETTINGS
@given(prob=constrained_instances, opts=options, seed=st.integers(0, 1000))
def test_permuting_constraints_leaves_iterates_unchanged(prob, opts, seed):
    rng = np.random.default_rng(seed)
    pi = rng.permutation(prob.n_ineq) if prob.n_ineq else None
    pe = rng.permutation(prob.n_eq) if prob.n_eq else None

    def permuted(x):
        ev = prob.evaluate(x)
        return dataclasses.replace(
            ev, ci=None if pi is None else ev.ci[pi], ci_grad=None if pi is None else ev.ci_grad[:, pi],
            ce=None if pe is None else ev.ce[pe], ce_grad=None if pe is None else ev.ce_grad[:, pe])

    base = _solve(prob.evaluate, prob.x0, **opts)
    other = _solve(permuted, prob.x0, **opts)
    _assert_same_iterates(base.history, other.history, METAMORPHIC_RTOL, label=f"{prob.name} perm")


@SETTINGS
@given(prob=constrained_instances, opts=options)
def test_never_active_constraint_leaves_iterates_unchanged(prob, opts):
    def extended(x):
        ev = prob.evaluate(x)
        ci = np.concatenate([ev.ci, [-1.0]]) if ev.ci is not None else np.array([-1.0])
        cg = (np.concatenate([ev.ci_grad, np.zeros((prob.n, 1))], axis=1) if ev.ci_grad is not None
              else np.zeros((prob.n, 1)))
        return dataclasses.replace(ev, ci=ci, ci_grad=cg)

    base = _solve(prob.evaluate, prob.x0, **opts)
    other = _solve(extended, prob.x0, **opts)
    _assert_same_iterates(base.history, other.history, METAMORPHIC_RTOL, label=f"{prob.name} +c")


@SETTINGS
@given(prob=instances(), opts=options, seed=st.integers(0, 1000))
def test_translating_variables_moves_iterates(prob, opts, seed):
    t = np.random.default_rng(seed).integers(-3, 4, prob.n).astype(float)

    def shifted(x):
        return prob.evaluate(x - t)

    base = _solve(prob.evaluate, prob.x0, **opts)
    other = _solve(shifted, prob.x0 + t, **opts)
    _assert_same_iterates(base.history, other.history, METAMORPHIC_RTOL, shift=t,
                          label=f"{prob.name} shift")
