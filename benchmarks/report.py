"""Turning worker rows into the report: ratios to each peer, issue-4 targets, Markdown.

Ratios are "how many times better ncvx_ref is": ``speedup = peer / ours`` for time per
iteration and total time, ``memory = ours / peer`` for peak RSS (smaller is better).  Where
PyGRANSO was not run, its figures from issue 4 are used and every such entry carries
``source = "issue (not measured)"``.
"""
from __future__ import annotations

import math
import statistics
from typing import Dict, List, Optional

from benchmarks.suite import ISSUE_PYGRANSO

ISSUE_SOURCE = "issue (not measured)"
TTT_RTOL = 1e-6      # time to target: |f - f_ref| <= TTT_RTOL |f_ref| ...
TTT_VIOL = 1e-6      # ... at a point with violation <= TTT_VIOL


def time_to_target(trace, f_ref) -> Optional[float]:
    """Seconds until the first trace point within TTT_RTOL of ``f_ref`` and feasible, or None."""
    if not trace or f_ref is None:
        return None
    tol = TTT_RTOL * max(abs(f_ref), 1e-12)
    for t, f, tv in trace:
        if abs(f - f_ref) <= tol and tv <= TTT_VIOL:
            return t
    return None


def _downsample(trace, k: int = 300):
    if not trace or len(trace) <= k:
        return trace
    step = len(trace) / k
    idx = sorted({int(i * step) for i in range(k)} | {len(trace) - 1})
    return [trace[i] for i in idx]


def progress_line(r: dict, i: int, n: int) -> str:
    head = f"[{i}/{n}] {r['label']:<22} {r['solver']:<12}"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    return (f"{head} it={r['iters']:<5} fev={r['fn_evals']:<6} {r['ms_per_iter']:10.3f} ms/it  "
            f"wall={r['wall_s']:8.3f}s  ovh={100 * r['overhead_frac']:5.1f}%  "
            f"peak={r['peak_rss_mb']:8.1f}MB  f={r['f_final']:.10g} viol={r['viol_final']:.1e}")


def _ok(r: Optional[dict]) -> bool:
    return r is not None and "error" not in r


def build(rows: List[dict], cases, refs: Dict[str, Optional[float]], mode: str, env: dict,
          have_pygranso: bool) -> dict:
    by_case = {c.label: c for c in cases}
    for r in rows:
        f_ref = refs.get(r["label"])
        r["f_ref"] = f_ref
        if _ok(r):
            r["rel_err"] = (abs(r["f_final"] - f_ref) / max(abs(f_ref), 1e-12)) if f_ref is not None else None
            r["time_to_target_s"] = time_to_target(r.get("trace"), f_ref)
            r["trace"] = _downsample(r.get("trace"))
    index = {(r["label"], r["solver"]): r for r in rows}
    comparisons = []
    for case in cases:
        ours = index.get((case.label, "ncvx_ref"))
        if not _ok(ours):
            continue
        for peer in ("pygranso", "slsqp", "trust-constr"):
            pr = index.get((case.label, peer))
            if _ok(pr):
                comparisons.append(_compare(case, ours, pr, "measured"))
            elif peer == "pygranso" and case.label in ISSUE_PYGRANSO:
                comparisons.append(_compare(case, ours, dict(ISSUE_PYGRANSO[case.label], solver=peer),
                                            ISSUE_SOURCE))
    doc = {"meta": dict(env, mode=mode, pygranso_measured=have_pygranso,
                        time_to_target={"rtol": TTT_RTOL, "viol": TTT_VIOL}),
           "rows": rows, "comparisons": comparisons}
    doc["targets"] = targets(doc, by_case)
    return doc


def _compare(case, ours: dict, peer: dict, source: str) -> dict:
    capped = source == "measured" and peer["solver"] in case.peer_maxit
    c = {"label": case.label, "group": case.group, "peer": peer["solver"], "source": source,
         "speedup_per_iter": _ratio(peer.get("ms_per_iter"), ours["ms_per_iter"]),
         "ours_ms_per_iter": ours["ms_per_iter"], "peer_ms_per_iter": peer.get("ms_per_iter"),
         "ours_iters": ours["iters"], "peer_iters": peer.get("iters"),
         "peer_run_capped": capped}
    if source == "measured" and not capped:
        c["speedup_total"] = _ratio(peer["wall_s"], ours["wall_s"])
    mine, theirs = ours.get("round_ms_per_iter"), peer.get("round_ms_per_iter")
    if source == "measured" and mine and theirs and len(mine) == len(theirs) > 1:
        # round r of both solvers ran back to back: a ratio per round, free of the drift
        # between rounds
        c["round_speedups_per_iter"] = [_ratio(p, o) for o, p in zip(mine, theirs)]
    # Memory: measured pairs compare the growth over the pre-solve RSS (interpreter, torch and
    # the problem data excluded); the issue's figures are whole-process peaks, so those compare
    # whole-process peaks.
    if source == "measured" and ours.get("memory_isolated") and peer.get("memory_isolated"):
        c["memory_basis"] = "peak RSS above pre-solve RSS"
        c["ours_peak_mb"], c["peer_peak_mb"] = ours["solver_mb"], peer["solver_mb"]
    elif source != "measured" and peer.get("peak_rss_mb"):
        c["memory_basis"] = "whole-process peak RSS"
        c["ours_peak_mb"], c["peer_peak_mb"] = ours["peak_rss_mb"], peer["peak_rss_mb"]
    if c.get("peer_peak_mb"):
        c["memory_ratio"] = c["ours_peak_mb"] / max(c["peer_peak_mb"], 1e-9)
    if source == "measured":
        c["ours_ttt_s"], c["peer_ttt_s"] = ours.get("time_to_target_s"), peer.get("time_to_target_s")
        c["ours_f"], c["peer_f"] = ours["f_final"], peer["f_final"]
        c["ours_viol"], c["peer_viol"] = ours["viol_final"], peer["viol_final"]
    return c


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def _status(ok: Optional[bool]) -> str:
    return "not measured" if ok is None else ("pass" if ok else "FAIL")


def targets(doc: dict, by_case) -> List[dict]:
    rows, comps = doc["rows"], doc["comparisons"]
    out = []
    pg = [c for c in comps if c["peer"] == "pygranso" and c["speedup_per_iter"] is not None
          and not c["label"].startswith("case:")]
    for c in pg:
        need = 30.0 if c["label"].startswith("svm") else 10.0
        out.append({"target": f"time/iter >= {need:g}x lower than PyGRANSO: {c['label']}",
                    "value": f"{c['speedup_per_iter']:.2f}x ({c['source']})",
                    "status": _status(c["speedup_per_iter"] >= need)})
    case_pg = [c["speedup_per_iter"] for c in comps if c["peer"] == "pygranso"
               and c["label"].startswith("case:") and c["speedup_per_iter"]]
    if case_pg:
        gm = math.exp(sum(math.log(s) for s in case_pg) / len(case_pg))
        out.append({"target": "time/iter >= 10x lower than PyGRANSO: conformance cases",
                    "value": f"geometric mean {gm:.2f}x, min {min(case_pg):.2f}x over {len(case_pg)} cases",
                    "status": _status(min(case_pg) >= 10.0)})
    for c in comps:
        if c["label"].startswith("svm") and c["peer"] == "slsqp":
            a, b = c.get("ours_ttt_s"), c.get("peer_ttt_s")
            ok = None if a is None and b is None else (a is not None and (b is None or a < b))
            out.append({"target": f"SVM time to {TTT_RTOL:g} relative beats SLSQP ({c['label']})",
                        "value": f"ncvx_ref {_fmt_s(a)} vs SLSQP {_fmt_s(b)}", "status": _status(ok)})
    for c in comps:
        if c["label"] == "lbfgs_n1e6" and c["peer"] == "pygranso" and "memory_ratio" in c:
            out.append({"target": "L-BFGS n=1e6 peak memory <= 1/3 of PyGRANSO's",
                        "value": f"{c['ours_peak_mb']:.0f} MB vs {c['peer_peak_mb']:.0f} MB "
                                 f"= {c['memory_ratio']:.2f} ({c['memory_basis']}; {c['source']})",
                        "status": _status(c["memory_ratio"] <= 1 / 3)})
    for r in rows:
        if r["label"] == "lbfgs_n1e7" and r["solver"] == "ncvx_ref":
            ok = _ok(r) and r["peak_rss_mb"] <= 24 * 1024
            out.append({"target": "L-BFGS n=1e7 runs in 24 GiB",
                        "value": r.get("error") or f"peak {r['peak_rss_mb']:.0f} MB", "status": _status(ok)})
    for r in rows:
        if r["solver"] == "ncvx_ref" and _ok(r) and r["n"] >= 10**5:
            out.append({"target": f"overhead < 20% of wall at n >= 1e5: {r['label']}",
                        "value": f"{100 * r['overhead_frac']:.1f}%", "status": _status(r["overhead_frac"] < 0.2)})
    # a run stopped by the clock (code 5) stops at a time-dependent iteration: not comparable
    rep = [r for r in rows if r["solver"] == "ncvx_ref" and _ok(r)
           and (r["repeats"] > 1 or r.get("rounds", 1) > 1) and r["termination"] != 5]
    if rep:
        bad = [r["label"] for r in rep if not r["deterministic"]]
        out.append({"target": "bit-identical results run to run (ncvx_ref, rows with >1 repeat, not clock-stopped)",
                    "value": f"{len(rep) - len(bad)}/{len(rep)} identical" + (f"; differ: {bad}" if bad else ""),
                    "status": _status(not bad)})
    return out


def _fmt_s(v) -> str:
    return "not reached" if v is None else f"{v:.3f} s"


def _g(v, fmt="{:.3g}") -> str:
    return "" if v is None else fmt.format(v)


def markdown(doc: dict) -> str:
    m = doc["meta"]
    lines = [f"# ncvx_ref benchmarks ({m['mode']} mode)", "",
             f"{m['date']}; {m['cpu']} ({m['cores']} cores), one thread; Python {m['python']}, "
             f"NumPy {m['numpy']}, SciPy {m['scipy']}; ncvx_ref {m['ncvx_ref_commit']}; "
             f"PyGRANSO {m['pygranso']}; load average at start {tuple(round(x, 2) for x in m['load_avg_at_start'])}; "
             f"suite wall {m.get('suite_wall_s', 0):.0f} s"
             + (f"; {m['rounds']} alternating rounds, each row the round with the median wall"
                if m.get("rounds", 1) > 1 else "") + ".", "",
             "## Runs", "",
             "| case | solver | n | m_I/m_E | iters | f evals | f final | viol | rel err | ms/iter "
             "| wall s | overhead | peak MB | solver MB | to 1e-6 s | term | reps | same x |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['solver']} | error: {r['error'].splitlines()[0][:120]} "
                         "||||||||||||||||")
            continue
        mem = f"{r['peak_rss_mb']:.0f}" + ("" if r["memory_isolated"] else " (shared)")
        lines.append(
            f"| {r['label']} | {r['solver']} | {r['n']} | {r['n_ineq']}/{r['n_eq']} | {r['iters']} | "
            f"{r['fn_evals']} | {r['f_final']:.10g} | {r['viol_final']:.1e} | {_g(r.get('rel_err'), '{:.1e}')} | "
            f"{r['ms_per_iter']:.3f} | {r['wall_s']:.3f} | {100 * r['overhead_frac']:.1f}% | {mem} | "
            f"{r.get('solver_mb', 0):.0f} | "
            f"{_g(r.get('time_to_target_s'), '{:.3f}')} | {r['termination']} | {r['repeats']} | "
            f"{'yes' if r['deterministic'] else 'NO'} |")
    lines += ["", "## ncvx_ref against each peer (x = times better for ncvx_ref)", "",
              "| case | peer | source | time/iter speedup | total-time speedup | memory ours/peer (*) "
              "| ours ms/iter | peer ms/iter | iters ours/peer | notes |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in doc["comparisons"]:
        note = "peer capped at few iterations: per-iteration figure only" if c["peer_run_capped"] else ""
        per_round = [x for x in c.get("round_speedups_per_iter") or [] if x is not None]
        if per_round:
            note = (note + "; " if note else "") + (
                f"per round: median {statistics.median(per_round):.2f}x, "
                f"{min(per_round):.2f}-{max(per_round):.2f}x")
        lines.append(
            f"| {c['label']} | {c['peer']} | {c['source']} | {_g(c['speedup_per_iter'], '{:.2f}x')} | "
            f"{_g(c.get('speedup_total'), '{:.2f}x')} | {_g(c.get('memory_ratio'), '{:.2f}')} | "
            f"{c['ours_ms_per_iter']:.3f} | {_g(c['peer_ms_per_iter'], '{:.3f}')} | "
            f"{c['ours_iters']}/{_g(c['peer_iters'], '{}')} | {note} |")
    lines += ["", "(*) measured pairs: peak RSS above the pre-solve RSS (interpreter, torch and data "
              "excluded); issue figures: whole-process peak RSS.", "", "## Issue 4 targets", "", "| target | value | status |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {t['status']} |" for t in doc["targets"]]
    profs = [r for r in doc["rows"] if r.get("profile")]
    for r in profs:
        lines += ["", f"## cProfile: ncvx_ref on {r['label']}", "", "```", r["profile"].strip()[:6000], "```"]
    return "\n".join(lines) + "\n"
