"""Checks of the benchmark suite itself: gradients, one definition in two namespaces, reports.

Run with ``python3 -m pytest benchmarks/test_benchmarks.py -q`` (``tests/`` is the package's
test path; these guard the figures the suite publishes).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import report, suite  # noqa: E402
from benchmarks.problems import PROBLEMS, Instance, violation  # noqa: E402

SMALL = {"nsrosen": {}, "eigen": {"n": 12}, "l1_two_ineq": {"n": 9}, "svm": {"N": 6, "d": 3},
         "attack": {"d_in": 16, "hidden": 7, "split_box": False}}
CASES = os.path.join(ROOT, "..", "shared", "granso_reference", "cases")


def _prep(name, params, xp=np, seed=1):
    prob = PROBLEMS[name]
    data = prob.make(params, np.random.default_rng(seed))
    return prob, data, prob.prepare(data, xp)


def _fd_check(fun, x, k, tol):
    """Central differences of component ``k`` of ``fun`` against its analytic gradient."""
    h = 1e-6
    val, grad = fun(x)
    for i in range(x.shape[0]):
        e = np.zeros_like(x)
        e[i] = h
        fd = (fun(x + e)[0] - fun(x - e)[0]) / (2 * h)
        assert np.allclose(fd, grad[i], rtol=tol, atol=tol), (k, i, fd, grad[i])


@pytest.mark.parametrize("name,split", [(k, False) for k in sorted(SMALL)] + [("attack", True)])
def test_gradients_match_finite_differences(name, split):
    """Every value/gradient pair of every problem agrees with central differences at a smooth point."""
    params = dict(SMALL[name], **({"split_box": True} if split else {}))
    prob, data, prep = _prep(name, params)
    rng = np.random.default_rng(7)
    x = data["x0"] + 0.05 * rng.standard_normal(data["x0"].shape)  # off the kinks of x0
    f, g, ci, Ji, ce, Je = prob.evaluate(prep, x)
    _fd_check(lambda z: (float(prob.evaluate(prep, z)[0]), g), x, "f", 1e-5)
    for vals, jac, idx in ((ci, Ji, 2), (ce, Je, 4)):
        if vals is None:
            continue
        assert jac.shape == (x.shape[0], vals.shape[0])
        for j in range(vals.shape[0]):
            _fd_check(lambda z, j=j: (float(prob.evaluate(prep, z)[idx][j]), jac[:, j]), x, (idx, j), 1e-5)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_torch_and_numpy_forms_agree(name):
    """The PyGRANSO form (torch) is the NumPy form: same definition, same numbers."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as txp
    prob, data, prep = _prep(name, SMALL[name])
    tprep = prob.prepare(data, txp)
    x = data["x0"] + 0.1
    a = prob.evaluate(prep, x)
    b = prob.evaluate(tprep, torch.from_numpy(x.copy()))
    for u, v in zip(a, b):
        assert (u is None) == (v is None)
        if u is not None:
            np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-13, atol=1e-13)


def test_svm_reference_value_is_the_qp_optimum():
    """The SVM reference (Clarabel) is feasible-optimal: no SLSQP run does better."""
    pytest.importorskip("clarabel")
    from scipy.optimize import minimize
    prob, data, prep = _prep("svm", {"N": 20, "d": 3})
    f_ref = prob.reference_f(data)
    ev = lambda x: prob.evaluate(prep, x)  # noqa: E731
    res = minimize(lambda x: float(ev(x)[0]), data["x0"], jac=lambda x: ev(x)[1], method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: -ev(x)[2], "jac": lambda x: -ev(x)[3].T}],
                   options={"ftol": 1e-12, "maxiter": 500})
    assert res.success
    assert abs(res.fun - f_ref) <= 1e-7 * abs(f_ref)


def test_violation_is_the_infinity_norm():
    assert violation(np.array([-1.0, 0.5]), np.array([-2.0])) == 2.0
    assert violation(None, None) == 0.0
    assert violation(np.array([-1.0]), None) == 0.0


def test_time_to_target_needs_accuracy_and_feasibility():
    trace = [(0.1, 2.0, 0.0), (0.2, 1.0 + 1e-7, 1e-3), (0.3, 1.0 + 1e-5, 0.0), (0.4, 1.0 + 1e-7, 0.0)]
    assert report.time_to_target(trace, 1.0) == 0.4
    assert report.time_to_target(trace[:3], 1.0) is None
    assert report.time_to_target(trace, None) is None


def test_suite_keeps_giant_pygranso_runs_opt_in():
    """Default mode never runs PyGRANSO at the sizes the issue says take minutes and many GB."""
    default = {c.label: c for c in suite.build("default", None)}
    full = {c.label: c for c in suite.build("full", None)}
    for label in ("lbfgs_n1e6", "fullbfgs_n16000", "attack_split"):
        assert "pygranso" not in default[label].solvers, label
        assert "pygranso" in full[label].solvers, label
        assert label in suite.ISSUE_PYGRANSO  # so the report can quote the issue's figure
    assert default["lbfgs_n1e7"].solvers == ("ncvx_ref",)
    assert all(c.options.get("maxclocktime") == 20.0 for c in suite.build("quick", None))
    assert all("maxclocktime" not in c.options for c in full.values())


def test_comparisons_label_issue_figures_as_not_measured():
    cases = [c for c in suite.build("default", None) if c.label == "lbfgs_n1e6"]
    row = {"label": "lbfgs_n1e6", "solver": "ncvx_ref", "group": "", "n": 10**6, "n_ineq": 2, "n_eq": 0,
           "iters": 10, "fn_evals": 20, "termination": 4, "message": "", "wall_s": 2.0, "walls_s": [2.0],
           "repeats": 1, "ms_per_iter": 200.0, "user_s": 0.5, "overhead_s": 1.5, "overhead_frac": 0.75,
           "f_final": 1.0, "viol_final": 0.0, "deterministic": True, "x_sha": "", "peak_rss_mb": 1000.0,
           "rss_before_mb": 100.0, "solver_mb": 900.0, "memory_isolated": True, "trace": None}
    doc = report.build([row], cases, {"lbfgs_n1e6": None}, "default", {}, False)
    (c,) = doc["comparisons"]
    assert c["source"] == report.ISSUE_SOURCE
    assert c["speedup_per_iter"] == pytest.approx(1720.0 / 200.0)
    assert c["memory_ratio"] == pytest.approx(1000.0 / (3.9 * 1024))
    statuses = {t["target"]: t["status"] for t in doc["targets"]}
    assert statuses["time/iter >= 10x lower than PyGRANSO: lbfgs_n1e6"] == "FAIL"
    assert statuses["L-BFGS n=1e6 peak memory <= 1/3 of PyGRANSO's"] == "pass"
    assert statuses["overhead < 20% of wall at n >= 1e5: lbfgs_n1e6"] == "FAIL"


def test_worker_end_to_end(tmp_path):
    """A worker process runs ncvx_ref and SLSQP on a small eigenproblem and reports sane rows."""
    pytest.importorskip("ncvx_ref")
    prob = PROBLEMS["eigen"]
    data = prob.make({"n": 10}, np.random.default_rng(0))
    path = tmp_path / "eig.npz"
    np.savez(path, **data)
    jobs = [{"label": "eig", "kind": "bench", "problem": "eigen", "data": str(path), "solver": s,
             "options": {"print_level": 0}, "repeats": 2, "trace": True}
            for s in ("ncvx_ref", "slsqp", "ncvx_ref")]
    jp, op = tmp_path / "jobs.json", tmp_path / "out.json"
    jp.write_text(json.dumps(jobs))
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "worker.py"), str(jp), str(op)],
                   check=True, timeout=120)
    rows = json.loads(op.read_text())
    lam = float(np.linalg.eigvalsh(data["A"])[0])
    for r in rows:
        assert "error" not in r, r.get("traceback")
        assert r["f_final"] == pytest.approx(lam, abs=1e-6) and r["viol_final"] < 1e-6
        assert r["iters"] > 0 and r["fn_evals"] >= r["iters"] and r["user_calls"] >= r["fn_evals"] - 1
        assert 0.0 <= r["user_s"] <= r["wall_s"] and r["repeats"] == 2
        assert r["trace"] and r["trace"][-1][1] == pytest.approx(r["f_final"], abs=1e-6)
    assert rows[0]["deterministic"]
    # one untimed warm-up solve per solver and process, before its first job
    assert rows[0]["warm_up_s"] > 0.0 and rows[1]["warm_up_s"] > 0.0 and rows[2]["warm_up_s"] == 0.0


@pytest.mark.skipif(not os.path.isdir(CASES), reason="shared/granso_reference/cases not present")
def test_conformance_rows_cover_constrained_cases():
    cases = suite.conformance_cases(CASES, quick=False)
    assert cases and all(c.kind == "case" for c in cases)
    from benchmarks.problems import load_instance
    inst = load_instance({"kind": "case", "case": cases[0].problem, "cases_dir": CASES, "label": "x"}, np)
    assert isinstance(inst, Instance) and inst.n_ineq + inst.n_eq > 0


def test_median_round_picks_the_median_wall_and_keeps_the_worst_memory():
    from benchmarks.run import median_round

    def row(wall, peak, sha="a", det=True):
        return {"label": "c", "solver": "ncvx_ref", "wall_s": wall, "peak_rss_mb": peak,
                "solver_mb": peak - 50.0, "deterministic": det, "x_sha": sha, "ms_per_iter": wall}

    rows = [row(3.0, 80.0), row(1.0, 90.0), row(2.0, 70.0)]
    out = median_round(rows)
    assert out["wall_s"] == 2.0 and out["ms_per_iter"] == 2.0 and out["rounds"] == 3
    assert out["round_walls_s"] == [3.0, 1.0, 2.0] and out["round_ms_per_iter"] == [3.0, 1.0, 2.0]
    assert out["peak_rss_mb"] == 90.0 and out["solver_mb"] == 40.0 and out["deterministic"]
    assert not median_round([row(1.0, 80.0), row(2.0, 80.0, sha="b")])["deterministic"]
    failed = {"label": "c", "solver": "ncvx_ref", "error": "timed out"}
    assert median_round([failed, row(1.0, 80.0)])["wall_s"] == 1.0
    assert median_round([failed, dict(failed)]) is failed


def test_report_pairs_rounds_of_ours_and_the_peer():
    """With rounds, each round's ratio is ours and the peer's back-to-back runs of that round."""
    case = suite.Case("c", "g", "bench", "nsrosen", {}, seed=0, solvers=("ncvx_ref", "pygranso"))
    final = {"f_final": 0.0, "viol_final": 0.0}
    ours = dict(final, solver="ncvx_ref", ms_per_iter=1.0, iters=10, wall_s=0.01,
                round_ms_per_iter=[1.0, 2.0, 1.0])
    peer = dict(final, solver="pygranso", ms_per_iter=10.0, iters=10, wall_s=0.1,
                round_ms_per_iter=[8.0, 30.0, 12.0])
    c = report._compare(case, ours, peer, "measured")
    assert c["round_speedups_per_iter"] == [8.0, 15.0, 12.0]
    assert "round_speedups_per_iter" not in report._compare(case, dict(ours, round_ms_per_iter=[1.0]),
                                                             dict(peer, round_ms_per_iter=[8.0]), "measured")
