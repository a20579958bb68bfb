"""The lifted (structured) QP path: same answers as the dense path, without forming ``Q``.

QPs with ``k >> n`` are drawn like the method builds them (``Q = AᵀMA``, ``A`` the ``n x k``
gradients); the lifted answer must satisfy the dense KKT conditions to the certification
tolerance, reach the dense solver's objective and give the same ``A y`` (unique, since
``½zᵀMz`` is strictly convex in ``z = Ay``).  Through ``ncvx_ref.solve``, the steering and
stationarity results at the same points agree with the dense path.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import ncvx_ref
from ncvx_ref.backend import Backend
from ncvx_ref.qp.counting import CountingQPSolver
from ncvx_ref.qp.default import RecordingQPSolver, default_qp_solver
from ncvx_ref.qp.interface import BoxQP, QPSolverError
from ncvx_ref.qp.lifted import merge_duplicate_columns as lifted_merge
from ncvx_ref.qp.lifted import (LiftedQPSolver, host_gradients, host_metric, kkt_residual_structured,
                                wants_structure)
from ncvx_ref.qp.polish import default_tolerance, kkt_residual
from ncvx_ref.qp.solvers import DAQPSolver, PIQPSolver, check_qp
from ncvx_ref.problems import svm_soft_margin
from ncvx_ref.steering import SteeringParameters, steer
from ncvx_ref.stationarity import NeighbourhoodCache, stationarity


def _metric(rng, n: int, kind: str):
    if kind == "I":
        return None
    if kind == "scalar":
        return 2.5
    B = rng.standard_normal((n, n)) / np.sqrt(n)
    return B @ B.T + 0.05 * np.eye(n)  # SPD, condition number ~100


def _random_qp(seed: int, n: int, k: int, metric: str, equality: bool, sparse: bool) -> BoxQP:
    """A steering-like (box) or stationarity-like (box + Σ y_F = μ) QP with ``k >> n``."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, k))
    if sparse:
        A *= rng.random((n, k)) < 0.15
        A[:, 0] = rng.standard_normal(n)  # one dense column, like an objective gradient
    A[:, 3] = A[:, 2] + 1e-9 * rng.standard_normal(n)  # nearly identical gradients
    M = _metric(rng, n, metric)
    q = rng.standard_normal(k)
    if not equality:
        m_e = k // 10
        lb = np.concatenate([-np.ones(m_e), np.zeros(k - m_e)])
        return BoxQP(None, q, lb, np.ones(k), kind="steering",
                     A=sp.csc_matrix(A) if sparse else A, M=M)
    l = 4
    mu = 0.3
    lb = np.zeros(k)
    ub = np.concatenate([np.full(l, mu), np.ones(k - l)])
    a = np.concatenate([np.ones(l), np.zeros(k - l)])
    return BoxQP(None, q, lb, ub, a, mu, kind="stationarity", A=sp.csc_matrix(A) if sparse else A,
                 M=M)


def _dense(qp: BoxQP) -> BoxQP:
    return BoxQP(qp.dense_Q(), qp.q, qp.lb, qp.ub, qp.eq_coeffs, qp.eq_rhs, qp.kind)


def _objective(qp: BoxQP, y: np.ndarray) -> float:
    return float(0.5 * y @ qp.dense_Q() @ y + qp.q @ y)


@pytest.mark.parametrize("metric", ["I", "scalar", "spd"])
@pytest.mark.parametrize("equality", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_lifted_matches_dense(metric, equality, sparse, seed):
    n, k = 12, 150
    qp = _random_qp(seed, n, k, metric, equality, sparse)
    solver = LiftedQPSolver()
    y = solver.solve(qp)
    assert qp.structured, "the lifted solver must not form the dense Q"
    assert solver.last_polish is not None and solver.last_polish.certified
    dense = _dense(qp)
    res = kkt_residual(dense, y)
    assert res.total <= default_tolerance(k), f"dense KKT residual {res.total:.3g}"
    y_ref = PIQPSolver().solve(dense)
    f, f_ref = _objective(qp, y), _objective(qp, y_ref)
    assert abs(f - f_ref) <= 1e-10 * max(1.0, abs(f_ref))
    A = qp.A.toarray() if sp.issparse(qp.A) else qp.A
    z, z_ref = A @ y, A @ y_ref
    assert np.max(np.abs(z - z_ref)) <= 1e-8 * max(1.0, np.max(np.abs(z_ref)))


def test_sparse_factorization_path():
    """A scaled-identity metric and sparse ``A``: ``K`` is factored sparse (LU) plus Woodbury."""
    qp = _random_qp(6, 30, 200, "scalar", True, True)
    y = LiftedQPSolver().solve(qp)
    assert kkt_residual(_dense(qp), y).total <= default_tolerance(200)


def _bfgs_like_updates(rng, M: np.ndarray, updates: int, pull: np.ndarray):
    """``M`` after BFGS-like rank-2 updates (``y = noise + 2 s·pull``, so ``sᵀy > 0``), as
    BFGSInverseHessian makes them, with the vectors ``s, u`` of each update."""
    n = M.shape[0]
    vectors = []
    for _ in range(updates):
        s, y = rng.standard_normal(n), rng.standard_normal(n)
        y += 2.0 * s * pull
        rho = 1.0 / float(s @ y)
        u = rho * (M @ y)
        kappa = rho * rho * float(y @ M @ y) + rho
        M = M - (np.outer(u, s) + np.outer(s, u)) + kappa * np.outer(s, s)
        vectors += [s, u]
    return (M + M.T) / 2, vectors


def _low_rank_metric(rng, n: int, updates: int):
    """``γ I`` plus BFGS-like rank-2 terms, as BFGSInverseHessian builds it, with its vectors."""
    gamma = 0.7
    M, vectors = _bfgs_like_updates(rng, gamma * np.eye(n), updates, np.ones(n))
    return M, gamma, vectors


def test_low_rank_inverse_matches_the_dense_inverse():
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(11)
    M, gamma, vectors = _low_rank_metric(rng, 60, 5)
    lifted.register_low_rank_metric(M, gamma, vectors)
    c, W, F = lifted._low_rank_inverse(M)
    Minv = c * np.eye(60) + W @ F @ W.T
    assert np.allclose(Minv @ M, np.eye(60), atol=1e-10)
    assert W.shape[1] <= 10 and np.allclose(W.T @ W, np.eye(W.shape[1]), atol=1e-12)


def test_low_rank_inverse_ignores_the_scales_of_the_vectors():
    """Only the span matters: vectors of wildly different norms (``u = ρHy`` grows with ``H``)
    must not have their directions dropped as numerically dependent."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(16)
    M, gamma, vectors = _low_rank_metric(rng, 60, 5)
    scaled = [v * (1e-14 if j % 2 else 1e3) for j, v in enumerate(vectors)]
    lifted.register_low_rank_metric(M, gamma, scaled)
    out = lifted._low_rank_inverse(M)
    assert out is not None
    c, W, F = out
    assert np.allclose((c * np.eye(60) + W @ F @ W.T) @ M, np.eye(60), atol=1e-10)


def test_low_rank_form_is_checked_before_use():
    """A metric that is not ``γ I`` off the registered span is refused (dense path instead)."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(12)
    M, gamma, vectors = _low_rank_metric(rng, 60, 5)
    M_other = M + 1e-3 * np.diag(rng.random(60))  # full-rank change the vectors do not span
    lifted.register_low_rank_metric(M_other, gamma, vectors)
    assert lifted._low_rank_inverse(M_other) is None
    lifted.register_low_rank_metric(M, 2 * gamma, vectors)  # wrong γ
    assert lifted._low_rank_inverse(M) is None


@pytest.mark.parametrize("with_metric", [False, True])
def test_sparse_K_solver_matches_dense_K(with_metric):
    """The sparse-plus-Woodbury solve of ``K = M⁻¹ + Ã D⁻¹ Ãᵀ`` equals a dense solve."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(13)
    n, k = 300, 600
    A = np.zeros((n, k))
    for j in range(k):  # two entries per constraint gradient: S0 stays sparse
        A[rng.choice(n, 2, replace=False), j] = rng.standard_normal(2)
    A[:, :2] = rng.standard_normal((n, 2))  # dense columns (objective gradients)
    cols = lifted._Columns(sp.csc_matrix(A))
    assert cols.dense_idx.size == 2
    Dinv = 10.0 ** rng.uniform(-4, 4, k)
    c, W, F = 1.3, None, None
    Minv = c * np.eye(n)
    if with_metric:
        M, gamma, vectors = _low_rank_metric(rng, n, 4)
        lifted.register_low_rank_metric(M, gamma, vectors)
        c, W, F = lifted._low_rank_inverse(M)
        Minv = np.linalg.inv(M)
    assert cols.sparse_K, "S0 is sparse here: the sparse path applies"
    solve = lifted._sparse_K_solver(cols, Dinv, c, W, F)
    K = Minv + (A * Dinv) @ A.T
    v = rng.standard_normal((n, 3))
    x = solve(v)
    assert np.max(np.abs(K @ x - v)) <= 1e-9 * np.max(np.abs(K)) * np.max(np.abs(x))


@pytest.mark.parametrize("sparse_S0", [True, False])
def test_structured_qp_with_low_rank_metric_matches_dense(sparse_S0, monkeypatch):
    """A registered low-rank metric gives the dense path's answer (same objective and ``A y``),
    through the sparse ``S0`` when it is sparse and through a dense ``K`` when it is not."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(14)
    n, k = (200, 600) if sparse_S0 else (40, 400)
    M, gamma, vectors = _low_rank_metric(rng, n, 6)
    if sparse_S0:
        A = np.zeros((n, k))
        for j in range(k):
            A[rng.choice(n, 2, replace=False), j] = rng.standard_normal(2)
    else:
        A = rng.standard_normal((n, k)) * (rng.random((n, k)) < 0.08)
    lifted.register_low_rank_metric(M, gamma, vectors)
    calls = []
    real = lifted._sparse_K_solver
    monkeypatch.setattr(lifted, "_sparse_K_solver", lambda *a: calls.append(1) or real(*a))
    q = rng.standard_normal(k)
    qp = BoxQP(None, q, np.zeros(k), np.ones(k), kind="steering", A=sp.csc_matrix(A), M=M)
    assert lifted._low_rank_inverse(M) is not None
    y = LiftedQPSolver(min_k=1).solve(qp)
    dense = _dense(qp)
    assert kkt_residual(dense, y).total <= default_tolerance(k)
    y_ref = PIQPSolver().solve(dense)
    assert abs(_objective(qp, y) - _objective(qp, y_ref)) <= 1e-10 * max(1.0, abs(_objective(qp, y_ref)))
    assert np.max(np.abs(A @ (y - y_ref))) <= 1e-8 * max(1.0, np.max(np.abs(A @ y_ref)))
    assert bool(calls) == sparse_S0, "sparse S0 must take the sparse path, a dense one must not"


def test_failed_low_rank_interior_point_is_retried_with_the_dense_inverse(monkeypatch):
    """When the interior point fails through the low-rank form (late BFGS metrics: its ``F`` is
    indefinite and huge), the QP is solved again through the dense ``M⁻¹`` before any dense
    fallback: a certified answer, one retry, no fallback."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(20)
    n, k = 200, 600
    M, gamma, vectors = _low_rank_metric(rng, n, 6)
    A = np.zeros((n, k))
    for j in range(k):
        A[rng.choice(n, 2, replace=False), j] = rng.standard_normal(2)
    lifted.register_low_rank_metric(M, gamma, vectors)
    real = lifted._sparse_K_solver

    def broken(cols, Dinv, c, W, F):  # the low-rank Newton solves go wrong, others stay exact
        solve = real(cols, Dinv, c, W, F)
        return (lambda v: 1e3 * solve(v)) if W is not None else solve

    monkeypatch.setattr(lifted, "_sparse_K_solver", broken)
    qp = BoxQP(None, rng.standard_normal(k), np.zeros(k), np.ones(k), kind="steering",
               A=sp.csc_matrix(A), M=M)
    solver = LiftedQPSolver(min_k=1)
    y = solver.solve(qp)
    assert solver.low_rank_retries == 1 and solver.dense_fallbacks == 0, solver.last_status
    assert kkt_residual(_dense(qp), y).total <= default_tolerance(k)


@pytest.mark.parametrize("equality", [False, True])
def test_pivoted_reduced_kkt_matches_the_eigendecomposition(equality):
    """The structured polishing's pivoted-Cholesky step equals the dense polishing's eigen step
    on a singular reduced Hessian with a clear spectral gap: same Newton step, same flat part."""
    from ncvx_ref.qp.lifted import _PivotedReducedKKT
    from ncvx_ref.qp.polish import _ReducedKKT
    rng = np.random.default_rng(21)
    f, rank = 60, 45
    B = rng.standard_normal((rank, f))
    Q = B.T @ B  # PSD, 15 exactly flat directions
    a = rng.random(f) + 0.5 if equality else None
    g = rng.standard_normal(f)
    r_eq = 0.3 if equality else 0.0
    dense, piv = _ReducedKKT(Q, a), _PivotedReducedKKT(Q, a)
    assert dense.eig is not None and piv.eig is not None and piv.eig[0] == "pivoted"
    d1, l1, flat1 = dense.step(g, r_eq)
    d2, l2, flat2 = piv.step(g, r_eq)
    scale = max(1.0, np.max(np.abs(d1)))
    assert np.max(np.abs(d1 - d2)) <= 1e-9 * scale
    assert abs(l1 - l2) <= 1e-9 * max(1.0, abs(l1))
    assert flat1 is not None and flat2 is not None
    assert np.max(np.abs(flat1 - flat2)) <= 1e-9 * max(1.0, np.max(np.abs(flat1)))


def test_bfgs_low_rank_form_spans_H_minus_gamma_identity():
    """``BFGSInverseHessian.low_rank_form``: ``H - γ0 I`` lies in the span of its vectors; the
    form is dropped (for good) once it would hold more than LOW_RANK_MAX_FRACTION·n vectors."""
    from ncvx_ref import hessian
    rng = np.random.default_rng(15)
    n = 40
    H = hessian.BFGSInverseHessian(n, Backend.of(np.zeros(1)))
    assert H.low_rank_form() is None  # no update yet
    limit = int(hessian.LOW_RANK_MAX_FRACTION * n) // 2  # updates it can hold
    for j in range(limit + 1):
        s = rng.standard_normal(n)
        y = s + 0.3 * rng.standard_normal(n)
        assert H.update(s, y, float(s @ y), False) in (hessian.UPDATED, hessian.UPDATED_UNSCALED)
        form = H.low_rank_form()
        if j < limit:
            gamma, vecs = form
            V = np.column_stack(vecs)
            R = H.dense - gamma * np.eye(n)
            P = V @ np.linalg.pinv(V)
            assert np.max(np.abs(R - P @ R @ P)) <= 1e-10 * np.max(np.abs(H.dense))
        else:
            assert form is None


def test_structured_residual_equals_dense_residual():
    qp = _random_qp(3, 10, 80, "spd", True, True)
    y = np.clip(np.random.default_rng(0).random(80), qp.lb, qp.ub)
    a, b = kkt_residual_structured(qp, y), kkt_residual(_dense(qp), y)
    assert np.isclose(a.total, b.total, rtol=1e-10) and np.isclose(a.eq_multiplier, b.eq_multiplier)


def test_exact_zero_answer_is_returned_exactly():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((6, 40))
    qp = BoxQP(None, np.abs(rng.standard_normal(40)) + 0.1, np.zeros(40), np.ones(40), A=A)
    y = LiftedQPSolver().solve(qp)
    assert np.array_equal(y, np.zeros(40))


def test_lazy_dense_Q_keeps_dense_solvers_working():
    qp = _random_qp(4, 8, 60, "spd", False, True)
    A = qp.A.toarray()
    Q = A.T @ qp.M @ A
    assert qp.structured
    y = DAQPSolver().solve(qp)  # a dense-only solver reads qp.Q, formed on demand
    assert not qp.structured and np.allclose(qp.Q, (Q + Q.T) / 2, rtol=0, atol=1e-12)
    assert kkt_residual(qp, y).total <= default_tolerance(60)
    y_lifted = LiftedQPSolver().solve(_random_qp(4, 8, 60, "spd", False, True))
    assert np.max(np.abs(A @ (y - y_lifted))) <= 1e-8


def test_structure_validation():
    A = np.ones((3, 5))
    with pytest.raises(ValueError, match="either a dense `Q` or the structure"):
        BoxQP(None, np.zeros(5), np.zeros(5), np.ones(5))
    with pytest.raises(QPSolverError, match="`A` must have shape"):
        check_qp(BoxQP(None, np.zeros(4), np.zeros(4), np.ones(4), A=A))
    with pytest.raises(QPSolverError, match="`M` must be a finite"):
        check_qp(BoxQP(None, np.zeros(5), np.zeros(5), np.ones(5), A=A, M=np.eye(4)))
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(QPSolverError, match="inf or NaN"):
        check_qp(BoxQP(None, np.zeros(5), np.zeros(5), np.ones(5), A=bad))
    with pytest.raises(QPSolverError, match="equality is infeasible"):
        LiftedQPSolver().solve(BoxQP(None, np.zeros(5), np.zeros(5), np.ones(5), np.ones(5), 7.0,
                                     A=A))


def test_who_gets_structured_qps():
    lifted = LiftedQPSolver()
    assert lifted.wants_structure(1021, 2000) and not lifted.wants_structure(1021, 900)
    assert not lifted.wants_structure(3000, 2000)  # k <= n: Q is not rank deficient
    assert wants_structure(default_qp_solver(), 1021, 2000)
    assert wants_structure(CountingQPSolver(RecordingQPSolver()), 1021, 2000)  # through wrappers
    assert not wants_structure(PIQPSolver(), 1021, 2000)  # plain adapters stay dense
    assert not wants_structure(object(), 1021, 2000)


def test_host_gradients_sparsity_and_metric_detection():
    dense = np.random.default_rng(0).standard_normal((5, 4))
    assert isinstance(host_gradients([dense]), np.ndarray)
    sparse = np.zeros((50, 40))
    sparse[0] = 1.0
    out = host_gradients([sparse, np.ones(50)])
    assert sp.issparse(out) and out.shape == (50, 41)
    b = Backend.of(np.zeros(3))
    assert host_metric(lambda v: v, 3, b) == (True, None)
    H = np.diag([1.0, 2.0, 3.0])
    ok, M = host_metric(lambda v: H @ v, 3, b)
    assert ok and np.array_equal(M, H)


# --------------------------------------------------------------------------- through the solver
def _svm():
    return svm_soft_margin.random(40, 5, 5)  # n = 46, 80 constraints


def test_first_iterate_identical_and_runs_without_qp_failures():
    """The same first step through ``ncvx_ref.solve``; later the runs may part at the SVM's kinks
    (constraints landing exactly on 0, whose side depends on rounding)."""
    prob = _svm()
    runs = {}
    for name, solver in (("dense", PIQPSolver()), ("lifted", LiftedQPSolver(min_k=1))):
        runs[name] = ncvx_ref.solve(prob.evaluate, np.asarray(prob.x0), qp_solver=solver,
                                    maxit=25, print_level=0, record_history=True)
    hd, hl = runs["dense"].history, runs["lifted"].history
    x1d, x1l = np.asarray(hd[1].x), np.asarray(hl[1].x)
    assert np.max(np.abs(x1d - x1l)) <= 1e-12 * max(1.0, np.max(np.abs(x1d)))
    assert hd[1].mu == hl[1].mu and hd[1].alpha == hl[1].alpha
    assert runs["lifted"].quadprog_failure_rate == 0.0
    fd, fl = runs["dense"].final.f, runs["lifted"].final.f
    assert abs(fd - fl) <= 0.05 * abs(fd), (fd, fl)  # same neighbourhood after 25 iterations


def test_steering_and_stationarity_agree_at_the_same_points():
    """At points and metrics of a real run, the structured steering direction, its ``mu`` and
    the stationarity value equal the dense path's."""
    prob = _svm()
    states = []
    ncvx_ref.solve(prob.evaluate, np.asarray(prob.x0), maxit=12, print_level=0,
                   callback=lambda s: states.append((s.point, np.array(s.get_H()))) and False)
    backend = Backend.of(np.asarray(prob.x0))
    params = SteeringParameters()
    checked = 0
    for pt, H in states[2::3]:
        apply_M = lambda v, H=H: H @ v  # noqa: E731
        d_dense, mu_dense = steer(pt, apply_M, params, PIQPSolver(), backend)
        d_lift, mu_lift = steer(pt, apply_M, params, LiftedQPSolver(min_k=1), backend)
        assert mu_dense == mu_lift
        assert np.max(np.abs(d_dense - d_lift)) <= 1e-8 * max(1.0, np.max(np.abs(d_dense)))
        vals = []
        for solver in (PIQPSolver(), LiftedQPSolver(min_k=1)):
            cache = NeighbourhoodCache(3, 1e-4, backend)
            vals.append(stationarity(pt, cache, apply_M, solver, 0.0, backend).value)
        assert np.isclose(vals[0], vals[1], rtol=1e-8, atol=1e-14), vals
        checked += 1
    assert checked >= 3


def test_repeated_gradients_are_merged_exactly():
    """The stationarity QP of linear constraints repeats one Jacobian per sample: merged into one
    variable per distinct column, solved, expanded; certified on the original QP."""
    rng = np.random.default_rng(8)
    n, m, l = 10, 30, 3
    J = rng.standard_normal((n, m)) * (rng.random((n, m)) < 0.3)
    G = rng.standard_normal((n, l))
    c = rng.standard_normal(m)
    mu = 0.5
    A = sp.csc_matrix(np.hstack([G] + [J] * l))
    k = l + l * m
    q = -np.concatenate([np.full(l, 1.3), np.tile(c, l)])
    ub = np.concatenate([np.full(l, mu), np.ones(l * m)])
    a = np.concatenate([np.ones(l), np.zeros(l * m)])
    qp = BoxQP(None, q, np.zeros(k), ub, a, mu, kind="stationarity", A=A, M=_metric(rng, n, "spd"))
    reduced, expand = lifted_merge(qp)
    assert reduced.size == l + m and expand is not None
    y = LiftedQPSolver().solve(qp)
    assert kkt_residual(_dense(qp), y).total <= default_tolerance(k)
    y_ref = PIQPSolver().solve(_dense(qp))
    assert abs(_objective(qp, y) - _objective(qp, y_ref)) <= 1e-10 * max(1.0, abs(_objective(qp, y_ref)))


def _diagonal_low_rank_metric(rng, n: int, updates: int):
    """A positive diagonal plus BFGS-like rank-2 terms, with the diagonal and the vectors."""
    d = 10.0 ** rng.uniform(-1, 3, n)
    M, vectors = _bfgs_like_updates(rng, np.diag(d), updates, 1.0 / d)
    return M, d, vectors


@pytest.mark.parametrize("updates", [0, 1, 5])
def test_diagonal_low_rank_inverse_matches_the_dense_inverse(updates):
    """``M = diag(d) + low rank``: the registered form's ``diag(c) + W F Wᵀ`` is ``M⁻¹``."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(30 + updates)
    n = 60
    M, d, vectors = _diagonal_low_rank_metric(rng, n, updates)
    lifted.register_low_rank_metric(M, d, vectors)
    c, W, F = lifted._low_rank_inverse(M)
    assert c.shape == (n,)
    Minv = np.diag(c) + (0.0 if W is None else W @ F @ W.T)
    assert (W is None) == (updates == 0)
    assert np.allclose(Minv @ M, np.eye(n), atol=1e-9)
    if W is not None:
        assert np.allclose(F, F.T, atol=0.0)


def test_diagonal_low_rank_form_is_checked_before_use():
    """A wrong diagonal, a metric the vectors do not span, or a non-positive diagonal is refused."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(40)
    M, d, vectors = _diagonal_low_rank_metric(rng, 60, 3)
    wrong = d.copy()
    wrong[7] *= 1.5
    lifted.register_low_rank_metric(M, wrong, vectors)
    assert lifted._low_rank_inverse(M) is None
    M_other = M + 1e-2 * np.max(np.abs(M)) * np.outer(np.cos(np.arange(60)), np.cos(np.arange(60)))
    lifted.register_low_rank_metric(M_other, d, vectors)
    assert lifted._low_rank_inverse(M_other) is None
    D = np.diag(d)
    lifted.register_low_rank_metric(D, -d, [])
    assert lifted._low_rank_inverse(D) is None
    not_diagonal = D + 1e-3 * np.max(d) * np.eye(60, k=1) + 1e-3 * np.max(d) * np.eye(60, k=-1)
    lifted.register_low_rank_metric(not_diagonal, d, [])
    assert lifted._low_rank_inverse(not_diagonal) is None


@pytest.mark.parametrize("updates", [0, 4])
def test_structured_qp_with_diagonal_metric_takes_the_sparse_path(updates, monkeypatch):
    """A diagonal metric (plus rank-2 terms) gives the dense path's answer through the sparse
    ``S0`` (no dense ``M⁻¹`` is formed)."""
    from ncvx_ref.qp import lifted
    rng = np.random.default_rng(50 + updates)
    n, k = 200, 600
    M, d, vectors = _diagonal_low_rank_metric(rng, n, updates)
    A = np.zeros((n, k))
    for j in range(k):
        A[rng.choice(n, 2, replace=False), j] = rng.standard_normal(2)
    lifted.register_low_rank_metric(M, d, vectors)
    calls = []
    real = lifted._sparse_K_solver
    monkeypatch.setattr(lifted, "_sparse_K_solver", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(lifted, "_metric_inverse", lambda M: pytest.fail("dense M⁻¹ formed"))
    qp = BoxQP(None, rng.standard_normal(k), np.zeros(k), np.ones(k), kind="steering",
               A=sp.csc_matrix(A), M=M)
    solver = LiftedQPSolver(min_k=1)
    y = solver.solve(qp)
    assert calls and solver.dense_fallbacks == 0 and solver.low_rank_retries == 0
    dense = _dense(qp)
    assert kkt_residual(dense, y).total <= default_tolerance(k)
    y_ref = PIQPSolver().solve(dense)
    assert abs(_objective(qp, y) - _objective(qp, y_ref)) <= 1e-10 * max(1.0, abs(_objective(qp, y_ref)))


def test_bfgs_low_rank_form_of_a_diagonal_H0():
    """With a diagonal NumPy ``H0`` the form's base is that diagonal (scaled with ``H`` at the
    first update when ``scaleH0``), ``H - diag(base)`` lies in the span of its vectors, and a
    non-diagonal ``H0`` has no form."""
    from ncvx_ref import hessian
    rng = np.random.default_rng(17)
    n = 40
    b = Backend.of(np.zeros(1))
    d0 = rng.uniform(0.5, 2.0, n)
    for scale in (False, True):
        H = hessian.BFGSInverseHessian(n, b, H0=np.diag(d0), scaleH0=scale)
        base, vecs = H.low_rank_form()
        assert np.array_equal(base, d0) and vecs == []
        for _ in range(3):
            s = rng.standard_normal(n)
            y = s + 0.3 * rng.standard_normal(n)
            assert H.update(s, y, float(s @ y), False) in (hessian.UPDATED, hessian.UPDATED_UNSCALED)
            base, vecs = H.low_rank_form()
            V = np.column_stack(vecs)
            R = H.dense - np.diag(base)
            P = V @ np.linalg.pinv(V)
            assert np.max(np.abs(R - P @ R @ P)) <= 1e-10 * np.max(np.abs(H.dense))
    full = np.diag(d0) + 0.01 * np.ones((n, n))
    assert hessian.BFGSInverseHessian(n, b, H0=full).low_rank_form() is None
