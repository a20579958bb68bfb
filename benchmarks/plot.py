"""The suite's figure: time per iteration, speedup over PyGRANSO, and SVM convergence."""
from __future__ import annotations

import math

COLORS = {"ncvx_ref": "#1f77b4", "pygranso": "#d62728", "slsqp": "#2ca02c", "trust-constr": "#9467bd"}


def plot(doc: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if "error" not in r and not r["label"].startswith("case:")]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    solvers = [s for s in COLORS if any(r["solver"] == s for r in rows)]
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.2), gridspec_kw={"width_ratios": [2.2, 1.6, 1.2]})

    ax = axes[0]
    w = 0.8 / max(len(solvers), 1)
    for k, s in enumerate(solvers):
        xs, ys = [], []
        for i, lab in enumerate(labels):
            r = next((r for r in rows if r["label"] == lab and r["solver"] == s), None)
            if r is not None and r["ms_per_iter"] > 0:
                xs.append(i + (k - (len(solvers) - 1) / 2) * w)
                ys.append(r["ms_per_iter"])
        ax.bar(xs, ys, width=w, color=COLORS[s], label=s)
    issue = [c for c in doc["comparisons"] if c["source"] != "measured" and c["peer_ms_per_iter"]]
    for c in issue:
        if c["label"] in labels:
            ax.plot(labels.index(c["label"]), c["peer_ms_per_iter"], "x", color=COLORS["pygranso"], ms=9)
    if issue:
        ax.plot([], [], "x", color=COLORS["pygranso"], label="PyGRANSO, from the issue (not measured)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("ms per iteration (log)")
    ax.set_title("time per iteration (one thread)")
    ax.legend(fontsize=8)

    ax = axes[1]
    comps = [c for c in doc["comparisons"] if c["peer"] == "pygranso" and c["speedup_per_iter"]]
    names = [c["label"].replace("case:", "") for c in comps]
    vals = [c["speedup_per_iter"] for c in comps]
    cols = [COLORS["pygranso"] if c["source"] != "measured" else "#555555" for c in comps]
    ax.barh(range(len(vals)), vals, color=cols)
    ax.axvline(10, color="k", ls="--", lw=1, label="10x target")
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=6 if len(names) > 25 else 8)
    ax.invert_yaxis()
    ax.set_xlabel("PyGRANSO time/iter / ncvx_ref time/iter (log); red = vs issue figure")
    ax.set_title("speedup per iteration over PyGRANSO")
    ax.legend(fontsize=8)

    ax = axes[2]
    svm = [r for r in rows if r["label"].startswith("svm") and r.get("trace") and r.get("f_ref")]
    for r in svm:
        ref = r["f_ref"]
        t = [p[0] for p in r["trace"] if p[0] > 0]
        e = [max(abs(p[1] - ref) / abs(ref), 1e-17) + (p[2] > 1e-6) * 0 for p in r["trace"] if p[0] > 0]
        ax.loglog(t, e, color=COLORS.get(r["solver"], "k"), label=f"{r['solver']} ({r['label']})")
    ax.axhline(1e-6, color="k", ls="--", lw=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("|f - f*| / |f*|")
    ax.set_title("SVM convergence")
    if svm:
        ax.legend(fontsize=8)
    m = doc["meta"]
    fig.suptitle(f"ncvx_ref benchmarks, {m['mode']} mode ({m['cpu']}, 1 thread, {m['date']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
