"""Run ncvx_ref on one instance (inside a worker subprocess); the same contract as the peers.

``run(inst, fun, x0, options, trace)`` calls ``fun`` (a :class:`timing.TimedFunction` around the
instance's evaluation) through ``ncvx_ref.solve`` and returns the solver's own counts, the
final iterate as NumPy and the wall time of the solve call alone.
"""
from __future__ import annotations

import time

import numpy as np


def run(inst, fun, x0, options: dict, trace=None) -> dict:
    import ncvx_ref
    callback = None
    if trace is not None:
        def callback(state):
            trace.record(lambda: (state.point.f, state.point.tv))
            return False
    opts = dict(options)
    qp_solver = opts.pop("qp_solver", None)
    blocks = opts.pop("H0_diagonal", None)
    if blocks is not None:
        from benchmarks.problems import diagonal_from_blocks
        opts["H0"] = np.diag(diagonal_from_blocks(blocks))
    if trace is not None:
        trace.start()
    t = time.perf_counter()
    res = ncvx_ref.solve(fun, x0, callback=callback, qp_solver=qp_solver, **opts)
    wall = time.perf_counter() - t
    return {"wall": wall, "iters": int(res.iters), "fn_evals": int(res.fn_evals),
            "termination": int(res.termination_code), "message": str(res.message),
            "x_final": np.asarray(ncvx_ref.backend.to_host(res.final.x), dtype=np.float64)}
