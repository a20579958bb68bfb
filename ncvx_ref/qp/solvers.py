"""QP solver adapters: daqp, proxsuite, clarabel, piqp, osqp behind the ``QPSolver`` protocol.

Every adapter solves the one QP shape of :class:`~ncvx_ref.qp.interface.BoxQP` (box bounds plus
at most one equality) in the same four steps:

1. :func:`check_qp` validates shapes, finiteness, ``lb <= ub`` and the equality's feasibility
   (an infeasible equality raises :class:`QPSolverError` before any library is called).
   A QP whose equality has one nonzero coefficient fixes that variable: the others are
   solved as a box QP, by these same steps (:mod:`ncvx_ref.qp.pinned`);
2. :func:`closed_form` answers trivial QPs exactly (``y = 0`` when it is optimal, ``k = 1``,
   separable ``Q``), certified by the KKT residual; for ``k <= 3`` without equality,
   :func:`~ncvx_ref.qp.small.vertex` answers a QP whose answer is a vertex of the box with
   strictly signed multipliers;
   with a ``guess`` (and ``polish=True``, ``k > 8``), polishing starts from it (its rounds,
   then the exact active-set method): when that certifies to :data:`GUESS_TOLERANCE_FACTOR`
   times the tolerance, the answer is returned and the library is not called (the
   stationarity QP, warm-started from the previous iteration's answer: ``docs/qp_solvers.md``);
   with ``active_set_first_max_k`` (the default solver: 200), a QP of ``8 < k <=`` that many
   variables goes to the exact active-set method from a vertex start
   (:func:`~ncvx_ref.qp.polish.active_set_solve` from :func:`~ncvx_ref.qp.polish.cold_start`),
   and to the library only when that does not
   certify within :data:`COLD_WORK_FACTOR` ``· k³`` of factorization work;
3. the library solves the QP with tight tolerances (``Q`` is PSD and often singular: each
   adapter uses the library's own support for that, e.g. DAQP's proximal iterations);
4. with ``polish=True`` (the default) :func:`~ncvx_ref.qp.polish.polish` makes the answer exact
   on its active set; the library's status is then only advisory: a certified polished answer
   is accepted even from a library that reported a failure, and an uncertified one from a
   library that reported success is returned unpolished.

For ``k <= 8`` steps 1, 2 and polishing's common case run on Python floats
(:mod:`ncvx_ref.qp.small`), with the same answers: NumPy's per-call overhead is most of the
cost of so small a QP.

Adapters hold no state between calls (a warm start comes only as the QP's own ``guess``), so
one QP always gets the same answer, bit for bit.  Libraries are imported on first use, so a
missing optional library only fails the adapter that needs it.
"""
from __future__ import annotations

import importlib
from typing import Optional

import numpy as np

from . import small
from .interface import BoxQP, QPSolverError
from .pinned import PinnedVariable
from .polish import (PolishOutcome, _Scales, _residual, _zero_is_exact, active_set_solve,
                     cold_start, default_tolerance, polish)

_count = np.count_nonzero
_add_reduce = np.add.reduce
_isfinite = np.isfinite


def _all_finite(x: np.ndarray) -> bool:
    return _count(_isfinite(x)) == x.size

__all__ = ["check_qp", "closed_form", "LibraryQPSolver", "DAQPSolver", "ProxSuiteSolver",
           "ClarabelSolver", "PIQPSolver", "OSQPSolver", "SOLVER_CLASSES"]


_MODULES: dict = {}


def _import(module: str, adapter: str):
    mod = _MODULES.get(module)
    if mod is not None:
        return mod
    try:
        mod = _MODULES[module] = importlib.import_module(module)
        return mod
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise QPSolverError(
            f"QP solver `{adapter}` needs the Python package `{module}`; install it "
            f"(pip install {module}) or pick another `qp_solver`.") from exc


def check_qp(qp: BoxQP) -> None:
    """Raise :class:`QPSolverError` unless ``qp`` is well formed and its feasible set non-empty."""
    q, lb, ub = qp.q, qp.lb, qp.ub
    k = q.shape[0] if q.ndim == 1 else 0
    if k == 0:
        raise QPSolverError(f"QP `q` must be a non-empty 1-D array, got shape {q.shape}.")
    structured = qp.structured  # Q = Aᵀ M A not formed: validate the structure instead
    if structured:
        from .lifted import check_structure
        check_structure(qp)
    elif qp.Q.shape != (k, k):
        raise QPSolverError(f"QP `Q` must have shape ({k}, {k}), got {qp.Q.shape}.")
    if lb.shape != (k,) or ub.shape != (k,):
        name = "lb" if lb.shape != (k,) else "ub"
        raise QPSolverError(f"QP `{name}` must have shape ({k},), got {getattr(qp, name).shape}.")
    for name in (("q", "lb", "ub") if structured else ("Q", "q", "lb", "ub")):
        if not _all_finite(getattr(qp, name)):
            raise QPSolverError(f"QP `{name}` contains inf or NaN; the QP data must be finite.")
    if _count(lb > ub):
        i = int(np.flatnonzero(lb > ub)[0])
        raise QPSolverError(f"QP bounds are infeasible: lb[{i}] = {lb[i]} > ub[{i}] = {ub[i]}.")
    a = qp.eq_coeffs
    if a is None:
        return
    if a.shape != (k,) or not _all_finite(a) or not np.isfinite(qp.eq_rhs):
        raise QPSolverError(f"QP equality must have finite coefficients of shape ({k},) and a "
                            f"finite right-hand side.")
    a_lb, a_ub = a * lb, a * ub
    lo = float(_add_reduce(np.minimum(a_lb, a_ub)))  # np.sum of a vector, without its wrapper
    hi = float(_add_reduce(np.maximum(a_lb, a_ub)))
    slack = default_tolerance(k) * max(1.0, abs(lo), abs(hi))
    if not (lo - slack <= qp.eq_rhs <= hi + slack):
        raise QPSolverError(f"QP equality is infeasible: a·y = {qp.eq_rhs} cannot hold within the "
                            f"bounds, where a·y ranges over [{lo}, {hi}].")


def closed_form(qp: BoxQP, tol: Optional[float] = None, *,
                scales: Optional[_Scales] = None) -> Optional[np.ndarray]:
    """The exact answer of a trivial QP, or ``None``: the library must solve it.

    Covered: ``y = 0`` when it satisfies the KKT conditions exactly (returned as exact
    zeros; §13: an exact zero steering answer is valid); ``k = 1``; without an equality, a
    diagonal ``Q`` (separable: a clip per variable; a zero diagonal entry goes to the bound
    ``q`` points away from, or to the point of the box nearest 0 when ``q_i = 0``).
    """
    k = qp.size
    sc = _Scales.of(qp) if scales is None else scales
    if _zero_is_exact(qp, sc):
        return np.zeros(k)
    tol = default_tolerance(k) if tol is None else tol
    a = qp.eq_coeffs
    if a is not None:
        if k == 1 and a[0] != 0.0:
            y = np.clip(np.array([qp.eq_rhs / a[0]]), qp.lb, qp.ub)
            return y  # check_qp has ensured feasibility; the clip removes rounding only
        return None
    Q = qp.Q
    d = Q.diagonal()
    if k > 1 and _count(Q) != _count(d):  # an off-diagonal entry is nonzero
        return None
    y = np.clip(np.zeros(k), qp.lb, qp.ub)
    pos = d > 0.0
    y[pos] = np.clip(-qp.q[pos] / d[pos], qp.lb[pos], qp.ub[pos])
    y[~pos & (qp.q > 0.0)] = qp.lb[~pos & (qp.q > 0.0)]
    y[~pos & (qp.q < 0.0)] = qp.ub[~pos & (qp.q < 0.0)]
    return y if _residual(qp, y, None, sc).total <= tol else None  # y is finite: clipped


#: A guess's polished answer must meet this fraction of the certification tolerance.  A library
#: answer is optimal to the library's own tolerances before polishing makes it exact; a guess
#: has no such evidence, and on degenerate QPs (many nearly equal gradients) an answer that just
#: meets the tolerance can be far from the optimal value.  On six reference runs' guessed QPs,
#: answers more than 1e-14 above the best objective found: 64 of 253 cold, 21 from the guess at
#: this tolerance, more than cold at the full one (docs/qp_solvers.md).
GUESS_TOLERANCE_FACTOR = 0.01

#: Work budget of the cold-start active-set attempt, in units of ``k³`` (``Σ f³`` over its
#: factorizations, see :func:`~ncvx_ref.qp.polish.active_set_solve`): a QP it cannot certify
#: within that goes to the library at the cost of a few dense factorizations of its size.
COLD_WORK_FACTOR = 20.0


def guess_active_set_iter(k: int) -> int:
    """Iteration cap of the active-set method started from a guess (``k`` variables).

    From a nearby guess it needs few iterations (at most 21 on the reference runs' QPs of up
    to 62 variables); where the stricter tolerance is below the QP's rounding floor it cannot
    certify and would wander to the full cap (eigen n = 200: 70-162 iterations per QP).
    """
    return 10 + k // 2


def _check_guess(qp: BoxQP) -> None:
    """A guess of the wrong shape is a caller's bug: say so (a non-finite one is merely useless:
    polishing does not certify it)."""
    shape = np.shape(qp.guess)
    if shape != (qp.size,):
        raise QPSolverError(f"QP `guess` must have shape ({qp.size},), got {shape}.")


class LibraryQPSolver:
    """Shared driver of the adapters (validation, closed forms, library call, polishing).

    Subclasses set ``library`` and implement ``_solve_raw(qp) -> (y, ok, status)`` where
    ``ok`` tells whether the library reported success and ``status`` is its status text.

    **Arguments:**

    - ``polish``: polish the library's answer to an exact one (default True).
    - ``tol``: KKT certification tolerance (default :func:`~ncvx_ref.qp.polish.default_tolerance`).
    - ``active_set_first_max_k``: QPs of ``8 < k <=`` this many variables are solved by the
      exact active-set method from a cold start first, and by the library only when that does
      not certify (default 0: never; with ``polish=True`` only).
    """

    library: str = "?"

    def __init__(self, *, polish: bool = True, tol: Optional[float] = None,
                 active_set_first_max_k: int = 0) -> None:
        self.polish = polish
        self.tol = tol
        self.active_set_first_max_k = int(active_set_first_max_k)
        self.name = self.library if polish else f"{self.library}-raw"
        self.last_polish = None  # PolishOutcome of the latest call (diagnostics), None if unused

    def __repr__(self) -> str:
        first = (f", active_set_first_max_k={self.active_set_first_max_k}"
                 if self.active_set_first_max_k else "")
        return f"{type(self).__name__}(polish={self.polish}, tol={self.tol}{first})"

    def solve(self, qp: BoxQP) -> np.ndarray:
        self.last_polish = None
        if small.is_small(qp):  # steps 1, 2 and polishing's common case on Python floats
            f = small.checked(qp)
            if qp.guess is not None:
                _check_guess(qp)
            return self._solve_small(f)
        check_qp(qp)
        if qp.guess is not None:
            _check_guess(qp)
        pinned = PinnedVariable.of(qp)  # an equality naming one variable fixes it
        if pinned is not None:
            return pinned.expand(self.solve(pinned.reduced))
        scales = _Scales.of(qp)  # shared by the closed forms and polishing
        y = closed_form(qp, self.tol, scales=scales)
        if y is not None:
            return y
        if self.polish and qp.guess is not None:
            tol = default_tolerance(qp.size) if self.tol is None else self.tol
            out = polish(qp, qp.guess, tol=GUESS_TOLERANCE_FACTOR * tol, scales=scales,
                         max_active_set_iter=guess_active_set_iter(qp.size))
            if out.certified:  # exact from the guess (rounds, else the active-set method)
                self.last_polish = out
                return out.y
        if self.polish and small.SMALL_MAX_K < qp.size <= self.active_set_first_max_k:
            k = qp.size
            try:
                exact = active_set_solve(qp, cold_start(qp), tol=self.tol, scales=scales,
                                         work_limit=COLD_WORK_FACTOR * float(k) ** 3)
            except np.linalg.LinAlgError:  # an eigendecomposition that did not converge
                exact = None  # the library's turn, as for any QP the attempt cannot certify
            if exact is not None and exact.certified:
                self.last_polish = PolishOutcome(exact.y, True, exact.residual, None, 0,
                                                 exact.iterations)
                return exact.y
        return self._library_answer(qp, scales)

    def _solve_small(self, f: small.SmallQP) -> np.ndarray:
        """:meth:`solve` of a checked QP of at most 8 variables (``small.checked``, its guess
        checked too): no guessed start and no cold-start active set here (a library call
        costs less at this size)."""
        pinned = small.pin(f)  # an equality naming one variable fixes it
        if pinned is not None:
            index, value, reduced = pinned
            return small.put_back(self._solve_small(reduced), index, value)
        y = small.closed_form(f, self.tol)
        if y is None:
            y = small.vertex(f, self.tol)  # the unique answer at a vertex of the box
        if y is not None:
            return y
        return self._library_answer(f.qp, f.sc, f)

    def _library_answer(self, qp: BoxQP, scales: _Scales,
                        f: Optional[small.SmallQP] = None) -> np.ndarray:
        """Steps 3 and 4: the library's answer, polished (its first round on floats when the
        QP's floats ``f`` are given)."""
        try:
            y, ok, status = self._solve_raw(qp)
        except QPSolverError:
            raise
        except Exception as exc:  # a library error is a QP failure (§13), with its reason
            raise QPSolverError(f"{self.library} raised {type(exc).__name__}: {exc}") from exc
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape != (qp.size,) or not _all_finite(y):
            raise QPSolverError(f"{self.library} returned no finite answer (status: {status}).")
        if not self.polish:
            if not ok:
                raise QPSolverError(f"{self.library} failed (status: {status}).")
            return y
        out = None if f is None else small.polish_first_round(f, y, self.tol)
        if out is None:
            out = polish(qp, y, tol=self.tol, scales=scales)
        self.last_polish = out
        if not ok and not out.certified:
            raise QPSolverError(f"{self.library} failed (status: {status}) and its answer could "
                                f"not be certified (KKT residual {out.residual.total:.3g}).")
        return out.y

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:  # pragma: no cover
        raise NotImplementedError


_DAQP_ITERATION_LIMIT = -4  # DAQP's exit flag when iter_limit is reached


class DAQPSolver(LibraryQPSolver):
    """DAQP: exact dual active-set method; singular ``Q`` through its proximal-point iterations.

    ``iter_limit`` (default 20,000; DAQP's own default is 10,000): on ill-conditioned singular
    QPs (condition ~1e12, rank 3 of 44 variables, late in the qp_ineq reference runs) the
    proximal iterations crawl, up to 250 ms at the former limit of 100,000.  At 20,000 the
    reference runs keep every termination code and conformance figure (3 qp_ineq runs change
    after their documented tie at iteration 1) and take 14% less time; 2,000 and 5,000 each
    lost a termination code (docs/qp_solvers.md).  A run stopped at the limit is polished like
    any other answer, unless ``limit_is_failure``: then reaching the limit raises
    :class:`QPSolverError`, so that a fallback solver takes the QP (the default solver:
    DAQP up to 1,000 iterations, then PIQP; see :func:`~ncvx_ref.qp.default.default_qp_solver`).
    """

    library = "daqp"

    def __init__(self, *, polish: bool = True, tol: Optional[float] = None,
                 eps_prox: float = 1e-6, iter_limit: int = 20000,
                 limit_is_failure: bool = False, active_set_first_max_k: int = 0) -> None:
        super().__init__(polish=polish, tol=tol, active_set_first_max_k=active_set_first_max_k)
        self.eps_prox = eps_prox
        self.iter_limit = int(iter_limit)
        self.limit_is_failure = bool(limit_is_failure)

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:
        daqp = _import("daqp", self.library)
        k = qp.size
        Q = np.ascontiguousarray(qp.Q)
        if qp.eq_coeffs is None:
            A = np.zeros((0, k))
            bu, bl = qp.ub.copy(), qp.lb.copy()
            sense = np.zeros(k, dtype=np.int32)
        else:
            A = np.ascontiguousarray(qp.eq_coeffs.reshape(1, k))
            rhs = np.array([qp.eq_rhs], dtype=np.float64)
            bu = np.concatenate((qp.ub, rhs))
            bl = np.concatenate((qp.lb, rhs))
            sense = np.zeros(k + 1, dtype=np.int32)
            sense[k] = 5
        y, _fval, flag, _info = daqp.solve(Q, qp.q.copy(), A, bu, bl, sense,
                                           eps_prox=self.eps_prox, primal_tol=1e-12,
                                           dual_tol=1e-12, iter_limit=self.iter_limit)
        if flag == _DAQP_ITERATION_LIMIT and self.limit_is_failure:
            raise QPSolverError(f"daqp reached its iteration limit ({self.iter_limit})")
        return np.asarray(y), flag in (1, 2), f"exitflag {flag}"


class ProxSuiteSolver(LibraryQPSolver):
    """ProxSuite ProxQP (dense backend, native box constraints): proximal augmented Lagrangian."""

    library = "proxsuite"

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:
        proxsuite = _import("proxsuite", self.library)
        dense = proxsuite.proxqp.dense
        k = qp.size
        n_eq = 0 if qp.eq_coeffs is None else 1
        solver = dense.QP(k, n_eq, 0, True)
        solver.settings.eps_abs = 1e-12
        solver.settings.eps_rel = 0.0
        solver.settings.max_iter = 10000
        solver.settings.verbose = False
        A = None if n_eq == 0 else qp.eq_coeffs.reshape(1, k)
        b = None if n_eq == 0 else np.array([qp.eq_rhs])
        solver.init(qp.Q, qp.q, A, b, None, None, None, qp.lb, qp.ub)
        solver.solve()
        status = solver.results.info.status
        ok = status == proxsuite.proxqp.PROXQP_SOLVED
        return np.array(solver.results.x), ok, str(status)


class PIQPSolver(LibraryQPSolver):
    """PIQP (dense backend): proximal interior-point method, robust to singular ``Q``.

    ``max_iter`` (default 60 polished, 500 raw): PIQP's iteration cap.  On the method's
    singular QPs PIQP rarely reaches its 1e-12 tolerances; with the former cap of 500 a third
    of the stationarity QPs with ``10 < k <= 100`` ran all 500 iterations (~40 ms each) before
    polishing made the answer exact.  Polishing needs only PIQP's active set, which 60 iterations identify: on the
    61 reference cases the termination codes, final values and every conformance figure are
    unchanged (rounding-level changes of stationarity values in 11 cases), the reference runs
    take 14% less time and the N = 100 SVM (200 constraints) 2.5x less (docs/qp_solvers.md).
    """

    library = "piqp"

    def __init__(self, *, polish: bool = True, tol: Optional[float] = None,
                 max_iter: Optional[int] = None, active_set_first_max_k: int = 0) -> None:
        super().__init__(polish=polish, tol=tol, active_set_first_max_k=active_set_first_max_k)
        self.max_iter = (60 if polish else 500) if max_iter is None else int(max_iter)

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:
        piqp = _import("piqp", self.library)
        k = qp.size
        solver = piqp.DenseSolver()
        solver.settings.eps_abs = 1e-12
        solver.settings.eps_rel = 1e-13
        solver.settings.max_iter = self.max_iter
        solver.settings.verbose = False
        P = np.asfortranarray(qp.Q)
        if qp.eq_coeffs is None:
            solver.setup(P, qp.q, None, None, None, None, None, qp.lb, qp.ub)
        else:
            A = np.asfortranarray(qp.eq_coeffs.reshape(1, k))
            solver.setup(P, qp.q, A, np.array([qp.eq_rhs]), None, None, None, qp.lb, qp.ub)
        status = solver.solve()
        return np.array(solver.result.x), status == piqp.PIQP_SOLVED, str(status)


def _triu_csc(Q: np.ndarray):
    import scipy.sparse as sp
    return sp.csc_matrix(np.triu(Q))


class ClarabelSolver(LibraryQPSolver):
    """Clarabel: homogeneous-embedding interior-point method (sparse interface)."""

    library = "clarabel"

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:
        clarabel = _import("clarabel", self.library)
        import scipy.sparse as sp
        k = qp.size
        eye = sp.identity(k, format="csc")
        blocks, b, cones = [], [], []
        if qp.eq_coeffs is not None:
            blocks.append(sp.csc_matrix(qp.eq_coeffs.reshape(1, k)))
            b.append([qp.eq_rhs])
            cones.append(clarabel.ZeroConeT(1))
        blocks += [eye, -eye]  # y <= ub and -y <= -lb
        b += [qp.ub, -qp.lb]
        cones.append(clarabel.NonnegativeConeT(2 * k))
        A = sp.vstack(blocks, format="csc")
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = settings.tol_gap_rel = 1e-12
        settings.tol_feas = 1e-12
        settings.tol_ktratio = 1e-10
        settings.max_iter = 200
        settings.max_threads = 1  # deterministic answers (threaded factorizations may differ)
        solver = clarabel.DefaultSolver(_triu_csc(qp.Q), qp.q, A, np.concatenate(b), cones, settings)
        sol = solver.solve()
        status = str(sol.status)
        ok = status in ("Solved", "AlmostSolved")
        return np.array(sol.x), ok, status


class OSQPSolver(LibraryQPSolver):
    """OSQP: ADMM with its own solution polishing; fixed ``rho`` updates for reproducibility.

    OSQP's default adapts ``rho`` on a schedule derived from measured setup time, which makes
    its answers vary from run to run; a fixed ``adaptive_rho_interval`` removes that.
    """

    library = "osqp"

    def _solve_raw(self, qp: BoxQP) -> tuple[np.ndarray, bool, str]:
        osqp = _import("osqp", self.library)
        import scipy.sparse as sp
        k = qp.size
        A = sp.identity(k, format="csc")
        lo, hi = qp.lb, qp.ub
        if qp.eq_coeffs is not None:
            A = sp.vstack([A, sp.csc_matrix(qp.eq_coeffs.reshape(1, k))], format="csc")
            lo = np.append(lo, qp.eq_rhs)
            hi = np.append(hi, qp.eq_rhs)
        solver = osqp.OSQP()
        solver.setup(_triu_csc(qp.Q), qp.q, A, lo, hi, verbose=False, eps_abs=1e-10,
                     eps_rel=1e-10, max_iter=20000, polishing=not self.polish,
                     adaptive_rho_interval=25)
        res = solver.solve(raise_error=False)
        status = str(res.info.status)
        ok = status.lower().startswith("solved")
        return np.array(res.x), ok, status


SOLVER_CLASSES: dict[str, type[LibraryQPSolver]] = {
    cls.library: cls for cls in (DAQPSolver, ProxSuiteSolver, ClarabelSolver, PIQPSolver, OSQPSolver)
}
