"""GRANSO-style console output: start-up notices, the iteration table, the end-of-run summary.

Layout rules follow ALGORITHM.md §18.2–18.5 (columns, widths, number format, group labels,
bars, header repeats, ``print_frequency``, direction labels); the wording is ncvx_ref's own.
The printer only formats: the solver core calls :meth:`IterationPrinter.start` once,
:meth:`IterationPrinter.iteration` at iteration 0 and after every accepted step,
:meth:`IterationPrinter.notice` for ``print_level >= 2`` messages, and
:meth:`IterationPrinter.finish` with the :class:`~ncvx_ref.result.Result`.
"""
from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, TextIO, Tuple

from ._version import __version__
from .options import Options

__all__ = ["IterationPrinter", "format_number", "format_nonnegative", "direction_label"]

_ORANGE = "\x1b[38;5;208m"
_RESET = "\x1b[0m"
_HEADER_EVERY = 20  # iteration rows between two column headers (§18.3)


# -- number format (§18.3) ------------------------------------------------------------------------

def format_number(x: float, width: int = 14) -> str:
    """``x`` in exactly ``width`` characters (9 <= width <= 23): a sign character, then ``width-1``.

    Zero prints as ``0.000…``; ±inf and NaN as ``Inf``/``-Inf``/``NaN`` left-aligned; if
    ``|x| >= 1e100`` or ``|x| < 1e-99`` exponent format with ``width-8`` decimals; else if the
    integer part has more than ``width-3`` digits or ``|x| < 1e-3`` exponent format with
    ``width-7`` decimals; else fixed format with ``width-2-(integer digits)`` decimals, cut to
    ``width-1`` characters (a rounding carry can add one digit).
    """
    if isinstance(width, bool) or not isinstance(width, int) or not 9 <= width <= 23:
        raise ValueError(f"width must be an integer in 9..23 (print_width's range), got {width!r}.")
    return _format(x, width)


def format_nonnegative(x: float) -> str:
    """A nonnegative quantity (μ, t, violations, stationarity) in 8 characters: width 9, no sign.

    A negative value (which these columns should never hold) keeps its minus sign and still
    takes 8 characters, so the table stays aligned and nothing is hidden.
    """
    x = float(x)
    if x < 0:
        return _format(x, 8)
    return _format(x, 9)[1:]


def _format(x: float, w: int) -> str:
    x = float(x)
    if math.isnan(x):
        return " NaN".ljust(w)
    if math.isinf(x):
        return ("-Inf" if x < 0 else " Inf").ljust(w)
    if x == 0:
        return " 0." + "0" * (w - 3)
    sign = "-" if x < 0 else " "
    a = abs(x)
    if a >= 1e100 or a < 1e-99:
        body = f"{a:.{w - 8}e}"
    else:
        int_digits = len(str(int(a))) if a >= 1 else 1
        if int_digits > w - 3 or a < 1e-3:
            body = f"{a:.{w - 7}e}"
            if len(body) > w - 1:  # 9.99…e+99 rounded up to a three-digit exponent
                body = f"{a:.{w - 8}e}"
        else:
            body = f"{a:.{w - 2 - int_digits}f}"[: w - 1]
    # An exponent that rounding shortens (9.99e-100 -> 1.0e-99) leaves a character free.
    return (sign + body).ljust(w)


def direction_label(fallback_level: int, n_random: int = 0, width: int = 2) -> str:
    """The ``SD`` entry: S, SI, QN, GD, or R followed by the random-attempt count, zero-padded."""
    labels = {0: "S", 1: "SI", 2: "QN", 3: "GD"}
    if fallback_level in labels:
        return labels[fallback_level]
    return "R" + str(int(n_random)).zfill(max(width - 1, 1))


# -- table geometry -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Group:
    label: str
    names: Tuple[str, ...]
    widths: Tuple[int, ...]

    @property
    def width(self) -> int:
        return sum(self.widths) + 3 * (len(self.widths) - 1)


@dataclass(frozen=True)
class _Glyphs:
    v2: str  # bar between groups (and the outer frame)
    v1: str  # bar between columns of one group
    h: str  # horizontal fill
    corners: Tuple[str, str, str, str, str, str]  # top-left, top-right, mid-left, mid-right, bottom-left, bottom-right
    top2: str  # group junction on a line with only the groups below it
    mid2: str  # group junction with groups above and below
    bot2: str  # group junction with groups above only
    mid1: str  # column junction with columns above and below
    up1: str  # column junction with columns above only
    down1: str  # column junction with columns below only


_UNICODE = _Glyphs("║", "│", "═", ("╔", "╗", "╠", "╣", "╚", "╝"), "╦", "╬", "╩", "╪", "╧", "╤")
_ASCII = _Glyphs("|", "|", "-", ("+", "+", "+", "+", "+", "+"), "+", "+", "+", "+", "+", "+")


def _digits(k: int) -> int:
    return len(str(abs(int(k))))


class IterationPrinter:
    """Prints GRANSO's iteration table for one run (nothing at ``print_level = 0``).

    ``n``, ``n_ineq``, ``n_eq`` are the problem sizes; ``file`` defaults to ``sys.stdout``
    (looked up at each write, so redirections made after construction are honoured).
    """

    def __init__(self, options: Options, n: int, n_ineq: int, n_eq: int,
                 file: Optional[TextIO] = None) -> None:
        self.options = options
        self.n, self.n_ineq, self.n_eq = int(n), int(n_ineq), int(n_eq)
        self.constrained = self.n_ineq + self.n_eq > 0
        self._file = file
        self._g = _ASCII if options.print_ascii else _UNICODE
        self._rows_since_header = 0
        self._open = False
        pw = options.print_width
        level4 = max(options.min_fallback_level, options.max_fallback_level) >= 4
        self._sd_width = max(2, 1 + _digits(options.max_random_attempts)) if level4 else 2
        c = self.constrained
        self._groups = (
            _Group("", ("Iter",), (max(_digits(options.maxit), 4),)),
            _Group("Penalty Function" if c else "Penalty Fn", ("Mu", "Value"),
                   (8 if c else 2, pw if c else 5)),
            _Group("", ("Objective",), (pw,)),
            _Group("Total Violation" if c else "Violation", ("Ineq", "Eq"),
                   (8 if self.n_ineq else 4, 8 if self.n_eq else 4)),
            _Group("Line Search", ("SD", "Evals", "t"),
                   (self._sd_width, max(_digits(50 * (options.linesearch_reattempts + 1)), 5), 8)),
            _Group("Stationarity", ("Grads", "Value"),
                   (max(_digits(options.resolved_ngrad(self.n) + 1), 5), 10)),
        )
        self.total_width = sum(g.width + 2 for g in self._groups) + len(self._groups) + 1
        self._colour = False

    # -- output plumbing --------------------------------------------------------------------
    @property
    def file(self) -> TextIO:
        return self._file if self._file is not None else sys.stdout

    @property
    def enabled(self) -> bool:
        return self.options.print_level >= 1

    def _write(self, line: str = "") -> None:
        self.file.write(line + "\n")

    def _use_colour(self) -> bool:
        if not self.options.print_use_orange:
            return False
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty()) if callable(isatty) else False
        except (ValueError, OSError):  # closed stream
            return False

    def _highlight(self, text: str, on: bool) -> str:
        return f"{_ORANGE}{text}{_RESET}" if on and self._colour else text

    # -- lines ------------------------------------------------------------------------------
    def _rule(self, left: str, right: str, j2: str, j1: Optional[str]) -> str:
        g = self._g
        segs = []
        for grp in self._groups:
            parts = [g.h * (w + 2) for w in grp.widths]
            segs.append((j1 if j1 is not None else g.h).join(parts))
        return left + j2.join(segs) + right

    def _line(self, cells_by_group: Sequence[Sequence[str]]) -> str:
        g = self._g
        inner = f" {g.v2} ".join(f" {g.v1} ".join(cells) for cells in cells_by_group)
        return f"{g.v2} {inner} {g.v2}"

    def _text_lines(self, text: str) -> List[str]:
        """Free text as full-width rows of the frame (wrapped at the table's width)."""
        inner = self.total_width - 4
        out = []
        for para in text.split("\n"):
            for piece in textwrap.wrap(para, inner) or [""]:
                out.append(f"{self._g.v2} {piece.ljust(inner)} {self._g.v2}")
        return out

    def _box(self, text: str) -> None:
        g, c = self._g, self._g.corners
        self._write(c[0] + g.h * (self.total_width - 2) + c[1])
        for line in self._text_lines(text):
            self._write(line)
        self._write(c[4] + g.h * (self.total_width - 2) + c[5])

    def _header(self) -> None:
        """Group labels and column names, then the rule that opens the rows."""
        g, c = self._g, self._g.corners
        self._write(self._line([[grp.label.ljust(grp.width)[: grp.width]] for grp in self._groups]))
        self._write(self._line([[name.center(w) for name, w in zip(grp.names, grp.widths)]
                                for grp in self._groups]))
        self._write(self._rule(c[2], c[3], g.mid2, g.mid1))
        self._rows_since_header = 0

    # -- public API -------------------------------------------------------------------------
    def start(self, prescaling_notice: Optional[str] = None, qp_solver_name: Optional[str] = None) -> None:
        """Start-up output (§18.2): QP-solver notice, pre-scaling notice, banner, column header."""
        if not self.enabled:
            return
        self._colour = self._use_colour()
        opts = self.options
        g, c = self._g, self._g.corners
        self._write()
        if opts.quadprog_info_msg:
            solver = qp_solver_name or "the default QP solver"
            self._box(
                f"QP solver: {solver}.\n"
                f"ncvx_ref solves its steering and stationarity subproblems (small convex QPs with "
                f"box constraints) with {solver}. GRANSO 1.6.4 calls MATLAB's quadprog instead, so "
                f"iterates can differ where a QP has more than one solution. Pass another solver "
                f"with the qp_solver argument; hide this notice with quadprog_info_msg=False.")
        if prescaling_notice and opts.prescaling_info_msg:
            self._box(prescaling_notice)
        self._write(c[0] + g.h * (self.total_width - 2) + c[1])
        banner = (f"ncvx_ref {__version__}: BFGS-SQP (a re-implementation of GRANSO 1.6.4's method)\n"
                  f"MIT licence. Method: Curtis, Mitchell & Overton, Optimization Methods and "
                  f"Software 32(1), 2017.\n"
                  f"Variables: {self.n}    inequality constraints: {self.n_ineq}    "
                  f"equality constraints: {self.n_eq}")
        if opts.limited_mem_size > 0:
            banner += (f"\nLimited-memory BFGS is on (limited_mem_size = {opts.limited_mem_size}); "
                       f"on nonsmooth problems full-memory BFGS is usually more reliable.")
        for line in self._text_lines(banner):
            self._write(line)
        self._write(self._rule(c[2], c[3], g.top2, None))
        self._header()
        self._open = True

    def iteration(self, state: Any) -> None:
        """One table row for iteration 0 and every ``print_frequency``-th accepted iteration."""
        if not self.enabled:
            return
        k = int(state.iteration)
        if k != 0 and k % self.options.print_frequency != 0:
            return
        if self._rows_since_header >= _HEADER_EVERY:
            g, c = self._g, self._g.corners
            self._write(self._rule(c[2], c[3], g.mid2, g.up1))
            self._header()
        self._write(self._line(self._row_cells(state)))
        self._rows_since_header += 1

    def notice(self, text: str, level: int = 2) -> None:
        """A message shown when ``print_level >= level`` (BFGS / line-search notices: 2, QP errors: 3)."""
        if self.options.print_level < max(level, 1):
            return
        if self._open:
            for line in self._text_lines(text):
                self._write(line)
        else:
            self._write(text)

    def finish(self, result: Any) -> None:
        """End-of-run output (§18.5): F / B / MF rows, unscaled rows, counts, message, QP warning."""
        if not self.enabled:
            return
        g, c = self._g, self._g.corners
        if not self._open:  # start() was not called: open a frame for the summary rows
            self._write(self._rule(c[0], c[1], g.top2, None))
            self._header()
        else:
            self._write(self._rule(c[2], c[3], g.mid2, g.mid1))
        for row in self._point_rows(result.final, result.best, result.most_feasible):
            self._write(row)
        unscaled = getattr(result, "final_unscaled", None)
        if unscaled is not None:
            self._write(self._rule(c[2], c[3], g.bot2, g.up1))
            for line in self._text_lines("Pre-scaling was applied: the rows above are for the scaled "
                                         "problem, the rows below for the original functions."):
                self._write(line)
            self._write(self._rule(c[2], c[3], g.top2, g.down1))
            for row in self._point_rows(unscaled, getattr(result, "best_unscaled", None),
                                        getattr(result, "most_feasible_unscaled", None)):
                self._write(row)
        self._write(self._rule(c[4], c[5], g.bot2, g.up1))
        self._open = False
        self._write(f"Iterations:           {result.iters}")
        self._write(f"Function evaluations: {result.fn_evals}")
        code = getattr(result, "termination_code", None)
        head = f"Termination (code {int(code)}): " if code is not None else "Termination: "
        self._write(textwrap.fill(head + str(result.message), self.total_width,
                                  subsequent_indent="  "))
        rate = result.quadprog_failure_rate
        if rate is not None and not math.isnan(float(rate)) and float(rate) > 1.0:
            self._write(textwrap.fill(
                f"Warning: {float(rate):.1f}% of the QP solves failed and were replaced by "
                f"fallback directions or skipped samples. Results may be less reliable; try "
                f"another qp_solver or check the scaling of the problem.", self.total_width,
                subsequent_indent="  "))

    # -- row contents -----------------------------------------------------------------------
    def _row_cells(self, state: Any) -> List[List[str]]:
        opts, pt = self.options, state.point
        w_iter = self._groups[0].widths
        pw = opts.print_width
        k = int(state.iteration)
        c = self.constrained
        mu = format_nonnegative(pt.mu) if c else "-".center(2)
        pval = _format(pt.p, pw) if c else "-".center(5)
        tvi = format_nonnegative(pt.tvi) if self.n_ineq else "-".center(4)
        tve = format_nonnegative(pt.tve) if self.n_eq else "-".center(4)
        level = int(state.fallback_level)
        if k == 0:
            sd, sd_hot = "-", False
        else:
            sd = direction_label(level, getattr(state, "n_random", 0), self._sd_width)
            sd_hot = level > (0 if c else 2)
        ls = self._groups[4].widths
        n_qp = int(getattr(state, "n_qp", 0) or 0)
        stat = format_nonnegative(state.stat_val) + (f":{n_qp}" if n_qp > 1 else "  ")
        return [
            [str(k).rjust(w_iter[0])],
            [mu, pval],
            [_format(pt.f, pw)],
            [tvi, tve],
            [self._highlight(sd.ljust(ls[0]), sd_hot), str(int(state.ls_evals)).rjust(ls[1]),
             format_nonnegative(state.alpha)],
            [str(int(state.n_grads)).rjust(self._groups[5].widths[0]),
             self._highlight(stat.ljust(10), n_qp > 1)],
        ]

    def _point_rows(self, final: Any, best: Any, most_feasible: Any) -> List[str]:
        rows = []
        for label, rec in (("F", final), ("B", best), ("MF", most_feasible)):
            if rec is None:
                continue
            blank = [[" " * w for w in grp.widths] for grp in self._groups]
            blank[0] = [label.rjust(self._groups[0].widths[0])]
            blank[2] = [_format(rec.f, self.options.print_width)]
            blank[3] = [format_nonnegative(rec.tvi) if self.n_ineq else "-".center(4),
                        format_nonnegative(rec.tve) if self.n_eq else "-".center(4)]
            rows.append(self._line(blank))
        return rows
