"""Subprocess entry: run benchmark jobs in a fresh, one-thread process and write JSON.

    python benchmarks/worker.py JOBS.json OUT.json

Each job names an instance (see ``problems.load_instance``), a solver (``ncvx_ref``,
``pygranso``, ``slsqp``, ``trust-constr``), GRANSO options and a repeat policy.  The same
file runs under the main interpreter (ncvx_ref, SciPy) and under the PyGRANSO venv.  Peak
memory is only meaningful for the first job of a process (``memory_isolated``); the driver
runs every job whose memory it reports in a process of its own.
"""
from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy/torch load their thread pools

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import timing  # noqa: E402
from benchmarks.problems import load_instance, violation  # noqa: E402


def _namespace(solver: str):
    """The namespace a solver is fed: torch for PyGRANSO, NumPy otherwise."""
    if solver == "pygranso":
        import torch
        torch.set_num_threads(1)
        import array_api_compat.torch as xp
        return xp, lambda a: torch.from_numpy(np.ascontiguousarray(a))
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        return np, np.asarray
    import array_api_compat.numpy as xp
    return xp, np.asarray


def _runner(solver: str):
    if solver == "ncvx_ref":
        from benchmarks.ncvx_runner import run
    elif solver == "pygranso":
        from benchmarks.peers.pygranso_runner import run
    elif solver == "slsqp":
        from benchmarks.peers.scipy_runner import run_slsqp as run
    elif solver == "trust-constr":
        from benchmarks.peers.scipy_runner import run_trust_constr as run
    else:
        raise ValueError(f"unknown solver {solver!r}; expected ncvx_ref, pygranso, slsqp or trust-constr.")
    return run


def _host(v):
    if v is None:
        return None
    if hasattr(v, "detach"):
        v = v.detach().cpu()
    return np.asarray(v, dtype=np.float64)


_WARMED_UP: set = set()  # solvers that have had their warm-up solve in this process


def _warm_up(run, xp, to_xp) -> float:
    """One untimed solve of a small constrained problem; returns its wall time (reported).

    One-time costs of a process are not costs per iteration: imports done inside a solver,
    ncvx_ref's Numba kernels loaded from their cache (about 0.4 s, then 0 for every later
    solve), PyGRANSO's first torch calls.  Without this they land in the first timed run, which
    for the cases timed once (the slow ones) is the only run.  Every solver gets the same
    warm-up: 3 variables, 12 linear inequalities, so its QPs have up to 12 (steering) and more
    (stationarity) variables, the sizes that reach ncvx_ref's compiled active-set method.
    """
    from benchmarks.problems import Instance
    rng = np.random.default_rng(0)
    A_np = rng.standard_normal((12, 3))
    b_np = np.abs(rng.standard_normal(12))
    A, b, c = to_xp(A_np), to_xp(b_np), to_xp(np.array([2.0, -1.0, 0.5]))

    def evaluate(x):
        r = x - c
        return (xp.sum(r * r), 2.0 * r, A @ x - b, to_xp(A_np.T.copy()), None, None)

    inst = Instance("warm-up", 3, 12, 0, np.zeros(3), True, evaluate)
    t = time.perf_counter()
    run(inst, timing.TimedFunction(evaluate), to_xp(np.zeros(3)), {"print_level": 0, "maxit": 30}, None)
    return time.perf_counter() - t


def run_job(job: dict, first_in_process: bool) -> dict:
    solver = job["solver"]
    xp, to_xp = _namespace(solver)
    run = _runner(solver)
    inst = load_instance(job, xp)
    x0 = to_xp(inst.x0.copy())
    inst.evaluate(x0)  # warm the evaluation (first-call costs are not the solver's)
    warm_up_s = 0.0
    if solver not in _WARMED_UP:  # once per solver and process
        warm_up_s = _warm_up(run, xp, to_xp)
        _WARMED_UP.add(solver)
    rss_before = timing.rss_mb()
    reps, budget = int(job.get("repeats", 3)), float(job.get("budget_s", 20.0))
    runs, peak = [], None
    spent = 0.0
    while len(runs) < reps and (not runs or spent < budget):
        fun = timing.TimedFunction(inst.evaluate)
        trace = timing.Trace() if job.get("trace") else None
        out = run(inst, fun, to_xp(inst.x0.copy()), dict(job.get("options", {})), trace)
        spent += out["wall"]
        if peak is None:
            peak = timing.peak_rss_mb()
        x_final = out.pop("x_final")
        out.update(user_s=fun.seconds, user_calls=fun.calls,
                   x_sha=hashlib.sha256(np.ascontiguousarray(x_final).tobytes()).hexdigest()[:16])
        if trace is not None:
            out["trace"] = trace.points
        runs.append((out, x_final))
    profile = _profile(run, inst, to_xp, job) if job.get("profile") else None
    walls = [r["wall"] for r, _ in runs]
    med = timing.median(walls)
    best_run, x_final = min(runs, key=lambda rx: abs(rx[0]["wall"] - med))
    ev = inst.evaluate(to_xp(x_final))
    iters = best_run["iters"]
    user = best_run["user_s"]
    return {
        "label": job["label"], "solver": solver, "group": job.get("group", ""),
        "n": inst.n, "n_ineq": inst.n_ineq, "n_eq": inst.n_eq,
        "iters": iters, "fn_evals": best_run["fn_evals"], "user_calls": best_run["user_calls"],
        "termination": best_run["termination"], "message": best_run["message"],
        "wall_s": med, "walls_s": walls, "repeats": len(runs),
        "ms_per_iter": 1e3 * med / max(iters, 1),
        "user_s": user, "overhead_s": med - user, "overhead_frac": (med - user) / med if med > 0 else 0.0,
        "f_final": float(_host(ev[0])), "viol_final": violation(_host(ev[2]), _host(ev[4])),
        "deterministic": len({r["x_sha"] for r, _ in runs}) == 1, "x_sha": best_run["x_sha"],
        "warm_up_s": warm_up_s,
        "peak_rss_mb": peak, "rss_before_mb": rss_before, "solver_mb": max(peak - rss_before, 0.0), "memory_isolated": first_in_process,
        "options": job.get("options", {}), "trace": runs[0][0].get("trace"), "profile": profile,
    }


def _profile(run, inst, to_xp, job, top: int = 30) -> str:
    """One extra (untimed) run under cProfile; the top entries by own time and by cumulative time."""
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    fun = timing.TimedFunction(inst.evaluate)
    prof.runcall(run, inst, fun, to_xp(inst.x0.copy()), dict(job.get("options", {})), None)
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main(argv) -> int:
    jobs_path, out_path = argv[1], argv[2]
    with open(jobs_path) as fh:
        jobs = json.load(fh)
    results = []
    for i, job in enumerate(jobs):
        t = time.perf_counter()
        try:
            res = run_job(job, first_in_process=(i == 0))
        except Exception as exc:  # a failed job is a reported result, not a crashed suite
            res = {"label": job["label"], "solver": job["solver"], "group": job.get("group", ""),
                   "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        res["process_s"] = time.perf_counter() - t
        results.append(res)
        with open(out_path, "w") as fh:  # rewritten after each job: a killed batch keeps its results
            json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
