"""The iteration table printer: §18.3's number format, columns, labels, bars, repeats, summary."""
from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ncvx_ref.printing as printing
from ncvx_ref.history import IterationState
from ncvx_ref.options import Options
from ncvx_ref.penalty import PenaltyPoint
from ncvx_ref.printing import IterationPrinter, direction_label, format_nonnegative, format_number
from ncvx_ref.result import BFGSCounts, PointRecord, Result
from ncvx_ref.termination import TerminationCode

INF, NAN = math.inf, math.nan
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- hand-made records ------------------------------------------------------------------------------

def _point(f, mu=1.0, tvi=0.0, tve=0.0):
    z = np.zeros(3)
    return PenaltyPoint(x=z, f=f, f_grad=z, ci=None, ci_grad=None, ce=None, ce_grad=None, tvi=tvi,
                        tve=tve, tv=max(tvi, tve), tvi_l1=tvi, tvi_l1_grad=None, tve_l1=tve,
                        tve_l1_grad=None, tv_l1=tvi + tve, tv_l1_grad=None, mu=mu,
                        p=mu * f + tvi + tve, p_grad=z, feasible_to_tol=True)


def _state(k, point, evals=1, alpha=0.0, grads=1, stat=1.0, n_qp=1, level=0, n_random=0):
    return IterationState(iteration=k, point=point, direction=np.zeros(3), alpha=alpha,
                          ls_evals=evals, n_grads=grads, stat_vec=np.zeros(3), stat_val=stat,
                          n_qp=n_qp, fallback_level=level, n_random=n_random, qp_H=None,
                          get_H=lambda: None)


def _result(final, best=None, most_feasible=None, rate=0.0, constrained=True, unscaled=None,
            code=TerminationCode.MAXIT, iters=2, fn_evals=5):
    return Result(final=final, best=best, most_feasible=most_feasible, termination_code=code,
                  message="maximum number of iterations (maxit) reached.", iters=iters,
                  fn_evals=fn_evals, stat_value=0.0, mu_final=1.0, H_final=None,
                  bfgs_updates=BFGSCounts(), quadprog_failure_rate=rate, constrained=constrained,
                  final_unscaled=unscaled)


def _rec(f, tvi=0.0, tve=0.0):
    return PointRecord(x=np.zeros(3), f=f, tvi=tvi, tve=tve, tv=max(tvi, tve))


class _TTY(io.StringIO):
    def isatty(self):
        return True


def _printer(n_ineq=2, n_eq=0, file=None, **kw):
    kw.setdefault("quadprog_info_msg", False)
    return IterationPrinter(Options(**kw), 3, n_ineq, n_eq, file=file if file is not None else io.StringIO())


def _is_names_line(line):
    """The column-names line of the header."""
    return re.match(r"^[║|]\s+Iter\s", line) is not None


def _rows(text):
    """The iteration rows of a table (lines whose first cell is an integer)."""
    return [ln for ln in text.splitlines() if re.match(r"^[║|]\s+\d+ [║|]", ln)]


# -- number format (§18.3) --------------------------------------------------------------------------

@pytest.mark.parametrize("x, width, expected", [
    (0.0, 9, " 0.000000"), (-0.0, 9, " 0.000000"), (0.0, 14, " 0.00000000000"),
    (INF, 9, " Inf     "), (-INF, 9, "-Inf     "), (NAN, 9, " NaN     "), (-INF, 14, "-Inf          "),
    (1e100, 9, " 1.0e+100"), (-1e100, 14, "-1.000000e+100"), (1e-100, 9, " 1.0e-100"),
    (5e-324, 9, " 4.9e-324"), (9.99e-100, 9, " 1.0e-99 "),  # rounding shortens the exponent
    (9.999e99, 9, " 1.0e+100"),  # w-7 decimals would round to a 3-digit exponent: w-8 used
    (9.999e99, 14, " 9.9990000e+99"),
    (1e-3, 9, " 0.001000"), (9.99e-4, 9, " 9.99e-04"), (-2.5e-7, 14, "-2.5000000e-07"),
    (999999.0, 9, " 999999.0"), (1234567.0, 9, " 1.23e+06"), (1234567.0, 14, " 1234567.00000"),
    (12345678901.0, 14, " 12345678901.0"), (123456789012.0, 14, " 1.2345679e+11"),
    (9.9999999, 9, " 10.00000"),  # fixed format carry, cut to w-1 characters
    (-0.5, 9, "-0.500000"), (1.5, 14, " 1.50000000000"), (-12345.678, 14, "-12345.6780000"),
    (1 / 3, 23, " 0.33333333333333331483"), (123.456, 9, " 123.4560"), (0.5, 23, " 0." + "5" + "0" * 19),
])
def test_format_number_rules(x, width, expected):
    assert format_number(x, width) == expected


@pytest.mark.parametrize("width", [8, 24, 0, 9.0, True])
def test_format_number_rejects_bad_width(width):
    with pytest.raises(ValueError, match="9..23"):
        format_number(1.0, width)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(x=st.floats(allow_nan=True, allow_infinity=True), width=st.integers(9, 23))
def test_format_number_always_exactly_width_and_sign_first(x, width):
    s = format_number(x, width)
    assert len(s) == width
    assert s[0] == ("-" if x < 0 else " ")
    if math.isfinite(x) and x != 0:  # the digits shown are x to at least 2 significant digits
        shown = float(s)
        assert shown == x or abs(shown - x) <= 0.05 * abs(x) or (math.isinf(shown) and abs(x) > 1e308)


@pytest.mark.parametrize("x, expected", [(0.0, "0.000000"), (0.5, "0.500000"), (1e-5, "1.00e-05"),
                                         (INF, "Inf     "), (NAN, "NaN     "), (2e100, "2.0e+100"),
                                         (0.081, "0.081000"), (-1.0, "-1.00000")])
def test_format_nonnegative(x, expected):
    assert format_nonnegative(x) == expected and len(expected) == 8


@pytest.mark.parametrize("level, n_random, width, expected", [
    (0, 0, 2, "S"), (1, 0, 2, "SI"), (2, 0, 2, "QN"), (3, 0, 2, "GD"), (4, 3, 2, "R3"),
    (4, 3, 3, "R03"), (4, 12, 3, "R12")])
def test_direction_labels(level, n_random, width, expected):
    assert direction_label(level, n_random, width) == expected


# -- golden table --------------------------------------------------------------------------------

GOLDEN = """\

╔═══════════════════════════════════════════════════════════════════════════════════════════════════════════════╗
║ QP solver: daqp.                                                                                              ║
║ ncvx_ref solves its steering and stationarity subproblems (small convex QPs with box constraints) with daqp.  ║
║ GRANSO 1.6.4 calls MATLAB's quadprog instead, so iterates can differ where a QP has more than one solution.   ║
║ Pass another solver with the qp_solver argument; hide this notice with quadprog_info_msg=False.               ║
╚═══════════════════════════════════════════════════════════════════════════════════════════════════════════════╝
╔═══════════════════════════════════════════════════════════════════════════════════════════════════════════════╗
║ ncvx_ref 0.1.0: BFGS-SQP (a re-implementation of GRANSO 1.6.4's method)                                       ║
║ MIT licence. Method: Curtis, Mitchell & Overton, Optimization Methods and Software 32(1), 2017.               ║
║ Variables: 3    inequality constraints: 2    equality constraints: 0                                          ║
╠══════╦═════════════════════════╦══════════════╦═════════════════╦════════════════════════╦════════════════════╣
║      ║ Penalty Function        ║              ║ Total Violation ║ Line Search            ║ Stationarity       ║
║ Iter ║    Mu    │    Value     ║  Objective   ║   Ineq   │  Eq  ║  SD │ Evals │    t     ║ Grads │   Value    ║
╠══════╬══════════╪══════════════╬══════════════╬══════════╪══════╬═════╪═══════╪══════════╬═══════╪════════════╣
║    0 ║ 1.000000 │  1.750000000 ║  1.500000000 ║ 0.250000 │  -   ║ -   │     1 │ 0.000000 ║     1 │ 1.000000   ║
║    1 ║ 0.900000 │ -0.449990000 ║ -0.500000000 ║ 1.00e-05 │  -   ║ SI  │     3 │ 0.500000 ║     2 │ 2.30e-04:2 ║
║    2 ║ 0.081000 │ -999.9999180 ║ -12345.67800 ║ 0.000000 │  -   ║ R07 │     1 │ 1.000000 ║     4 │ 0.000000   ║
╠══════╬══════════╪══════════════╬══════════════╬══════════╪══════╬═════╪═══════╪══════════╬═══════╪════════════╣
║    F ║          │              ║ -12345.67800 ║ 0.000000 │  -   ║     │       │          ║       │            ║
║    B ║          │              ║ -12345.67800 ║ 0.000000 │  -   ║     │       │          ║       │            ║
║   MF ║          │              ║  3.000000000 ║ 0.000000 │  -   ║     │       │          ║       │            ║
╚══════╩══════════╧══════════════╩══════════════╩══════════╧══════╩═════╧═══════╧══════════╩═══════╧════════════╝
Iterations:           2
Function evaluations: 5
Termination (code 4): maximum number of iterations (maxit) reached.
Warning: 12.5% of the QP solves failed and were replaced by fallback directions or skipped samples. Results may
  be less reliable; try another qp_solver or check the scaling of the problem.
"""


def test_golden_table(monkeypatch):
    monkeypatch.setattr(printing, "__version__", "0.1.0")
    buf = io.StringIO()
    pr = IterationPrinter(Options(max_fallback_level=4, max_random_attempts=10, print_width=12),
                          3, 2, 0, file=buf)
    pr.start(qp_solver_name="daqp")
    pr.iteration(_state(0, _point(1.5, tvi=0.25)))
    pr.iteration(_state(1, _point(-0.5, mu=0.9, tvi=1e-5), evals=3, alpha=0.5, grads=2, stat=2.3e-4,
                        n_qp=2, level=1))
    pr.iteration(_state(2, _point(-12345.678, mu=0.081), alpha=1.0, grads=4, stat=0.0, level=4,
                        n_random=7))
    pr.finish(_result(_rec(-12345.678), _rec(-12345.678), _rec(3.0), rate=12.5))
    assert buf.getvalue() == GOLDEN


# -- behaviour ----------------------------------------------------------------------------------

def _run(pr, n_iters, **state_kw):
    pr.start(qp_solver_name="daqp")
    for k in range(n_iters + 1):
        pr.iteration(_state(k, _point(1.0 / (k + 1), tvi=0.1), **state_kw))
    pr.finish(_result(_rec(0.5), _rec(0.5), _rec(0.5)))
    return pr.file.getvalue()


def test_print_level_0_prints_nothing():
    pr = _printer(print_level=0, quadprog_info_msg=True)
    out = _run(pr, 3)
    pr.notice("hello", level=2)
    assert out == "" and pr.file.getvalue() == ""


def test_file_defaults_to_the_current_stdout(capsys):
    pr = IterationPrinter(Options(quadprog_info_msg=False), 3, 0, 0)
    pr.start()
    pr.iteration(_state(0, _point(2.0)))
    out = capsys.readouterr().out
    assert "Iter" in out and len(_rows(out)) == 1


def test_header_repeats_every_20_rows():
    out = _run(_printer(), 45)
    lines = out.splitlines()
    header_at = [i for i, ln in enumerate(lines) if _is_names_line(ln)]
    assert len(header_at) == 3  # rows 0-19, 20-39, 40-45
    rows = _rows(out)
    assert [int(r.split()[1]) for r in rows] == list(range(46))
    between = [sum(1 for ln in lines[a:b] if ln in rows) for a, b in zip(header_at, header_at[1:])]
    assert between == [20, 20]
    assert lines[header_at[1] - 2].startswith("╠")  # the repeated header is framed


@pytest.mark.parametrize("freq, expected", [(1, list(range(13))), (5, [0, 5, 10]), (20, [0])])
def test_print_frequency(freq, expected):
    rows = _rows(_run(_printer(print_frequency=freq), 12))
    assert [int(r.split()[1]) for r in rows] == expected


def test_header_repeat_counts_printed_rows_only():
    rows_and_headers = _run(_printer(print_frequency=3), 100).splitlines()
    assert sum(map(_is_names_line, rows_and_headers)) == 2  # 34 printed rows: one repeat


def test_every_frame_line_has_the_table_width():
    for n_ineq, n_eq, kw in [(2, 0, {}), (0, 0, {}), (1, 3, {"print_width": 23}), (0, 2, {"print_width": 9}),
                             (1, 0, {"maxit": 10 ** 7, "ngrad": 123456, "linesearch_reattempts": 5000})]:
        pr = _printer(n_ineq, n_eq, quadprog_info_msg=True, **kw)
        out = _run(pr, 25, stat=2e-3, n_qp=3)
        table = [ln for ln in out.splitlines() if ln and ln[0] in "╔╠║╚"]
        assert table and all(len(ln) == pr.total_width for ln in table), (n_ineq, n_eq, kw)


def test_column_widths_follow_the_options():
    pr = _printer(maxit=123456, linesearch_reattempts=2000, ngrad=99999, print_width=20,
                  max_fallback_level=4, max_random_attempts=1000)
    out = _run(pr, 1)
    names = next(ln for ln in out.splitlines() if _is_names_line(ln))
    cells = [c.strip("║│ ") for c in re.split(r" [║│] ", names)]
    widths = [len(c) for c in re.split(r" [║│] ", names.strip("║"))]
    assert cells[:3] == ["Iter", "Mu", "Value"]
    # Iter: digits(maxit)=6; Mu 8; Value 20; Objective 20; Ineq 8; Eq 4 (no equalities);
    # SD 1+digits(1000)=5; Evals digits(50*2001)=6; t 8; Grads digits(99999+1)=6; Value 10
    assert widths == [6 + 1, 8, 20, 20, 8, 4, 5, 6, 8, 6, 10 + 1]


def test_unconstrained_layout():
    pr = _printer(0, 0)
    pr.start()
    pr.iteration(_state(0, _point(3.0)))
    pr.iteration(_state(1, _point(2.0), alpha=1.0, level=2))
    out = pr.file.getvalue()
    assert "Penalty Fn" in out and "Violation" in out and "Total Violation" not in out
    row = _rows(out)[1]
    cells = [c.strip() for c in re.split(r"[║│]", row)[1:-1]]
    assert cells == ["1", "-", "-", "2.00000000000", "-", "-", "QN", "1", "1.000000", "1", "1.000000"]


def test_iteration_zero_row():
    pr = _printer(1, 1)
    pr.start()
    pr.iteration(_state(0, _point(-2.0, mu=10.0, tvi=3.0, tve=1e-7)))
    cells = [c.strip() for c in re.split(r"[║│]", _rows(pr.file.getvalue())[0])[1:-1]]
    assert cells == ["0", "10.00000", "-16.9999999000", "-2.00000000000", "3.000000", "1.00e-07",
                     "-", "1", "0.000000", "1", "1.000000"]


def test_stationarity_suffix_only_when_several_qps():
    pr = _printer()
    pr.start()
    for k, n_qp in enumerate([0, 1, 2, 12]):
        pr.iteration(_state(k, _point(1.0), stat=0.25, n_qp=n_qp, level=0))
    stats = [r.rstrip("║ ").rsplit("│", 1)[1].strip() for r in _rows(pr.file.getvalue())]
    assert stats == ["0.250000", "0.250000", "0.250000:2", "0.250000:12"]


def test_ascii_mode():
    pr = _printer(2, 1, print_ascii=True, quadprog_info_msg=True)
    out = _run(pr, 3)
    assert out.isascii()
    table = [ln for ln in out.splitlines() if ln and ln[0] in "+|"]
    assert all(len(ln) == pr.total_width for ln in table)
    assert "║" not in out and "│" not in out
    assert _rows(out) and all(r.count("|") == 12 for r in _rows(out))


def test_orange_only_on_a_tty():
    def states():
        return [_state(0, _point(1.0)), _state(1, _point(1.0), level=0, n_qp=1),
                _state(2, _point(1.0), level=1, n_qp=2), _state(3, _point(1.0), level=3, n_qp=1)]

    outs = {}
    for name, file, orange in [("tty", _TTY(), True), ("plain", io.StringIO(), True),
                               ("tty_off", _TTY(), False)]:
        pr = _printer(1, 0, file=file, print_use_orange=orange)
        pr.start()
        for s in states():
            pr.iteration(s)
        outs[name] = file.getvalue()
    assert "\x1b[" not in outs["plain"] and "\x1b[" not in outs["tty_off"]
    rows = _rows(ANSI.sub("", outs["tty"]))
    coloured = [ln for ln in outs["tty"].splitlines() if "\x1b[" in ln]
    assert len(coloured) == 2  # iteration 2 (SI and :2) and iteration 3 (GD)
    assert coloured[0].count("\x1b[38;5;208m") == 2 and coloured[1].count("\x1b[38;5;208m") == 1
    assert ANSI.sub("", outs["tty"]) == outs["plain"] and len(rows) == 4


def test_orange_for_unconstrained_only_above_quasi_newton():
    pr = _printer(0, 0, file=_TTY())
    pr.start()
    for k, level in enumerate([0, 2, 3, 4]):
        pr.iteration(_state(k, _point(1.0), level=level, n_random=1))
    coloured = [ln for ln in pr.file.getvalue().splitlines() if "\x1b[" in ln]
    assert len(coloured) == 2 and "GD" in coloured[0] and "R1" in coloured[1]


@pytest.mark.parametrize("print_level, level, shown", [(1, 2, False), (2, 2, True), (2, 3, False),
                                                       (3, 3, True), (3, 2, True)])
def test_notice_levels(print_level, level, shown):
    pr = _printer(print_level=print_level)
    pr.start()
    pr.notice("BFGS update skipped at iteration 4: s'y <= 0", level=level)
    out = pr.file.getvalue()
    assert ("BFGS update skipped" in out) is shown
    if shown:
        line = next(ln for ln in out.splitlines() if "BFGS update skipped" in ln)
        assert line.startswith("║ ") and line.endswith(" ║") and len(line) == pr.total_width


def test_long_notice_wraps_inside_the_frame():
    pr = _printer(print_level=2)
    pr.start()
    pr.notice("word " * 80)
    lines = [ln for ln in pr.file.getvalue().splitlines() if "word" in ln]
    assert len(lines) >= 3 and all(len(ln) == pr.total_width for ln in lines)


def test_start_notices():
    pr = _printer(quadprog_info_msg=True, limited_mem_size=7)
    pr.start(prescaling_notice="Gradient norms at x0 are large.", qp_solver_name="clarabel")
    out = pr.file.getvalue()
    assert out.startswith("\n")
    assert "QP solver: clarabel." in out and "Gradient norms at x0 are large." in out
    assert "limited_mem_size = 7" in out
    assert "BFGS-SQP (a re-implementation of GRANSO 1.6.4's method)" in out
    assert "Variables: 3    inequality constraints: 2    equality constraints: 0" in out
    pr = _printer(quadprog_info_msg=False, prescaling_info_msg=False)
    pr.start(prescaling_notice="Gradient norms at x0 are large.", qp_solver_name="clarabel")
    out = pr.file.getvalue()
    assert "clarabel" not in out and "Gradient norms" not in out and "Limited-memory" not in out


@pytest.mark.parametrize("rate, warned", [(0.0, False), (1.0, False), (1.01, True), (NAN, False),
                                          (100.0, True)])
def test_qp_failure_warning(rate, warned):
    pr = _printer()
    pr.start()
    pr.finish(_result(_rec(1.0), rate=rate))
    assert ("QP solves failed" in pr.file.getvalue()) is warned


def test_end_rows_and_summary():
    pr = _printer(1, 1)
    pr.start()
    pr.iteration(_state(0, _point(1.0)))
    pr.finish(_result(_rec(2.0, tvi=0.5, tve=0.25), None, _rec(3.0), iters=17, fn_evals=42,
                      code=TerminationCode.LINESEARCH_BRACKET_INFEASIBLE))
    lines = pr.file.getvalue().splitlines()
    labels = [re.split(r"[║│]", ln)[1].strip() for ln in lines if ln.startswith("║ ")
              and re.split(r"[║│]", ln)[1].strip() in ("F", "B", "MF")]
    assert labels == ["F", "MF"]  # no best point: no B row
    f_row = next(ln for ln in lines if re.split(r"[║│]", ln)[1:2] == ["    F "])
    cells = [c.strip() for c in re.split(r"[║│]", f_row)[1:-1]]
    assert cells == ["F", "", "", "2.00000000000", "0.500000", "0.250000", "", "", "", "", ""]
    assert lines[-1].startswith("Termination (code 7): ")
    assert "Iterations:           17" in lines and "Function evaluations: 42" in lines
    assert lines[-4].startswith("╚")


def test_unscaled_rows():
    pr = _printer()
    pr.start()
    res = dataclasses_replace(_result(_rec(0.5), _rec(0.5), _rec(0.5), unscaled=_rec(50.0)),
                              best_unscaled=_rec(50.0), most_feasible_unscaled=_rec(60.0))
    pr.finish(res)
    out = pr.file.getvalue()
    assert "Pre-scaling was applied" in out
    after = out.split("Pre-scaling was applied", 1)[1]
    assert " 50.0000000000 " in after and " 60.0000000000 " in after
    assert sum(1 for ln in out.splitlines() if re.match(r"^║\s+(F|B|MF) ║", ln)) == 6


def test_finish_without_start_still_frames_the_rows():
    pr = _printer()
    pr.finish(_result(_rec(1.0)))
    out = pr.file.getvalue()
    assert out.startswith("╔") and "Iter" in out and re.search(r"^║\s+F ║", out, re.M)


def dataclasses_replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)
