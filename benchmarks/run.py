"""Benchmark suite driver: ncvx_ref against PyGRANSO 1.2.0 and SciPy on identical problems.

    python benchmarks/run.py --quick        # small sizes, a few minutes
    python benchmarks/run.py                # issue 4's sizes; PyGRANSO skipped at giant sizes
    python benchmarks/run.py --full         # also PyGRANSO at the giant sizes (long, many GB)
    python benchmarks/run.py --only svm --profile svm_N1000   # a subset, with a cProfile
    python benchmarks/run.py --rounds 3      # each case 3 times, solvers alternating

Every problem's data and x0 are drawn once here and written to an .npz that every solver
reads; every run happens in a fresh one-thread subprocess (PyGRANSO's in its own virtual
environment, made by ``setup_pygranso.sh``).  Results go to ``benchmarks/results/``
(git-ignored): ``results-<mode>.json``, ``summary-<mode>.md`` and ``benchmarks-<mode>.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import timing  # noqa: E402  (sets nothing; thread env goes to the subprocesses)

VENV_PYTHON = os.path.join(HERE, ".venv-pygranso", "bin", "python")
DEFAULT_CASES = os.path.join(ROOT, "..", "shared", "granso_reference", "cases")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (whole suite in a few minutes)")
    mode.add_argument("--full", action="store_true",
                      help="also run PyGRANSO at the giant sizes (L-BFGS 1e6, full BFGS 16000, split attack)")
    ap.add_argument("--only", default=None, help="regex: run only cases whose label matches")
    ap.add_argument("--solvers", default="ncvx_ref,pygranso,slsqp,trust-constr",
                    help="comma-separated subset of ncvx_ref,pygranso,slsqp,trust-constr")
    ap.add_argument("--no-pygranso", action="store_true", help="skip PyGRANSO (no venv needed)")
    ap.add_argument("--no-conformance", action="store_true", help="skip the reference-case rows")
    ap.add_argument("--repeats", type=int, default=None, help="override every case's repeat count")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every case's solvers this many times, alternating (ours, peer, ours, "
                         "peer, ...: the machine's slow phases then fall on both); each row is the "
                         "round with the median wall time (default 1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per worker process (default 600 quick, 3600 otherwise)")
    ap.add_argument("--max-solve-s", type=float, default=None,
                    help="maxclocktime of every ncvx_ref/PyGRANSO solve (default 20 quick, 600 default, "
                         "none in --full)")
    ap.add_argument("--cases-dir", default=DEFAULT_CASES, help="shared/granso_reference/cases")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    ap.add_argument("--profile", action="append", default=[],
                    help="label to profile (ncvx_ref under cProfile; repeatable)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


# ----------------------------------------------------------------------------- data and jobs
def make_data(case, out_dir: str) -> tuple:
    """Draw the case's data once (cached by content key) and return (npz path, reference f)."""
    import numpy as np
    from benchmarks.problems import PROBLEMS
    prob = PROBLEMS[case.problem]
    key = hashlib.sha256(json.dumps([case.problem, case.params, case.seed], sort_keys=True)
                         .encode()).hexdigest()[:12]
    path = os.path.join(out_dir, "data", f"{case.label}-{key}.npz")
    ref_path = path + ".ref.json"
    if os.path.exists(path) and os.path.exists(ref_path):
        with open(ref_path) as fh:
            return path, json.load(fh)["f_ref"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = prob.make(case.params, np.random.default_rng(case.seed))
    np.savez(path, **data)
    f_ref = prob.reference_f(data) if prob.reference_f else None
    with open(ref_path, "w") as fh:
        json.dump({"f_ref": f_ref}, fh)
    return path, f_ref


def case_reference(case, cases_dir: str):
    from benchmarks.problems import case_file
    with open(case_file(case.problem, cases_dir)) as fh:
        opt = json.load(fh).get("known_optimum")
    return None if not opt else opt.get("f")


def job_for(case, solver: str, data_path, cases_dir, repeats, profile: bool) -> dict:
    opts = dict(case.options)
    if solver in case.peer_maxit:
        opts["maxit"] = case.peer_maxit[solver]
    job = {"label": case.label, "group": case.group, "kind": case.kind, "solver": solver,
           "options": opts, "repeats": repeats if repeats is not None else case.repeats,
           "trace": case.trace, "profile": profile}
    if case.kind == "bench":
        job.update(problem=case.problem, data=data_path)
    else:
        job.update(case=case.problem, cases_dir=os.path.abspath(cases_dir))
    return job


def run_worker(jobs, python: str, out_dir: str, tag: str, timeout: float) -> list:
    """Run ``jobs`` in one fresh one-thread subprocess; a crash or timeout becomes error rows."""
    work = os.path.join(out_dir, "work")
    os.makedirs(work, exist_ok=True)
    jobs_path, res_path = os.path.join(work, f"{tag}.jobs.json"), os.path.join(work, f"{tag}.out.json")
    log_path = os.path.join(work, f"{tag}.log")
    with open(jobs_path, "w") as fh:
        json.dump(jobs, fh)
    if os.path.exists(res_path):
        os.remove(res_path)
    err = None
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run([python, os.path.join(HERE, "worker.py"), jobs_path, res_path],
                                cwd=ROOT, env=timing.one_thread_env(), stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
            if rc != 0:
                err = f"worker exited with status {rc} (killed for memory if -9); log: {log_path}"
        except subprocess.TimeoutExpired:
            err = f"timed out after {timeout:.0f} s (raise --timeout); log: {log_path}"
    done = []
    if os.path.exists(res_path):
        with open(res_path) as fh:
            done = json.load(fh)
    for job in jobs[len(done):]:
        done.append({"label": job["label"], "solver": job["solver"], "group": job["group"],
                     "error": err or "no result written"})
    return done


def median_round(rows: list) -> dict:
    """One row for a case and solver run in several rounds: the round with the median wall time.

    The rounds of one case alternate between the solvers, so the ratio of two such rows
    compares runs made in the same stretches of time.  Memory is the largest peak of the
    rounds; ``deterministic`` requires every round to be deterministic and to end at the same
    point.  ``round_walls_s`` and ``round_ms_per_iter`` keep each round's figures (the report
    pairs them round by round).  A case that failed in every round keeps its first error row.
    """
    ok = [r for r in rows if "error" not in r]
    if len(rows) == 1 or not ok:
        return rows[0]
    ok_sorted = sorted(ok, key=lambda r: r["wall_s"])
    out = dict(ok_sorted[(len(ok_sorted) - 1) // 2])
    out["round_walls_s"] = [r["wall_s"] for r in ok]
    out["round_ms_per_iter"] = [r["ms_per_iter"] for r in ok]
    out["rounds"] = len(ok)
    for key in ("peak_rss_mb", "solver_mb"):
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = max(values)
    out["deterministic"] = (all(r["deterministic"] for r in ok)
                            and len({r["x_sha"] for r in ok}) == 1)
    return out


def pygranso_ready(no_pygranso: bool) -> tuple:
    if no_pygranso:
        return False, "skipped (--no-pygranso)"
    if not os.path.exists(VENV_PYTHON):
        print("PyGRANSO venv missing; creating it with benchmarks/setup_pygranso.sh ...", flush=True)
        rc = subprocess.run(["bash", os.path.join(HERE, "setup_pygranso.sh")]).returncode
        if rc != 0:
            return False, f"setup_pygranso.sh failed (status {rc}); PyGRANSO figures are from the issue"
    try:
        v = subprocess.run([VENV_PYTHON, "-c", "import importlib.metadata as m; print(m.version('pygranso'))"],
                           capture_output=True, text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"PyGRANSO venv unusable: {exc}"
    return bool(v), v or "PyGRANSO venv unusable (import failed); re-run setup_pygranso.sh"


def environment(pg_version: str) -> dict:
    import numpy
    import scipy
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        sha = ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "ncvx_ref_commit": sha, "pygranso": pg_version, "cpu": cpu, "cores": os.cpu_count(),
            "threads": 1, "load_avg_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "default"
    from benchmarks import report, suite
    cases = suite.build(mode, None if args.no_conformance else args.cases_dir, args.max_solve_s)
    if args.timeout is None:
        args.timeout = 600.0 if mode == "quick" else 3600.0
    if args.only:
        cases = [c for c in cases if re.search(args.only, c.label)]
    wanted = set(args.solvers.split(","))
    have_pg, pg_version = pygranso_ready(args.no_pygranso or "pygranso" not in wanted)
    if not have_pg:
        wanted.discard("pygranso")
        print(f"PyGRANSO: {pg_version}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    refs, isolated, batched = {}, [], {}
    for case in cases:
        if case.kind == "bench":
            data_path, refs[case.label] = make_data(case, args.out)
        else:
            data_path, refs[case.label] = None, case_reference(case, args.cases_dir)
        for solver in case.solvers:
            if solver not in wanted:
                continue
            job = job_for(case, solver, data_path, args.cases_dir, args.repeats,
                          profile=(solver == "ncvx_ref" and case.label in args.profile))
            (isolated.append(job) if case.isolated else batched.setdefault(solver, []).append(job))

    rounds: dict = {}
    total = len(isolated) * args.rounds
    for r in range(args.rounds):
        for i, job in enumerate(isolated):
            py = VENV_PYTHON if job["solver"] == "pygranso" else sys.executable
            tag = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job['label']}-{job['solver']}")
            res = run_worker([job], py, args.out, tag, args.timeout)[0]
            rounds.setdefault((job["label"], job["solver"]), []).append(res)
            print(report.progress_line(res, r * len(isolated) + i + 1, total), flush=True)
    rows = [median_round(rs) for rs in rounds.values()]
    for solver, jobs in batched.items():
        py = VENV_PYTHON if solver == "pygranso" else sys.executable
        res = run_worker(jobs, py, args.out, f"conformance-{solver}", args.timeout)
        rows += res
        ok = sum("error" not in r for r in res)
        print(f"conformance cases, {solver}: {ok}/{len(res)} ran", flush=True)

    doc = report.build(rows, cases, refs, mode, environment(pg_version), have_pg)
    doc["meta"]["suite_wall_s"] = time.time() - t_start
    doc["meta"]["rounds"] = args.rounds
    json_path = os.path.join(args.out, f"results-{mode}.json")
    with open(json_path, "w") as fh:
        json.dump(doc, fh, indent=1, default=str)
    md = report.markdown(doc)
    with open(os.path.join(args.out, f"summary-{mode}.md"), "w") as fh:
        fh.write(md)
    print(md)
    if not args.no_plot:
        from benchmarks import plot
        png = plot.plot(doc, os.path.join(args.out, f"benchmarks-{mode}.png"))
        print(f"plot: {png}")
    print(f"json: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
