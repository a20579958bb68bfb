"""Measuring tools: one-thread pinning, a counting/timing wrapper for user functions, memory.

Overhead is defined as wall time minus the time spent inside the user's function and its
gradients (:class:`TimedFunction` measures the latter around every call a solver makes).
Peak memory is the process's peak resident set size (``ru_maxrss``), which is why every
measured run lives in a fresh subprocess: peaks of different runs never mix.
"""
from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable, List

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def one_thread_env(base: dict | None = None) -> dict:
    """A copy of the environment with every BLAS/OpenMP thread count pinned to 1."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = "1"
    return env


def pin_threads() -> None:
    """Pin this process to one thread: env vars (effective only before NumPy loads), torch."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    import sys
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class TimedFunction:
    """Wraps ``fn``: counts calls and accumulates the wall time spent inside it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1


class Trace:
    """Per-iteration (seconds since start, f, violation), with the recording cost excluded.

    A solver's callback calls :meth:`record`; the time the callback itself takes (including
    any evaluation it makes to learn f) is subtracted from later timestamps.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.excluded = 0.0
        self.points: List[tuple] = []

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.excluded = 0.0
        self.points = []

    def record(self, f_and_tv: Callable[[], tuple]) -> None:
        t_in = time.perf_counter()
        f, tv = f_and_tv()
        self.points.append((t_in - self.t0 - self.excluded, float(f), float(tv)))
        self.excluded += time.perf_counter() - t_in


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(values: List[float]) -> float:
    v = sorted(values)
    m = len(v) // 2
    return v[m] if len(v) % 2 else 0.5 * (v[m - 1] + v[m])
