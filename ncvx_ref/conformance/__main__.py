"""``python -m ncvx_ref.conformance [PATH] [--json OUT] [-k SUBSTR] [--strict]``: the conformance runner.

Solves every GRANSO reference case under PATH (a reference set or its ``cases`` folder; default
``<repo>/../shared/granso_reference``) with the case's x0 and options, prints one row per case
and a summary by family, and exits with status 1 when a case fails a check that is neither
explained in ``compare.EXPLAINED`` nor failed only after the runs part at a rounding-level tie
(status "rounding": platform-dependent, see ``compare.CaseComparison.parts_by_rounding``;
with ``--strict``: any failed check), or names a tie
in ``compare.EXPLAINED_TIES`` inconsistent with the run; 2 when no case is found.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict

from . import check_case
from .cases import case_paths, load_case
from .compare import (CHECKS, EXPLAINED, EXPLAINED_TIE_CONSISTENT, HISTORY_K, TARGETS, TIE_RTOL,
                      TRAJECTORY_RTOL, summarize)


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1e}"


def _row_line(r) -> str:
    code = f"{r.code_ref}/{'-' if r.code is None else r.code}"
    iters = f"{r.iters_ref}/{'-' if r.iters is None else r.iters}"
    viol = f"{_fmt(r.tv_ref)}/{_fmt(r.tv)}"
    note = ",".join(r.failed) if r.failed else ""
    if r.error:
        note = r.error[:60]
    tie = "-" if r.tie_at is None else str(r.tie_at)
    prefix = ("-" if r.error else f"{'ok' if r.prefix_ok else 'NO'} 0..{r.prefix_end}"
              if r.prefix_end >= 0 else "ok (empty)")
    return (f"{r.id:30s} {r.family:21s} {code:>6s} {iters:>10s} {_fmt(r.f_diff):>8s} {viol:>17s} "
            f"{str(r.departure):>22s} {tie:>6s} {prefix:>10s} {r.seconds:6.1f}s  {r.status:9s} {note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ncvx_ref.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", default=None, help="reference set folder (or its cases/ folder)")
    ap.add_argument("--json", metavar="OUT", help="also write the rows and the summary as JSON to OUT")
    ap.add_argument("-k", metavar="SUBSTR", action="append", default=[],
                    help="only cases whose id contains SUBSTR (repeatable)")
    ap.add_argument("--qp-solver", default=None, help="QP solver name passed to ncvx_ref.solve")
    ap.add_argument("--strict", action="store_true", help="explained and rounding-dependent differences also fail")
    args = ap.parse_args(argv)

    paths = [p for p in case_paths(args.path) if not args.k or any(s in p.stem for s in args.k)]
    if not paths:
        print(f"no reference cases found under {args.path or 'the default reference folder'}", file=sys.stderr)
        return 2
    print(f"{'case':30s} {'family':21s} {'code':>6s} {'iters':>10s} {'f rel':>8s} {'violation':>17s} "
          f"{'first departure':>22s} {'tie at':>6s} {'tie-free':>10s} {'time':>7s}  status    failed checks")
    print(f"{'':30s} {'':21s} {'G/ours':>6s} {'G/ours':>10s} {'':>8s} {'G/ours':>17s} {'':>22s} "
          f"{'':>6s} {'prefix':>10s}")
    rows = []
    for p in paths:
        row = check_case(load_case(p), qp_solver=args.qp_solver)
        rows.append(row)
        print(_row_line(row), flush=True)

    s = summarize(rows)
    print()
    print(f"{'family':21s} {'cases':>5s} " + " ".join(f"{c:>15s}" for c in CHECKS) + f" {'explained':>9s} {'rounding':>9s} {'FAIL':>5s}")
    for fam, d in sorted(s["families"].items()):
        print(f"{fam:21s} {d['cases']:5d} " + " ".join(f"{d[c]:15d}" for c in CHECKS)
              + f" {d['explained']:9d} {d['rounding']:9d} {d['fail']:5d}")
    print()
    fr = s["fractions"]
    print(f"termination code equal:            {fr['code']:.1%}  (target >= {TARGETS['code']:.0%})")
    print(f"final f within tolerance:          {fr['final_f']:.1%}  (target >= {TARGETS['final_f']:.0%})")
    print(f"first {HISTORY_K} iterations to {TRAJECTORY_RTOL:g} (smooth families, {s['smooth_cases']} cases): "
          f"{fr['trajectory_smooth']:.1%}  (target >= {TARGETS['trajectory_smooth']:.0%})")
    t = s["ties"]
    print(f"rounding-level ties (ALGORITHM.md 19.19; tie: |v| <= {TIE_RTOL:g} x the magnitude of its terms):")
    print(f"  tie-free prefix (iterations 0..min({HISTORY_K}, tie_at - 1)) agrees to {TRAJECTORY_RTOL:g}: "
          f"{t['prefix_all']}/{s['cases']} cases, {t['prefix_smooth']}/{s['smooth_cases']} smooth")
    print(f"  cases without a tie in iterations 0..{HISTORY_K}: {t['no_tie_in_first_k']}/{s['cases']}; "
          f"departing runs that depart at or after a tie: {t['departed_at_or_after_tie']}/{t['departed']}")
    print(f"  ties named in compare.EXPLAINED confirmed by the detector: "
          f"{t['explained_ties_confirmed']}/{t['explained_ties']}")
    for r in rows:
        if r.explained_tie not in (None, "confirmed"):
            print(f"note: {r.id}: explained tie not confirmed: {r.explained_tie}")
        if r.by_rounding:
            print(f"note: {r.id}: {','.join(r.by_rounding)} differ after the runs part by rounding "
                  f"at iteration {r.departure.iteration} (platform-dependent; not in EXPLAINED)")
    stale = [(r.id, c) for r in rows for c in r.stale_explanations]
    for cid, c in stale:
        print(f"note: {cid}: check '{c}' now passes; if it passes on the development machine too, "
              "remove its entry from compare.EXPLAINED and docs/conformance.md")
    if args.json:
        def enc(r):
            d = asdict(r)
            d.update(departure_iteration=r.departure.iteration, departure_quantity=r.departure.quantity,
                     status=r.status, failed=r.failed, explanations=EXPLAINED.get(r.id, {}))
            return d
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": [enc(r) for r in rows], "summary": s}, fh, indent=1, default=str)
    bad = [r for r in rows if r.status == "FAIL" or r.explained_tie not in EXPLAINED_TIE_CONSISTENT
           or (args.strict and r.status in ("explained", "rounding"))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
