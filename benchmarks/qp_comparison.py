"""Compare the QP solver adapters on the QPs GRANSO's method builds.

Corpora (``--corpus``):

- ``reference``: QPs built as ALGORITHM.md §7 and §10.3 build them, from the iterates stored
  in the GRANSO reference cases (``../shared/granso_reference``): at each stored iterate the
  steering QP (``M = I`` and a random SPD ``M`` with condition 1e4, ``ν = μ_k`` and ``ν = 0``)
  and the stationarity QP over the iterates the §10.2 cache would hold (path length within
  ``evaldist``, at most ``ngrad``; late in a run these are nearly identical gradients: the
  degenerate case).
- ``svm``: the issue-4 scale, a soft-margin SVM with 1000 samples (2000 constraints,
  ``n = 1006``): steering QPs ``k = 2000`` and stationarity QPs with 1-2 samples
  (``k = 2001, 4002``).
- a path to an ``.npz`` written by :class:`ncvx_ref.qp.RecordingQPSolver` (see
  ``benchmarks/collect_qps.py``): the real QPs of solver runs.

For each QP and solver: wall time of one ``solve`` call, the scaled KKT residual
(:func:`ncvx_ref.qp.polish.kkt_residual`), failure (exception), and the objective gap to the
best answer any solver found (among answers feasible to the certification tolerance), relative to the objective's scale ``S·W`` (see
:func:`_objective_scale`; the JSON rows also hold ``gap_f``, relative to ``max(1, |f_best|)``).
Prints one Markdown table per (QP kind, size class).

Usage::

    python3 benchmarks/qp_comparison.py --corpus reference [--max-per-case 20]
    python3 benchmarks/qp_comparison.py --corpus svm --solvers daqp piqp proxsuite
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # the ncvx_ref of this checkout, not an installed one
    sys.path.insert(0, ROOT)

from ncvx_ref.qp.interface import BoxQP  # noqa: E402
from ncvx_ref.qp.polish import kkt_residual, default_tolerance  # noqa: E402
from ncvx_ref.qp.default import (available_qp_solvers, default_qp_solver, get_qp_solver,  # noqa: E402
                                 load_qp_corpus)

#: the candidate name of ncvx_ref's default solver (the cold-start active set first for
#: 8 < k <= 200, then DAQP / PIQP with polishing), next to the library adapters
DEFAULT = "default"

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "granso_reference" / "cases"


# -- QP builders (ALGORITHM.md §7.1 and §10.3) ----------------------------------------------------
def steering_qp(M: np.ndarray, g: np.ndarray, JE, JI, cE, cI, nu: float) -> BoxQP:
    """The steering dual of §7.1: ``C = [J_E, J_I]``, ``Q = CᵀMC``, ``q = Cᵀ(ν M g) - c``."""
    n = g.shape[0]
    JE = np.zeros((n, 0)) if JE is None else JE
    JI = np.zeros((n, 0)) if JI is None else JI
    cE = np.zeros(0) if cE is None else cE
    cI = np.zeros(0) if cI is None else cI
    C = np.hstack([JE, JI])
    MC = M @ C
    Q = C.T @ MC
    Q = (Q + Q.T) / 2
    q = C.T @ (nu * (M @ g)) - np.concatenate([cE, cI])
    mE, mI = JE.shape[1], JI.shape[1]
    lb = np.concatenate([-np.ones(mE), np.zeros(mI)])
    return BoxQP(Q, q, lb, np.ones(mE + mI), kind="steering")


def stationarity_qp(M: np.ndarray, samples: list, f: float, cE, cI, mu: float) -> BoxQP:
    """The termination QP of §10.3 over ``samples`` = [(g, JE, JI), ...]."""
    n = samples[0][0].shape[0]
    l = len(samples)
    JEs = [s[1] if s[1] is not None else np.zeros((n, 0)) for s in samples]
    JIs = [s[2] if s[2] is not None else np.zeros((n, 0)) for s in samples]
    A = np.hstack(JEs + [np.column_stack([s[0] for s in samples])] + JIs)
    Q = A.T @ (M @ A)
    Q = (Q + Q.T) / 2
    cE = np.zeros(0) if cE is None else cE
    cI = np.zeros(0) if cI is None else cI
    q = -np.concatenate([np.tile(cE, l), np.full(l, f), np.tile(cI, l)])
    kE, kI = cE.size * l, cI.size * l
    lb = np.concatenate([-np.ones(kE), np.zeros(l), np.zeros(kI)])
    ub = np.concatenate([np.ones(kE), np.full(l, mu), np.ones(kI)])
    a = np.concatenate([np.zeros(kE), np.ones(l), np.zeros(kI)])
    return BoxQP(Q, q, lb, ub, a, mu, kind="stationarity")


def _np(v):
    return None if v is None else np.asarray(v, dtype=np.float64)


def _spd(n: int, cond: float, rng: np.random.Generator) -> np.ndarray:
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (U * np.logspace(0, np.log10(cond), n)) @ U.T


def _cached_window(xs: list, i: int, ngrad: int, evaldist: float) -> list[int]:
    """Iterates the §10.2 cache would hold at iterate ``i`` (path length <= evaldist)."""
    window, path = [i], 0.0
    for j in range(i - 1, max(-1, i - ngrad), -1):
        path += float(np.linalg.norm(xs[j + 1] - xs[j]))
        if path > evaldist:
            break
        window.insert(0, j)
    return window


def reference_qps(max_per_case: int, cases: Iterable[str] = ()) -> Iterator[tuple[str, BoxQP]]:
    """QPs from the reference cases' stored iterates (see the module docstring)."""
    from ncvx_ref import problems  # the test-problem families, rebuilt from the stored data

    paths = sorted(REFERENCE.glob("*.json"))
    if cases:
        paths = [p for p in paths if p.stem in set(cases)]
    rng = np.random.default_rng(0)
    for path in paths:
        case = json.loads(path.read_text())
        if case["family"] == "spectral_radius" and case["n"] > 50:
            continue  # n = 200 eigenvalue problem: slow to evaluate, one constraint only
        prob = problems.from_case(case)
        xs = [np.asarray(x, dtype=np.float64) for x in case["history"]["x"]]
        mus = case["history"]["mu"]
        ngrad = int(case["resolved_options"]["ngrad"])
        n = prob.n
        Hs = {"I": np.eye(n), "spd1e4": _spd(n, 1e4, rng)}
        picks = np.unique(np.linspace(0, len(xs) - 1, min(max_per_case, len(xs))).astype(int))
        evals = {}

        def ev(i):
            if i not in evals:
                e = prob.evaluate(xs[i])
                evals[i] = (float(e.f), _np(e.f_grad), _np(e.ce_grad), _np(e.ci_grad),
                            _np(e.ce), _np(e.ci))
            return evals[i]

        for i in picks:
            f, g, JE, JI, cE, cI = ev(i)
            mu = float(mus[i])
            for hname, M in Hs.items():
                if prob.constrained:
                    for nu in (mu, 0.0):
                        yield case["id"], steering_qp(M, g, JE, JI, cE, cI, nu)
                window = _cached_window(xs, i, ngrad, float(case["resolved_options"]["evaldist"]))
                samples = [(ev(j)[1], ev(j)[2], ev(j)[3]) for j in window]
                yield case["id"], stationarity_qp(M, samples, f, cE, cI, mu)


def svm_qps() -> Iterator[tuple[str, BoxQP]]:
    """Issue-4 scale: SVM with N = 1000 samples, d = 5 (2000 constraints)."""
    from ncvx_ref.problems import svm_soft_margin

    prob = svm_soft_margin.random(1000, 5, seed=1)
    rng = np.random.default_rng(1)
    n = prob.n
    x = np.asarray(prob.x0, dtype=np.float64) + 0.1 * rng.standard_normal(n)
    e = prob.evaluate(x)
    g, JI, cI = _np(e.f_grad), _np(e.ci_grad), _np(e.ci)
    for nu in (1.0, 0.0):
        yield "svm_N1000", steering_qp(np.eye(n), g, None, JI, None, cI, nu)
    x2 = x + 1e-6 * rng.standard_normal(n)
    e2 = prob.evaluate(x2)
    s1 = (g, None, JI)
    s2 = (_np(e2.f_grad), None, _np(e2.ci_grad))
    yield "svm_N1000", stationarity_qp(np.eye(n), [s1], float(e.f), None, cI, 1.0)
    yield "svm_N1000", stationarity_qp(np.eye(n), [s1, s2], float(e.f), None, cI, 1.0)


def corpus_qps(path: str) -> Iterator[tuple[str, BoxQP]]:
    """The QPs of a recorded corpus; sources are the case ids of ``collect_qps.py``'s JSON."""
    meta = Path(path).with_suffix(".json")
    sources = None
    if meta.is_file():
        rows = json.loads(meta.read_text()).get("qps")
        sources = [r["case"] for r in rows] if rows else None
    for i, rec in enumerate(load_qp_corpus(path)):
        yield (sources[i] if sources and i < len(sources) else Path(path).stem), rec.qp


# -- measurement ----------------------------------------------------------------------------------
def size_class(k: int) -> str:
    for hi, label in ((1, "k=1"), (10, "k<=10"), (100, "k<=100"), (1000, "k<=1000")):
        if k <= hi:
            return label
    return "k>1000"


def _objective(qp: BoxQP, y: np.ndarray) -> float:
    return float(0.5 * y @ qp.Q @ y + qp.q @ y)


def _objective_scale(qp: BoxQP) -> float:
    """``S·W``: the size of the objective's terms (``W`` bound scale, ``S = max(|q|, |Q|·W)``).

    Late BFGS matrices make ``|Q|`` reach 1e16: there objective values of two exact answers
    differ by ~1e3 (rounding of 1e16-sized terms), which relative to ``|f|`` looks like a
    wrong answer but relative to ``S·W`` is 1e-13, the same scale the KKT residual uses.
    """
    w = max(float(np.abs(qp.lb).max()), float(np.abs(qp.ub).max())) or 1.0
    s = max(float(np.abs(qp.q).max()), float(np.abs(qp.Q).max()) * w) or 1.0
    return s * w


def _warm_up(solvers) -> None:
    """Solve one small QP with each solver, untimed: one-time costs (library imports, ncvx_ref's
    Numba kernel loading, about 0.4 s) are not the first QP's."""
    rng = np.random.default_rng(0)
    B = rng.standard_normal((4, 12))
    qp = BoxQP(B.T @ B, rng.standard_normal(12), np.zeros(12), np.ones(12),
               eq_coeffs=np.ones(12), eq_rhs=1.0, kind="stationarity")
    for solver in solvers:
        try:
            solver.solve(qp)
        except Exception:  # noqa: BLE001 - a solver that fails here is measured (and fails) later
            pass


def run(qps: Iterable[tuple[str, BoxQP]], solvers: list[str], repeats: int = 1,
        progress: int = 0) -> list[dict]:
    """Solve every QP with every solver; one row per (QP, solver).  ``progress``: report every
    that many QPs on stderr (0: silent)."""
    instances = {name: (default_qp_solver() if name == DEFAULT else get_qp_solver(name))
                 for name in solvers}
    _warm_up(instances.values())
    rows = []
    spent = defaultdict(float)
    t_start = time.perf_counter()
    for n_done, (source, qp) in enumerate(qps, 1):
        if progress and n_done % progress == 0:
            top = ", ".join(f"{n} {t:.0f}s" for n, t in sorted(spent.items(), key=lambda x: -x[1]))
            print(f"[{n_done} QPs, {time.perf_counter() - t_start:.0f}s: {top}]", file=sys.stderr,
                  flush=True)
        answers = {}
        for name, solver in instances.items():
            times = []
            y, err = None, None
            for _ in range(repeats):
                t0 = time.perf_counter()
                try:
                    y = solver.solve(qp)
                except Exception as exc:  # a failure is a measurement here
                    err = f"{type(exc).__name__}: {exc}"
                times.append(time.perf_counter() - t0)
            spent[name] += sum(times)
            outcome = getattr(solver, "last_polish", None)
            fallback = bool(outcome is not None and getattr(outcome, "active_set_iterations", 0))
            answers[name] = (y, err, float(np.median(times)), fallback)
        feasible = [_objective(qp, y) for y, err, _, _ in answers.values()
                    if y is not None and kkt_residual(qp, y).primal <= default_tolerance(qp.size)]
        best = min(feasible) if feasible else np.nan
        for name, (y, err, t, fallback) in answers.items():
            res = kkt_residual(qp, y).total if y is not None else np.inf
            diff = _objective(qp, y) - best if y is not None else np.inf
            gap = diff / _objective_scale(qp)
            gap_f = diff / max(1.0, abs(best))
            rows.append(dict(source=source, kind=qp.kind, k=qp.size, solver=name, time=t,
                             kkt=res, gap=gap, gap_f=gap_f, failed=err is not None, error=err,
                             exact=bool(y is not None and res <= default_tolerance(qp.size)),
                             fallback=fallback))
    return rows


def _table(rs: list[dict]) -> list[str]:
    out = ["| solver | failed | not certified (KKT > tol) | median KKT | max KKT | "
           "max rel. gap | median time [ms] | max time [ms] | fallback runs |",
           "|---|---|---|---|---|---|---|---|---|"]
    by_solver = defaultdict(list)
    for r in rs:
        by_solver[r["solver"]].append(r)
    for name, srs in by_solver.items():
        ok = [r for r in srs if not r["failed"]]
        kkts = np.array([r["kkt"] for r in ok]) if ok else np.array([np.inf])
        gaps = np.array([r["gap"] for r in ok]) if ok else np.array([np.inf])
        times = np.array([r["time"] for r in srs]) * 1e3
        fallback = sum(bool(r.get("fallback")) for r in srs)
        out.append(f"| {name} | {sum(r['failed'] for r in srs)} | "
                   f"{sum(not r['exact'] for r in ok)} | {np.median(kkts):.1e} | "
                   f"{np.max(kkts):.1e} | {np.max(gaps):.1e} | {np.median(times):.2f} | "
                   f"{np.max(times):.1f} | {fallback if not name.endswith('-raw') else '-'} |")
    return out


def _count(rs: list[dict]) -> int:
    return len(rs) // max(1, len({r["solver"] for r in rs}))


def summarize(rows: list[dict]) -> str:
    """One Markdown table per (QP kind, size band), then one over all QPs."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["kind"], size_class(r["k"]))].append(r)
    out = []
    order = {"k=1": 0, "k<=10": 1, "k<=100": 2, "k<=1000": 3, "k>1000": 4}
    for (kind, sc) in sorted(groups, key=lambda g: (g[0], order[g[1]])):
        rs = groups[(kind, sc)]
        out.append(f"\n**{kind}, {sc}** ({_count(rs)} QPs)\n")
        out += _table(rs)
    out.append(f"\n**all QPs** ({_count(rows)} QPs)\n")
    out += _table(rows)
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="reference",
                    help="'reference', 'svm', or a path to a RecordingQPSolver .npz")
    ap.add_argument("--solvers", nargs="*",
                    default=[DEFAULT] + available_qp_solvers()
                    + [n + "-raw" for n in available_qp_solvers()])
    ap.add_argument("--max-per-case", type=int, default=15)
    ap.add_argument("--cases", nargs="*", default=())
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--k-range", type=int, nargs=2, metavar=("LO", "HI"), default=None,
                    help="only QPs with LO <= k <= HI")
    ap.add_argument("--every", type=int, default=1, help="only every N-th QP of the corpus")
    ap.add_argument("--progress", type=int, default=0, help="report every N QPs on stderr")
    ap.add_argument("--json", help="also write the per-QP rows to this JSON file")
    args = ap.parse_args(argv)
    if args.corpus == "reference":
        qps = reference_qps(args.max_per_case, args.cases)
    elif args.corpus == "svm":
        qps = svm_qps()
    else:
        qps = corpus_qps(args.corpus)
    if args.k_range:
        lo, hi = args.k_range
        qps = ((src, qp) for src, qp in qps if lo <= qp.size <= hi)
    if args.every > 1:
        qps = (item for i, item in enumerate(qps) if i % args.every == 0)
    rows = run(qps, args.solvers, args.repeats, args.progress)
    print(summarize(rows))
    fails = [r for r in rows if r["failed"]]
    for r in fails[:20]:
        print(f"- failure: {r['solver']} on {r['source']} {r['kind']} k={r['k']}: {r['error'][:160]}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, default=float))


if __name__ == "__main__":
    main()
