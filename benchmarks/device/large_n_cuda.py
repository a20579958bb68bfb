"""Time per iteration of the large-n Hessian paths on torch CUDA against the CPU (device check).

On ``cpu`` the tensors run the core on NumPy views of their memory (``ncvx_ref/host_views.py``),
so the CPU figures are the NumPy core's.

The L-BFGS benchmark problem (``benchmarks/problems.py``'s ``l1_two_ineq``) with L-BFGS (10
pairs, compact form) at n = 1e6 and with full BFGS at n = 8000, each for a few iterations on
``cuda`` and on ``cpu`` in the same process; medians of per-iteration wall times from the
callback (iteration 0 excluded), the whole solve's wall time (with ``H_final`` read, so
formed, inside it), final f of both devices.  Full BFGS runs twice: as it runs by default (its first
updates kept as rank-2 terms, ``ncvx_ref/bfgs_factored.py``: 8 iterations never form the
matrix) and with the ``n x n`` matrix from the first update (updated in place).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

# appended, not prepended: an installed ncvx_ref (the device check's /tmp/site) comes first
sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run(n: int, device: str, maxit: int, limited_mem_size: int, matrix: bool = False):
    import array_api_compat.torch as xpt
    import torch

    import ncvx_ref
    from benchmarks.problems import L1

    data = L1.make({"n": n}, np.random.default_rng(3))
    prep = L1.prepare(data, xpt)
    prep = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in prep.items()}
    x0 = torch.from_numpy(data["x0"].copy()).to(device)
    stamps = []

    def callback(state) -> bool:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return False

    import ncvx_ref.hessian as hessian

    capacity = hessian.term_capacity
    if matrix:
        hessian.term_capacity = lambda n: 0  # the matrix from the first update on
    try:
        t0 = time.perf_counter()
        r = ncvx_ref.solve(lambda x: L1.evaluate(prep, x), x0, maxit=maxit, print_level=0,
                           limited_mem_size=limited_mem_size, callback=callback)
        r.H_final  # noqa: B018 - formed on first read after a run in rank-2 terms: timed here
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        hessian.term_capacity = capacity
    dt = np.diff(stamps)[1:]
    return statistics.median(dt) * 1e3, float(r.final.f), r.iters, wall


def main() -> None:
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies both sizes (smoke runs)")
    a = ap.parse_args()
    devices = a.devices.split(",")
    torch.set_num_threads(1)
    for label, n, maxit, mem, matrix in (("L-BFGS (10 pairs)", 1_000_000, 15, 10, False),
                                         ("full BFGS, rank-2 terms", 8000, 8, 0, False),
                                         ("full BFGS, n x n matrix in place", 8000, 8, 0, True)):
        n = max(10, int(n * a.scale))
        rows = {dev: run(n, dev, maxit, mem, matrix) for dev in devices}
        print(f"{label}, n = {n}: " + "; ".join(
            f"{dev} {ms:.2f} ms/iter, solve {wall:.2f} s, {it} iterations, final f {f:.10g}"
            for dev, (ms, f, it, wall) in rows.items()))
        if "cuda" in rows and "cpu" in rows:
            print(f"  cpu (1 thread) / cuda: {rows['cpu'][0] / rows['cuda'][0]:.1f}x")


if __name__ == "__main__":
    main()
