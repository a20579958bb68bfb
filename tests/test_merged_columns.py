"""The stationarity QP with repeated gradient columns merged (ncvx_ref.stationarity.MergedColumns):
the same QP in fewer variables, so the same stationarity vector up to rounding."""
import numpy as np
import pytest

from ncvx_ref import stationarity as st
from ncvx_ref.backend import Backend
from ncvx_ref.evaluation import Evaluation
from ncvx_ref.penalty import penalty_point
from ncvx_ref.qp.default import get_qp_solver
from ncvx_ref.stationarity import GradientSample, merge_repeated_columns


def neighbourhood(rng, l, n, m_e, m_i, linear_e, linear_i):
    """``l`` samples whose first ``linear_*`` constraints are linear (one gradient for all)."""
    JE0 = rng.standard_normal((n, m_e))
    JI0 = rng.standard_normal((n, m_i))
    samples = []
    for _ in range(l):
        JE = rng.standard_normal((n, m_e))
        JI = rng.standard_normal((n, m_i))
        JE[:, :linear_e] = JE0[:, :linear_e]
        JI[:, :linear_i] = JI0[:, :linear_i]
        samples.append(GradientSample(rng.standard_normal(n), rng.standard_normal(n),
                                      JI if m_i else None, JE if m_e else None))
    return samples


def point(rng, sample, n, m_e, m_i, mu):
    ev = Evaluation(f=float(rng.standard_normal()), f_grad=sample.f_grad,
                    ci=rng.standard_normal(m_i) if m_i else None, ci_grad=sample.ci_grad,
                    ce=rng.standard_normal(m_e) if m_e else None, ce_grad=sample.ce_grad)
    return penalty_point(sample.x, ev, mu, Backend.of(sample.x), 1e-6, 1e-6)


@pytest.mark.parametrize("l,m_e,m_i,lin_e,lin_i", [(40, 0, 30, 0, 20), (30, 5, 40, 5, 0),
                                                    (25, 10, 50, 3, 50), (60, 0, 20, 0, 20)])
def test_merged_qp_gives_the_same_stationarity_vector(l, m_e, m_i, lin_e, lin_i):
    rng = np.random.default_rng(l + m_e + m_i)
    n = 15
    samples = neighbourhood(rng, l, n, m_e, m_i, lin_e, lin_i)
    current = samples[l // 2]  # the cache returns samples in slot order: current anywhere
    pt = point(rng, current, n, m_e, m_i, mu=0.7)
    b = Backend.of(pt.x)
    B = rng.standard_normal((n, n))
    H = B @ B.T + np.eye(n)
    solver = get_qp_solver(None)
    merged = merge_repeated_columns(pt, samples, current, b)
    assert merged is not None
    k_full = l * (1 + m_e + m_i)
    k = merged.q.shape[0]
    assert k == k_full - (l - 1) * (lin_e + lin_i)  # each linear constraint: one column
    assert sum(blk.shape[1] for blk in merged.blocks) == k
    full, n_full = st._termination_qp(pt, samples, lambda V: H @ V, solver, b)
    fewer, n_merged = st._termination_qp_merged(pt, merged, lambda V: H @ V, solver, b)
    assert n_full == n_merged == 1
    scale = max(np.linalg.norm(full), 1e-12)
    assert np.linalg.norm(fewer - full) <= 1e-7 * scale + 1e-12


def test_no_merge_below_the_threshold_or_nothing_repeated(monkeypatch):
    rng = np.random.default_rng(3)
    n = 8
    small = neighbourhood(rng, 5, n, 0, 3, 0, 3)  # k = 20, every constraint linear
    pt = point(rng, small[-1], n, 0, 3, 1.0)
    assert merge_repeated_columns(pt, small, small[-1], Backend.of(pt.x)) is not None
    monkeypatch.setattr(st, "MERGE_MIN_K", 21)
    assert merge_repeated_columns(pt, small, small[-1], Backend.of(pt.x)) is None
    monkeypatch.undo()
    one = neighbourhood(rng, 1, n, 0, 3, 0, 3)  # one sample: nothing to merge
    pt = point(rng, one[0], n, 0, 3, 1.0)
    assert merge_repeated_columns(pt, one, one[0], Backend.of(pt.x)) is None
    l = 21
    distinct = neighbourhood(rng, l, n, 0, 9, 0, 0)  # large, but no column repeats
    pt = point(rng, distinct[-1], n, 0, 9, 1.0)
    assert merge_repeated_columns(pt, distinct, distinct[-1], Backend.of(pt.x)) is None


def test_merged_bounds_count_the_repeats():
    rng = np.random.default_rng(4)
    n, l = 6, 200
    samples = neighbourhood(rng, l, n, 1, 4, 1, 2)  # k_full = 200 * 6 = 1200
    pt = point(rng, samples[-1], n, 1, 4, mu=2.0)
    merged = merge_repeated_columns(pt, samples, samples[-1], Backend.of(pt.x))
    # E: the current sample's column first (weight in [-l, l])... then no other E columns
    assert merged.lb[0] == -l and merged.ub[0] == l
    # F: l distinct objective gradients, each weight in [0, mu], all in the equality row
    f = slice(1, 1 + l)
    assert np.all(merged.ub[f] == 2.0) and np.all(merged.eq[f] == 1.0)
    assert merged.eq.sum() == l
    # I: the linear pair repeats l times, the other two are per sample
    assert np.sort(merged.ub[1 + l:])[-2:].tolist() == [l, l]
    assert merged.q.shape[0] == 1 + l + 2 + 2 * l
