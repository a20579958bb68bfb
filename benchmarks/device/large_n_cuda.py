"""Time per iteration of the large-n Hessian paths on torch CUDA against torch CPU (device check).

The L-BFGS benchmark problem (``benchmarks/problems.py``'s ``l1_two_ineq``) with L-BFGS (10
pairs, compact form) at n = 1e6 and with full BFGS (in-place update) at n = 8000, each for a
few iterations on ``cuda`` and on ``cpu`` in the same process; medians of per-iteration wall
times from the callback (iteration 0 excluded), final f of both devices.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

# appended, not prepended: an installed ncvx_ref (the device check's /tmp/site) comes first
sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run(n: int, device: str, maxit: int, limited_mem_size: int):
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

    r = ncvx_ref.solve(lambda x: L1.evaluate(prep, x), x0, maxit=maxit, print_level=0,
                       limited_mem_size=limited_mem_size, callback=callback)
    dt = np.diff(stamps)[1:]
    return statistics.median(dt) * 1e3, float(r.final.f), r.iters


def main() -> None:
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies both sizes (smoke runs)")
    a = ap.parse_args()
    devices = a.devices.split(",")
    torch.set_num_threads(1)
    for label, n, maxit, mem in (("L-BFGS (10 pairs)", 1_000_000, 15, 10),
                                 ("full BFGS", 8000, 8, 0)):
        n = max(10, int(n * a.scale))
        rows = {dev: run(n, dev, maxit, mem) for dev in devices}
        print(f"{label}, n = {n}: " + "; ".join(
            f"{dev} {ms:.2f} ms/iter, {it} iterations, final f {f:.10g}"
            for dev, (ms, f, it) in rows.items()))
        if "cuda" in rows and "cpu" in rows:
            print(f"  cpu (1 thread) / cuda: {rows['cpu'][0] / rows['cuda'][0]:.1f}x")


if __name__ == "__main__":
    main()
