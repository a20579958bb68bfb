"""Issue 4's SVM at scale: the lifted QP path against the dense one, and against SciPy SLSQP.

    OPENBLAS_NUM_THREADS=1 python3 benchmarks/svm_scale.py [--N 1000] [--d 20] [--seed 5]
        [--dense-iters 3] [--lifted-iters 10] [--max-seconds 600] [--repeats 1] [--json OUT]

The problem is ``benchmarks/problems.py``'s soft-margin SVM (the suite's ``svm_N1000``: N
samples, d features, n = d + 1 + N variables, 2N linear inequalities, x0 = 0, seed 5) and its
optimum ``f_ref`` (Clarabel, ~1e-11).  Measured:

1. **time per iteration** of ``ncvx_ref.solve`` (full-memory BFGS, default options) with the
   default QP solver (structured QPs, lifted path: ``docs/large_qps.md``) and with
   ``qp_solver=PIQPSolver()`` (every QP dense, ``k x k``), as the median of the per-iteration
   wall times seen by the callback over the first iterations (iteration 0 excluded);
2. **time to target**: wall time until an iterate is within ``1e-6`` of ``f_ref`` (relative)
   with violation ``<= 1e-6`` (the suite's definition), for ncvx_ref (lifted, run until the
   target, ``maxclocktime = --max-seconds``) and for SciPy SLSQP on the same primal problem.

Everything runs in this process, one BLAS thread (set ``OPENBLAS_NUM_THREADS=1`` before
starting: NumPy reads it at import).  Medians over ``--repeats`` runs are reported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGET_RTOL = 1e-6
TARGET_VIOL = 1e-6


def _problem(N: int, d: int, seed: int):
    from benchmarks.problems import SVM
    data = SVM.make({"N": N, "d": d}, np.random.default_rng(seed))
    prep = SVM.prepare(data, np)
    return data, (lambda x: SVM.evaluate(prep, x)), SVM.reference_f(data)


def _violation(ci) -> float:
    return max(0.0, float(np.max(ci)))


def run_ncvx(fun, x0, qp_solver, maxit: int, f_ref, max_seconds: float) -> dict:
    """One ``ncvx_ref.solve`` run; per-iteration times and the time to target from the callback."""
    import ncvx_ref
    stamps, hit = [], [None]
    t0 = time.perf_counter()

    def callback(state) -> bool:
        now = time.perf_counter()
        stamps.append(now)
        p = state.point
        if (hit[0] is None and f_ref is not None and p.tv <= TARGET_VIOL
                and abs(p.f - f_ref) <= TARGET_RTOL * abs(f_ref)):
            hit[0] = now - t0
        return False

    res = ncvx_ref.solve(fun, x0, qp_solver=qp_solver, maxit=maxit, print_level=0,
                         maxclocktime=max_seconds, callback=callback)
    wall = time.perf_counter() - t0
    per_iter = list(np.diff(stamps)) if len(stamps) > 1 else []
    return {"iters": res.iters, "wall_s": wall, "per_iter_s": per_iter,
            "median_iter_s": statistics.median(per_iter) if per_iter else math.nan,
            "f_final": float(res.final.f), "termination": int(res.termination_code),
            "time_to_target_s": hit[0], "qp_failure_rate": res.quadprog_failure_rate,
            "dense_fallbacks": getattr(qp_solver, "dense_fallbacks", None)}


def run_slsqp(fun, x0, f_ref, maxit: int = 1000) -> dict:
    """SciPy SLSQP on the primal (inequalities as ``-ci >= 0``), timing each iterate."""
    from scipy import optimize
    cache = {}

    def ev(x):
        key = x.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = fun(x)
        return cache[key]

    hit = [None]
    t0 = time.perf_counter()

    def callback(xk):
        f, _, ci, _, _, _ = fun(np.asarray(xk))
        if (hit[0] is None and f_ref is not None and _violation(ci) <= TARGET_VIOL
                and abs(float(f) - f_ref) <= TARGET_RTOL * abs(f_ref)):
            hit[0] = time.perf_counter() - t0

    cons = [{"type": "ineq", "fun": lambda x: -np.asarray(ev(x)[2]),
             "jac": lambda x: -np.asarray(ev(x)[3]).T}]
    res = optimize.minimize(lambda x: float(ev(x)[0]), x0, jac=lambda x: np.asarray(ev(x)[1]),
                            method="SLSQP", constraints=cons, callback=callback,
                            options={"maxiter": maxit, "ftol": 1e-10})
    wall = time.perf_counter() - t0
    return {"iters": int(res.nit), "wall_s": wall, "f_final": float(res.fun),
            "time_to_target_s": hit[0], "message": str(res.message)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--dense-iters", type=int, default=3, help="iterations timed on the dense path")
    ap.add_argument("--lifted-iters", type=int, default=10, help="iterations timed on the lifted path")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="time limit of the run to target")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-target", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("warning: OPENBLAS_NUM_THREADS is not 1; timings are not comparable", file=sys.stderr)
    from ncvx_ref.qp.default import default_qp_solver
    from ncvx_ref.qp.solvers import PIQPSolver

    data, fun, f_ref = _problem(args.N, args.d, args.seed)
    x0 = np.asarray(data["x0"], dtype=np.float64)
    n = x0.shape[0]
    out = {"N": args.N, "d": args.d, "n": n, "m_ineq": 2 * args.N, "seed": args.seed,
           "f_ref": f_ref, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "runs": {}}
    print(f"SVM N={args.N} d={args.d}: n={n}, {2 * args.N} inequalities, f_ref={f_ref}", flush=True)

    def med(rows, key):
        vals = [r[key] for r in rows if r[key] is not None and not math.isnan(r[key])]
        return statistics.median(vals) if vals else None

    plan = [("lifted", default_qp_solver, args.lifted_iters, 1e9)]
    if not args.skip_dense:
        plan.append(("dense", PIQPSolver, args.dense_iters, 1e9))
    for name, make, iters, limit in plan:
        rows = [run_ncvx(fun, x0, make(), iters, None, limit) for _ in range(args.repeats)]
        out["runs"][f"{name}_per_iter"] = {"median_iter_s": med(rows, "median_iter_s"),
                                           "rows": rows}
        print(f"{name:7s} path: median {med(rows, 'median_iter_s'):.3f} s/iteration over "
              f"{rows[0]['iters']} iterations (per iteration: "
              f"{', '.join(f'{t:.2f}' for t in rows[0]['per_iter_s'])})", flush=True)
    if not args.skip_target:
        rows = [run_ncvx(fun, x0, default_qp_solver(), 100000, f_ref, args.max_seconds)
                for _ in range(args.repeats)]
        out["runs"]["lifted_to_target"] = {"median_time_to_target_s": med(rows, "time_to_target_s"),
                                           "rows": rows}
        r = rows[0]
        print(f"ncvx_ref (lifted) to 1e-6: {med(rows, 'time_to_target_s')} s; run: {r['iters']} "
              f"iterations, {r['wall_s']:.1f} s, f={r['f_final']:.10g}, code {r['termination']}, "
              f"median {r['median_iter_s']:.3f} s/iteration, mean "
              f"{statistics.fmean(r['per_iter_s']) if r['per_iter_s'] else math.nan:.3f}, "
              f"dense fallbacks {r['dense_fallbacks']}", flush=True)
        rows = [run_slsqp(fun, x0, f_ref) for _ in range(args.repeats)]
        out["runs"]["slsqp"] = {"median_time_to_target_s": med(rows, "time_to_target_s"),
                                "median_wall_s": med(rows, "wall_s"), "rows": rows}
        r = rows[0]
        print(f"SLSQP to 1e-6: {med(rows, 'time_to_target_s')} s; run: {r['iters']} iterations, "
              f"{med(rows, 'wall_s'):.1f} s, f={r['f_final']:.10g} ({r['message']})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return out


if __name__ == "__main__":
    main()
