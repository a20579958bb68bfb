"""Warm-started stationarity QPs (ncvx_ref.warm_start, BoxQP.guess): the memory's layout, the
merged QP's maps, the adapters' use of a guess, and whole runs."""
import gc

import numpy as np
import pytest

from ncvx_ref import solve
from ncvx_ref import stationarity as st
from ncvx_ref.backend import Backend
from ncvx_ref.qp.default import RecordingQPSolver, default_qp_solver
from ncvx_ref.qp.interface import BoxQP, QPSolverError
from ncvx_ref.qp.polish import _Scales, default_tolerance, kkt_residual
from ncvx_ref.qp.solvers import GUESS_TOLERANCE_FACTOR, DAQPSolver, PIQPSolver
from ncvx_ref.stationarity import GradientSample, merge_repeated_columns
from ncvx_ref.warm_start import StationarityWarmStart

from test_merged_columns import neighbourhood, point


def samples_of(rng, l, n=3, m_e=1, m_i=2):
    return [GradientSample(rng.standard_normal(n), rng.standard_normal(n),
                           rng.standard_normal((n, m_i)) if m_i else None,
                           rng.standard_normal((n, m_e)) if m_e else None) for _ in range(l)]


def test_guess_maps_the_previous_answer_per_sample():
    rng = np.random.default_rng(0)
    m_e, m_i = 1, 2
    old = samples_of(rng, 3)
    y = np.arange(1.0, 1.0 + 3 * (1 + m_e + m_i))  # [E1 E2 E3 | F1 F2 F3 | I1a I1b I2a ...]
    memory = StationarityWarmStart()
    memory.remember(old, y, m_e, m_i, mu=2.0)
    new = samples_of(rng, 1)[0]
    guess = memory.guess([old[2], new, old[0]], m_e, m_i, mu=4.0)
    # E block, F block (weights divided by the old mu, times the new one), I block; new: 0
    np.testing.assert_array_equal(guess[:3], [3.0, 0.0, 1.0])
    np.testing.assert_array_equal(guess[3:6], [6.0 / 2 * 4, 0.0, 4.0 / 2 * 4])
    np.testing.assert_array_equal(guess[6:], [11.0, 12.0, 0.0, 0.0, 7.0, 8.0])
    assert memory.guess(samples_of(rng, 2), m_e, m_i, mu=1.0) is None  # nothing in common


def test_memory_does_not_keep_or_confuse_dead_samples():
    rng = np.random.default_rng(1)
    memory = StationarityWarmStart()
    samples = samples_of(rng, 2, m_e=0, m_i=0)
    memory.remember(samples, np.array([0.25, 0.75]), 0, 0, mu=1.0)
    survivor = samples[1]
    del samples
    gc.collect()
    # the evicted sample is gone (weak reference): only the survivor's weight is guessed
    fresh = samples_of(rng, 1, m_e=0, m_i=0)[0]
    np.testing.assert_array_equal(memory.guess([fresh, survivor], 0, 0, 1.0), [0.0, 0.75])


def test_memory_forgets_on_a_failed_or_non_finite_answer():
    rng = np.random.default_rng(2)
    memory = StationarityWarmStart()
    samples = samples_of(rng, 2, m_e=0, m_i=1)
    memory.remember(samples, np.array([0.5, 0.5, np.nan, 0.0]), 0, 1, mu=1.0)
    assert len(memory) == 0 and memory.guess(samples, 0, 1, 1.0) is None
    memory.remember(samples, np.array([0.5, 0.5, 1.0, 0.0]), 0, 1, mu=1.0)
    assert len(memory) == 2
    memory.remember(samples, np.zeros(3), 0, 1, mu=1.0)  # wrong length: forgets
    assert len(memory) == 0


@pytest.mark.parametrize("l,m_e,m_i,lin_e,lin_i,f_repeats", [(40, 0, 30, 0, 20, 0),
                                                              (25, 10, 50, 3, 50, 0),
                                                              (12, 2, 6, 1, 3, 4)])
def test_merged_maps_keep_the_combination_and_the_bounds(l, m_e, m_i, lin_e, lin_i, f_repeats):
    rng = np.random.default_rng(l)
    n = 15
    samples = neighbourhood(rng, l, n, m_e, m_i, lin_e, lin_i)
    current = samples[l // 3]
    for j in (0, 2, l - 3, l - 1)[:f_repeats]:  # samples whose objective gradient repeats too
        s = samples[j]
        samples[j] = GradientSample(s.x, current.f_grad.copy(), s.ci_grad, s.ce_grad)
    pt = point(rng, current, n, m_e, m_i, mu=0.7)
    merged = merge_repeated_columns(pt, samples, current, Backend.of(pt.x))
    k_full = l * (1 + m_e + m_i)
    assert merged.groups.shape == (k_full,)
    q_full, lb_full, ub_full, _, _ = st._qp_vectors(pt, l)
    A_full = st._gradient_matrix(samples, np)
    A_merged = np.concatenate(merged.blocks, axis=1)
    y_full = rng.uniform(lb_full, ub_full)
    Y = merged.merge(y_full)
    # the merged answer combines the same gradients and has the same linear term
    np.testing.assert_allclose(A_merged @ Y, A_full @ y_full, rtol=1e-12, atol=1e-12)
    assert merged.q @ Y == pytest.approx(q_full @ y_full, rel=1e-12)
    assert np.all(merged.lb <= Y) and np.all(Y <= merged.ub)
    back = merged.expand(Y)
    assert np.all(lb_full <= back) and np.all(back <= ub_full)
    np.testing.assert_allclose(merged.merge(back), Y, rtol=1e-14, atol=1e-15)
    # a variable that merged nothing maps to itself
    alone = np.bincount(merged.groups) == 1
    np.testing.assert_array_equal(merged.expand(Y)[np.isin(merged.groups, np.flatnonzero(alone))],
                                  Y[merged.groups[np.isin(merged.groups, np.flatnonzero(alone))]])


def degenerate_stationarity_qp(rng, l=20, n=4):
    """A stationarity-like QP: ``l`` near-equal gradients in ``R^n`` (rank ``n < l``)."""
    G = rng.standard_normal((n, 1)) + 1e-3 * rng.standard_normal((n, l))
    Q = G.T @ G
    Q = (Q + Q.T) / 2
    return BoxQP(Q, np.zeros(l), np.zeros(l), np.ones(l), np.ones(l), 1.0, "stationarity")


class CountingDAQP(DAQPSolver):
    calls = 0

    def _solve_raw(self, qp):
        CountingDAQP.calls += 1
        return super()._solve_raw(qp)


def with_guess(qp, guess):
    return BoxQP(qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind, guess=guess)


def test_a_good_guess_skips_the_library_and_is_certified():
    qp = degenerate_stationarity_qp(np.random.default_rng(3))
    solver = CountingDAQP()
    CountingDAQP.calls = 0
    cold = solver.solve(qp)
    assert CountingDAQP.calls == 1
    warm = solver.solve(with_guess(qp, cold + 1e-9))  # near an answer: its active set is right
    assert CountingDAQP.calls == 1  # no library call
    assert solver.last_polish.certified
    tol = default_tolerance(qp.size)
    # a guess must certify to a hundredth of the tolerance a library answer needs
    assert kkt_residual(qp, warm).total <= GUESS_TOLERANCE_FACTOR * tol
    sc = _Scales.of(qp)
    # both certified: their objective values agree within the certificate's bound
    obj = lambda y: 0.5 * y @ qp.Q @ y + qp.q @ y
    assert abs(obj(warm) - obj(cold)) <= qp.size * tol * sc.s * sc.w


def test_a_non_finite_guess_leaves_the_qp_to_the_library():
    qp = degenerate_stationarity_qp(np.random.default_rng(4))
    for solver in (DAQPSolver(), PIQPSolver()):
        cold = solver.solve(qp)
        warm = solver.solve(with_guess(qp, np.full(20, np.nan)))
        assert warm.tobytes() == cold.tobytes()


@pytest.mark.parametrize("bad", [np.full(20, 7.0), -np.ones(20), "random"])
def test_any_guess_gives_a_certified_answer(bad):
    rng = np.random.default_rng(5)
    qp = degenerate_stationarity_qp(rng)
    guess = rng.standard_normal(20) if isinstance(bad, str) else bad
    solver = CountingDAQP()
    CountingDAQP.calls = 0
    warm = solver.solve(with_guess(qp, guess))
    tol = default_tolerance(qp.size)
    # from the guess (no library call) only at the stricter tolerance; else the library's answer
    limit = GUESS_TOLERANCE_FACTOR * tol if CountingDAQP.calls == 0 else tol
    assert kkt_residual(qp, warm).total <= limit
    assert CountingDAQP.calls in (0, 1)
    if isinstance(bad, str):
        # the rounds from this guess do not certify; the active-set method from it does, within
        # its cap (whether the far guesses do depends on rounding: before the compiled kernel
        # they needed 24 and 27 iterations, over the cap, and went to DAQP)
        assert CountingDAQP.calls == 0 and solver.last_polish.active_set_iterations > 0


def test_a_guess_of_the_wrong_shape_is_an_error():
    qp = degenerate_stationarity_qp(np.random.default_rng(5))
    with pytest.raises(QPSolverError, match=r"`guess` must have shape \(20,\), got \(3,\)"):
        DAQPSolver().solve(with_guess(qp, np.zeros(3)))


def test_a_pinned_qp_passes_the_rest_of_its_guess():
    rng = np.random.default_rng(6)
    k = 12
    B = rng.standard_normal((k, 3))
    a = np.zeros(k)
    a[4] = 1.0  # one objective weight: it is fixed by the equality
    qp = BoxQP(B @ B.T, rng.standard_normal(k), -np.ones(k), np.ones(k), a, 0.5, "stationarity")
    solver = CountingDAQP()
    cold = solver.solve(qp)
    CountingDAQP.calls = 0
    warm = solver.solve(with_guess(qp, cold))
    assert CountingDAQP.calls == 0 and warm[4] == 0.5
    assert kkt_residual(qp, warm).total <= default_tolerance(k)


def sphere_problem(n=10, seed=7):
    A = np.random.default_rng(seed).standard_normal((n, n))
    A = (A + A.T) / 2

    def fn(x):
        return x @ A @ x, 2 * A @ x, None, None, np.array([x @ x - 1.0]), (2 * x)[:, None]

    x0 = np.ones(n) / np.sqrt(n) + 0.1 * np.random.default_rng(seed + 1).standard_normal(n)
    return fn, x0, np.linalg.eigvalsh(A)[0]


def run_recorded(warm: bool):
    rec = RecordingQPSolver()
    fn, x0, f_star = sphere_problem()
    result = solve(fn, x0, qp_solver=rec, print_level=0, maxit=150, qp_warm_start=warm)
    return result, rec, f_star


def test_runs_warm_start_their_stationarity_qps():
    result, rec, f_star = run_recorded(warm=True)
    stat = [r for r in rec.records if r.qp.kind == "stationarity" and r.qp.size > 8]
    guessed = [r for r in stat if r.qp.guess is not None]
    assert len(stat) > 20 and len(guessed) >= 0.8 * len(stat)
    assert result.final.f == pytest.approx(f_star, abs=1e-6) and result.final.tv <= 1e-6
    # every warm-started answer is certified, and as good as the cold one within that bound
    cold_solver = default_qp_solver()
    for r in guessed:
        qp = r.qp
        tol = default_tolerance(qp.size)
        assert kkt_residual(qp, r.y).total <= tol
        cold = cold_solver.solve(BoxQP(qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind))
        sc = _Scales.of(qp)
        obj = lambda y: 0.5 * y @ qp.Q @ y + qp.q @ y
        assert abs(obj(r.y) - obj(cold)) <= qp.size * tol * sc.s * sc.w


def test_warm_starts_save_library_calls_and_keep_the_answer(monkeypatch):
    # The guesses against the library alone: the default's cold-start active set (which
    # answers nearly all of these QPs without a library either way) is switched off.
    monkeypatch.setattr("ncvx_ref.qp.default.ACTIVE_SET_FIRST_MAX_K", 0)
    calls = {}
    for warm in (False, True):
        CountingDAQP.calls = 0
        monkeypatch.setattr("ncvx_ref.qp.default.DAQPSolver", CountingDAQP)
        result, rec, f_star = run_recorded(warm)
        calls[warm] = CountingDAQP.calls
        assert any(r.qp.guess is not None for r in rec.records) == warm  # the option decides
        assert result.final.f == pytest.approx(f_star, abs=1e-6)
        assert int(result.termination_code) in (0, 6)
    # measured 39 against 56: the guesses that do not certify still go to the library
    assert calls[True] < 0.85 * calls[False]


def test_runs_are_reproducible_with_warm_starts():
    fn, x0, _ = sphere_problem(seed=11)
    a = solve(fn, x0, print_level=0, maxit=80, qp_warm_start=True)
    b = solve(fn, x0, print_level=0, maxit=80, qp_warm_start=True)
    assert a.final.x.tobytes() == b.final.x.tobytes() and a.stat_value == b.stat_value


def test_the_guess_is_held_to_the_stricter_tolerance(monkeypatch):
    """The guess attempt asks polishing for 1/100 of the tolerance the library answer gets."""
    import ncvx_ref.qp.solvers as solvers_module
    seen = []
    real = solvers_module.polish

    def spy(qp, y0, **kw):
        seen.append((y0 is qp.guess, kw.get("tol")))
        return real(qp, y0, **kw)

    monkeypatch.setattr(solvers_module, "polish", spy)
    qp = degenerate_stationarity_qp(np.random.default_rng(8))
    DAQPSolver().solve(with_guess(qp, np.full(20, np.nan)))  # not certified: the library too
    tol = default_tolerance(qp.size)
    assert GUESS_TOLERANCE_FACTOR == 0.01
    assert seen[0] == (True, GUESS_TOLERANCE_FACTOR * tol)
    assert seen[1][0] is False and seen[1][1] in (None, tol)


def test_the_fallback_solver_does_not_try_the_guess_again(monkeypatch):
    """DAQP fails after the guess did not certify: PIQP gets the QP without the guess."""
    from ncvx_ref.qp.size_switch import SizeSwitchedQPSolver

    class FailingDAQP(DAQPSolver):
        def _solve_raw(self, qp):
            raise QPSolverError("daqp reached its iteration limit (test)")

    seen = []

    class RecordingPIQP(PIQPSolver):
        def solve(self, qp):
            seen.append(qp.guess)
            return super().solve(qp)

    qp = degenerate_stationarity_qp(np.random.default_rng(9))
    y = SizeSwitchedQPSolver(FailingDAQP(), RecordingPIQP()).solve(with_guess(qp, np.full(20, np.nan)))
    assert seen == [None] and kkt_residual(qp, y).total <= default_tolerance(qp.size)
    plain = BoxQP(qp.Q, qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind)
    assert plain.without_guess() is plain
    stripped = with_guess(qp, np.zeros(20)).without_guess()
    assert stripped.guess is None and stripped.Q is qp.Q and stripped.eq_rhs == qp.eq_rhs
