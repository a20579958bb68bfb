"""Collect the QPs the method really builds: run every GRANSO reference case and record its QPs.

Each case runs through ``ncvx_ref.solve`` with its stored ``x0`` and options
(``ncvx_ref.conformance.cases.solve_options``) and a :class:`ncvx_ref.qp.default.RecordingQPSolver`
around the default QP solver.  A long run builds thousands of QPs; at most ``--max-per-case``
of them are kept per case (fewer where their ``Q`` matrices exceed ``--budget-mb``), spread
evenly over the run (early steering QPs and the late, near-degenerate stationarity QPs alike),
thinned while the run goes so memory stays bounded.

Writes ``<out>.npz`` (:func:`ncvx_ref.qp.default.load_qp_corpus` reads it) and ``<out>.json``:
one row per kept QP (case id, index of the QP call in its run, kind, ``k``, time of the
default solver's call, error) plus per-case totals.  ``benchmarks/qp_comparison.py --corpus
<out>.npz`` compares the solver candidates on it.

Usage::

    OPENBLAS_NUM_THREADS=1 python3 benchmarks/collect_qps.py [--out benchmarks/results/qp_corpus]
        [--max-per-case 300] [--budget-mb 4] [-k SUBSTR ...] [--reference PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # the ncvx_ref of this checkout, not an installed one
    sys.path.insert(0, ROOT)

from ncvx_ref import problems, solve  # noqa: E402
from ncvx_ref.conformance.cases import case_paths, load_case, solve_options  # noqa: E402
from ncvx_ref.qp.default import QPRecord, RecordingQPSolver  # noqa: E402
from ncvx_ref.qp.interface import BoxQP  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class ThinningRecorder:
    """A QP solver that records an evenly spread subset of at most ``2·cap`` of the QPs it solves.

    Every QP is solved (by a :class:`RecordingQPSolver` around ``inner``); the record of call
    ``i`` is kept when ``i`` is a multiple of the current stride.  When more than ``2·cap``
    records accumulate, every other one is dropped and the stride doubles.
    """

    def __init__(self, inner: Any = None, cap: int = 300, budget_mb: float = 4.0) -> None:
        self.rec = RecordingQPSolver(inner)
        self.name = self.rec.name
        self.cap = cap
        self.budget = budget_mb * 1e6
        self.stride = 1
        self.calls = 0
        self.kept: list[tuple[int, QPRecord, float]] = []  # (call index, record, seconds)
        self.kinds: Counter = Counter()
        self.sizes: Counter = Counter()

    def solve(self, qp: BoxQP) -> np.ndarray:
        i = self.calls
        self.calls += 1
        self.kinds[qp.kind] += 1
        self.sizes[qp.size] += 1
        t0 = time.perf_counter()
        try:
            return self.rec.solve(qp)
        finally:
            dt = time.perf_counter() - t0
            record = self.rec.records.pop()  # keep nothing in the inner recorder
            if i % self.stride == 0:
                self.kept.append((i, record, dt))
                if len(self.kept) > 2 * self.cap:
                    self.kept = [r for r in self.kept if r[0] % (2 * self.stride) == 0]
                    self.stride *= 2

    def selection(self) -> list[tuple[int, QPRecord, float]]:
        """The most records, at most ``cap``, evenly spaced over the run (first and last
        included) whose ``Q`` matrices fit in ``budget_mb`` (large-``k`` runs keep fewer)."""
        n = len(self.kept)
        sizes = np.array([8.0 * r.qp.size ** 2 for _, r, _ in self.kept])

        def picks(m: int) -> np.ndarray:
            return np.unique(np.linspace(0, n - 1, m).round().astype(int)) if m else np.zeros(0, int)

        lo, hi = 1, min(n, self.cap)  # largest m whose evenly spaced picks fit the budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sizes[picks(mid)].sum() <= self.budget else (lo, mid - 1)
        return [self.kept[j] for j in picks(min(lo, n))]


def collect(reference: Optional[str], cap: int, only: list[str],
            budget_mb: float = 4.0) -> tuple[RecordingQPSolver, dict]:
    """Run the cases; returns a recorder holding the kept QPs, and the metadata for the JSON."""
    corpus = RecordingQPSolver(None)
    rows, cases = [], []
    paths = [p for p in case_paths(reference) if not only or any(s in p.stem for s in only)]
    if not paths:
        raise SystemExit(f"no reference cases found under {reference or 'the default folder'}")
    for path in paths:
        case = load_case(path)
        prob = problems.from_case(case)
        rec = ThinningRecorder(None, cap, budget_mb)
        t0 = time.perf_counter()
        error = None
        try:
            result = solve(prob.evaluate, np.asarray(prob.x0), qp_solver=rec,
                           **{**solve_options(case), "print_level": 0})
            code = int(result.termination_code)
        except Exception as exc:  # a crashing case is reported, its QPs so far are kept
            code, error = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        kept = rec.selection()
        for i, record, dt in kept:
            rows.append(dict(case=case["id"], family=case["family"], call=i, kind=record.qp.kind,
                             k=record.qp.size, seconds=dt, error=record.error))
            corpus.records.append(record)
        cases.append(dict(case=case["id"], family=case["family"], qp_calls=rec.calls,
                          kept=len(kept), kinds=dict(rec.kinds),
                          k_max=max(rec.sizes, default=0), termination_code=code,
                          run_seconds=seconds, error=error))
        print(f"{case['id']:32s} {rec.calls:6d} QPs ({dict(rec.kinds)}), kept {len(kept):4d}, "
              f"k <= {max(rec.sizes, default=0):5d}, code {code}, {seconds:6.1f}s"
              + (f"  {error[:80]}" if error else ""), flush=True)
    return corpus, dict(qps=rows, cases=cases, max_per_case=cap, budget_mb=budget_mb)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=None, help="reference set folder (default: ../shared)")
    ap.add_argument("--out", default=str(RESULTS / "qp_corpus"),
                    help="output path without extension: writes <out>.npz and <out>.json")
    ap.add_argument("--max-per-case", type=int, default=300)
    ap.add_argument("--budget-mb", type=float, default=4.0,
                    help="per case, at most this many MB of Q matrices (before compression)")
    ap.add_argument("-k", action="append", default=[], help="only cases whose id contains this")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus, meta = collect(args.reference, args.max_per_case, args.k, args.budget_mb)
    corpus.save(out.with_suffix(".npz"))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    total = len(meta["qps"])
    calls = sum(c["qp_calls"] for c in meta["cases"])
    print(f"\n{total} QPs kept of {calls} solved in {len(meta['cases'])} cases -> "
          f"{out.with_suffix('.npz')} ({out.with_suffix('.npz').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
