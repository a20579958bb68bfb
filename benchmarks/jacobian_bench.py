"""Benchmark: constraint Jacobians through the torch and JAX adapters, and memory over a long run.

1. **Jacobian speed.**  ``m`` constraints (default 1,000) in ``n`` variables (default 10,000):
   one evaluation (values, objective gradient and the ``n x m`` constraint Jacobian) through

   - ``torch-loop``: the torch adapter's ``mode="loop"``, i.e. one forward pass and then one
     ``torch.autograd.grad`` call per output (what a loop of backward passes costs);
   - ``torch-jacrev``: the torch adapter's reverse mode before (``torch.func.jacrev`` of the
     stacked ``z = (f, c)``: all ``1 + m`` cotangents pushed through every op, ``f``'s too);
   - ``torch``: the torch adapter's reverse mode (one forward under ``torch.func.vjp``; ``f``'s
     gradient by one plain backward; the ``m`` constraint rows by one backward ``vmap``-ped
     over the cotangent basis, in which ``f``'s part of the graph stays unbatched);
   - ``jax``: the JAX adapter (jit-compiled ``jax.jacrev``; compile time reported separately);
   - ``dense_bound``: ``m`` matrix-vector products with ``A`` against one
     ``(m x m) @ (m x n)`` product, and the loop's time over that product's.

   The variants alternate rep by rep (the loop in half the reps); wall-clock and process-CPU
   medians are reported.  On a shared machine compare the CPU times: the wall clock includes
   waiting for a core, which hits the variants unevenly (a run that timed JAX after torch
   read JAX 13.2x faster than the loop by the wall clock, 5.3x by CPU time).  ``--threads 1``
   gives torch and XLA (``XLA_FLAGS``) one thread each: both sides work on one core.

   Target (issue 5): each vectorized adapter >= 10x faster than the loop.

   **Measured** (2-core AMD EPYC VM shared with other jobs, torch 2.13 CPU (MKL), jax 0.10.2
   CPU, float64, ``--threads 1``, medians of 7 alternating reps, loop 3; CPU time, three runs):
   loop 5.07-5.67 s; ``torch-jacrev`` 1.22-1.34 s (3.8-4.6x); ``torch`` 0.96-1.02 s
   (5.0-5.9x, 17-24% less than ``torch-jacrev`` in each run); ``jax`` 0.86-0.97 s
   (5.2-6.6x).  **Not met**, by either adapter.

   **Two threads** (``--threads 2``: the machine's two cores; the loop's matrix-vector products
   are memory-bound and gain nothing from the second core, the vectorized products do), wall
   clock, two runs: loop 4.5-5.3 s; ``torch`` 0.56-0.57 s (7.9-9.4x); ``jax`` 0.45-0.48 s
   (**10.1-11.0x**: met by JAX on this machine with both cores); CPU-time ratios 4.1-5.8x.

   **What bounds it.**  Any vectorized reverse pass pushes the ``m x m`` cotangent basis
   through the backward of ``A @ x``: one dense ``(m x m) @ (m x n)`` product, ``2 m^2 n =
   2e10`` flops, compute-bound (0.53-0.59 s on one core here), where the loop does ``m``
   matrix-vector products, each memory-bound (reading ``A``'s 80 MB: ~4 ms).  Their ratio is
   ``4 x flop rate / memory bandwidth`` (bytes/s) in float64: 6.7-7.7x on this machine, and
   the loop over the product alone is 8.8-9.6x: a pass that did *nothing but* the product
   would still miss 10x.  What the adapters add on top of the product: torch ~0.4 s (the vmapped
   backward's elementwise passes over ``(m, n)`` arrays: ``||V_j||^2``'s backward, the
   gradient accumulation; torch's batched matrix-vector backward returns an ``(n, m)``-major
   array, so the adds mix layouts), JAX ~0.3-0.4 s (XLA fuses more).  A machine with a higher
   flop-to-bandwidth ratio (several cores on the product, a GPU) moves the bound; a
   structured ``A`` (sparse, low-rank) needs structure-aware differentiation, not ``vmap``.
   ``chunk_size`` (125-500) did not help (thinner products: 1.13 s unchunked vs 1.17-1.31 s);
   ``autograd.grad(..., is_grads_batched=True)`` is much slower here (torch 2.13 batches the
   matrix-vector backward as a ``bmm`` over an expanded ``A``: 93 ms per row).

2. **Memory over a run.**  A 200-iteration solve through each adapter (smaller problem,
   L-BFGS so that the solver's own state is bounded); the resident set size (and, on CUDA,
   ``torch.cuda.memory_allocated``) is sampled after every iteration.  Target: flat, i.e. no
   growth between the first and the last iterations beyond noise.  (JAX compiles each eager
   ``jax.numpy`` op once per array shape and keeps the kernel; the core gives every device
   array one shape for the whole run -- the stationarity QP's gradient matrix is built in
   chunks of min(ngrad, 5) zero-padded samples, the L-BFGS recursion is one jit-compiled
   computation on pairs padded to ``limited_mem_size`` -- so nothing compiles after the first
   iterations.  Measured, n=1000, m=20, ngrad=5: 200 iterations in 13.8 s, RSS 338 -> 464
   (iteration 10) -> 468 MiB (iteration 200); over 400 iterations a ~3.7 MiB/100-iteration
   creep is free glibc heap (``malloc_trim`` returns it).  Before the fix: ~20 MiB steps each
   time the neighbourhood reached a new size, 336 -> 456 -> 548 MiB at iteration 200, 47 s.)

The test function: constraint ``j`` is ``tanh(a_j . x) + 0.5 ||V_j||^2 - 1`` with ``A`` a dense
``m x n`` matrix (a linear layer) and ``V`` the ``m x (n/m)`` block view of ``x``; the objective
is ``0.5 ||x - t||^2 + 0.1 ||x||_1`` (nonsmooth).  Each backward pass of the loop is then a
matrix-vector product with ``A`` plus elementwise work; the vectorized pass does one
matrix-matrix product instead.
Run ``python benchmarks/jacobian_bench.py --help`` for the options;
``--json PATH`` writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def rss_mib() -> float:
    """The resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def make_torch_problem(n: int, m: int, device: str, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    k = n // m
    A = (torch.randn(m, n, generator=g, dtype=dtype) / n ** 0.5).to(device)
    t = torch.randn(n, generator=g, dtype=dtype).to(device)

    def fn(x):
        V = x.reshape(m, k)
        ci = torch.tanh(A @ x) + 0.5 * (V * V).sum(1) - 1.0
        f = 0.5 * torch.sum((x - t) ** 2) + 0.1 * torch.sum(torch.abs(x))
        return f, ci

    return fn, t


def make_jax_problem(n: int, m: int, dtype):
    import jax
    import jax.numpy as jnp

    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    k = n // m
    A = jax.random.normal(key1, (m, n), dtype=dtype) / n ** 0.5
    t = jax.random.normal(key2, (n,), dtype=dtype)

    def fn(x):
        V = x.reshape(m, k)
        ci = jnp.tanh(A @ x) + 0.5 * (V * V).sum(1) - 1.0
        f = 0.5 * jnp.sum((x - t) ** 2) + 0.1 * jnp.sum(jnp.abs(x))
        return f, ci

    return fn, t


def _time(fn, reps: int, sync) -> dict:
    """Wall and process-CPU seconds of ``reps`` calls, and their medians.

    On a shared machine the wall clock includes waiting for a core; the process CPU time (all
    threads) is the work done, which is what the speedups compare when the machine is loaded."""
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(wall), "median_cpu_s": statistics.median(cpu),
            "times_s": wall, "cpu_times_s": cpu}


def dense_bound(n: int, m: int, reps: int, device: str, sync) -> dict:
    """The linear-algebra bound of this benchmark: ``m`` matrix-vector products with the
    ``m x n`` matrix (what the loop must do) against one ``(m x m) @ (m x n)`` product (what
    any vectorized reverse pass does with the cotangent basis)."""
    import torch

    A = torch.randn(m, n, dtype=torch.float64, device=device)
    B = torch.randn(m, m, dtype=torch.float64, device=device)
    v = torch.randn(m, dtype=torch.float64, device=device)
    k = max(1, m // 10)
    gemv = _time(lambda: [v @ A for _ in range(k)], reps, sync)
    gemm = _time(lambda: B @ A, reps, sync)
    out = {"gemm_median_s": gemm["median_s"], "gemm_median_cpu_s": gemm["median_cpu_s"],
           "m_gemv_median_s": gemv["median_s"] * m / k,
           "m_gemv_median_cpu_s": gemv["median_cpu_s"] * m / k}
    out["bound_speedup"] = out["m_gemv_median_cpu_s"] / out["gemm_median_cpu_s"]
    return out


def jacobian_speed(n: int, m: int, reps: int, device: str, frameworks) -> dict:
    """Median times of one evaluation per variant; the variants alternate rep by rep (the loop
    in the first ``reps // 2`` reps only), so that a change in the machine's load hits all."""
    res, calls, checks = {}, {}, {}
    sync = lambda: None  # noqa: E731
    if "torch" in frameworks:
        import torch
        from ncvx_ref.adapters import torch as ta

        if device.startswith("cuda"):
            sync = torch.cuda.synchronize
        fn, t = make_torch_problem(n, m, device, torch.float64)
        xt = (0.1 * t).clone()
        problems = {"torch-loop": ta.Problem(fn, n, mode="loop"),
                    "torch-jacrev": _JacrevProblem(fn, n), "torch": ta.Problem(fn, n, mode="rev")}
        for key, problem in problems.items():
            checks[key] = problem(xt).ci_grad  # first call: output checks and mode resolution
            assert tuple(checks[key].shape) == (n, m)
            calls[key] = (lambda p=problem: p(xt))
        for key in ("torch-jacrev", "torch"):
            res[key] = {"max_abs_diff_vs_loop":
                        float((checks["torch-loop"] - checks[key]).abs().max())}
    if "jax" in frameworks:
        import jax
        import jax.numpy as jnp
        from ncvx_ref.adapters import jax as ja

        ja.enable_x64()
        fn, t = make_jax_problem(n, m, jnp.float64)
        xj = 0.1 * t
        problem = ja.Problem(fn, n)
        t0 = time.perf_counter()
        jax.block_until_ready(problem(xj).ci_grad)
        res["jax"] = {"first_call_incl_compile_s": time.perf_counter() - t0}
        calls["jax"] = lambda: jax.block_until_ready(problem(xj).ci_grad)
    runs = {key: [] for key in calls}
    for rep in range(reps):
        for key, call in calls.items():
            if key != "torch-loop" or rep < max(1, reps // 2):
                runs[key].append(_time(call, 1, sync))
    for key, rs in runs.items():
        wall = [r["times_s"][0] for r in rs]
        cpu = [r["cpu_times_s"][0] for r in rs]
        res.setdefault(key, {}).update(median_s=statistics.median(wall),
                                       median_cpu_s=statistics.median(cpu),
                                       times_s=wall, cpu_times_s=cpu)
    if "torch-loop" in res:
        for k in ("torch-jacrev", "torch", "jax"):
            if k in res:
                res[k]["speedup_vs_torch_loop"] = res["torch-loop"]["median_s"] / res[k]["median_s"]
                res[k]["speedup_vs_torch_loop_cpu"] = (res["torch-loop"]["median_cpu_s"]
                                                       / res[k]["median_cpu_s"])
        bound = res["dense_bound"] = dense_bound(n, m, reps, device, sync)
        # no vectorized reverse pass can beat the loop by more than this: it does the product
        bound["loop_over_gemm_cpu"] = res["torch-loop"]["median_cpu_s"] / bound["gemm_median_cpu_s"]
    return res


class _JacrevProblem:
    """The torch adapter's previous reverse mode, for comparison: ``torch.func.jacrev`` of the
    stacked ``z = (f, c)``, which pushes all ``1 + m`` cotangents through every op."""

    def __init__(self, fn, n):
        from ncvx_ref.adapters import torch as ta

        self.inner = ta.Problem(fn, n, mode="rev")

    def __call__(self, x):
        import torch
        from ncvx_ref.evaluation import Evaluation

        p = self.inner
        if p.groups is None:
            p._probe(x)
        jac, z = torch.func.jacrev(p._stack, has_aux=True)(x)
        return Evaluation(f=z[0], f_grad=jac[0], ci=z[1:], ci_grad=jac[1:].T)


def memory_run(n: int, m: int, iters: int, device: str, frameworks) -> dict:
    res = {}
    opts = dict(print_level=0, maxit=iters, limited_mem_size=10, opt_tol=0.0, ngrad=5)
    for fw in frameworks:
        samples, cuda = [], []
        if fw == "torch":
            import torch
            from ncvx_ref.adapters import torch as ta

            fn, t = make_torch_problem(n, m, device, torch.float64)
            cuda_on = device.startswith("cuda")

            def cb(state):
                samples.append(rss_mib())
                if cuda_on:
                    cuda.append(torch.cuda.memory_allocated() / 2 ** 20)
                return False
            t0 = time.perf_counter()
            sol = ta.solve(fn, (0.1 * t).clone(), callback=cb, **opts)
        else:
            import jax.numpy as jnp
            from ncvx_ref.adapters import jax as ja

            ja.enable_x64()
            fn, t = make_jax_problem(n, m, jnp.float64)

            def cb(state):
                samples.append(rss_mib())
                return False
            t0 = time.perf_counter()
            sol = ja.solve(fn, 0.1 * t, callback=cb, **opts)
        wall = time.perf_counter() - t0
        k = len(samples)
        # the first iterations fill the L-BFGS memory, the gradient cache and the allocators'
        # pools; "flat" is judged on the second half of the run
        entry = {"iterations": sol.result.iters, "termination_code": int(sol.result.termination_code),
                 "wall_s": wall, "rss_mib_every_10": samples[::10] + samples[-1:]}
        if k > 20:
            entry["rss_growth_mib_per_100_iters_second_half"] = (
                (samples[-1] - samples[k // 2]) / (k - 1 - k // 2) * 100)
        if cuda:
            entry["cuda_mib_every_10"] = cuda[::10] + cuda[-1:]
            entry["cuda_growth_mib_per_100_iters_second_half"] = (
                (cuda[-1] - cuda[k // 2]) / max(1, k - 1 - k // 2) * 100)
        res[fw] = entry
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="variables (Jacobian benchmark)")
    ap.add_argument("--m", type=int, default=1_000, help="constraints (Jacobian benchmark)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mem-n", type=int, default=1_000, help="variables (memory run)")
    ap.add_argument("--mem-m", type=int, default=20, help="constraints (memory run)")
    ap.add_argument("--iters", type=int, default=200, help="iterations of the memory run")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--frameworks", default="torch,jax")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for torch and, with 1, for XLA too (0: the frameworks' defaults)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    a = ap.parse_args()
    frameworks = [f for f in a.frameworks.split(",") if f]
    if a.threads == 1:  # before jax is imported; XLA has no other thread-count switch
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    if a.threads and "torch" in frameworks:
        import torch
        torch.set_num_threads(a.threads)
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "device": a.device,
           "threads": a.threads, "n": a.n, "m": a.m}
    out["jacobian"] = jacobian_speed(a.n, a.m, a.reps, a.device, frameworks)
    order = ["torch-loop", "torch-jacrev", "torch", "jax", "dense_bound"]
    for k, v in sorted(out["jacobian"].items(), key=lambda kv: order.index(kv[0])):
        if k == "dense_bound":
            print(f"bound: {a.m} matrix-vector products {v['m_gemv_median_cpu_s'] * 1e3:.1f} ms "
                  f"CPU vs one ({a.m} x {a.m}) @ ({a.m} x {a.n}) product "
                  f"{v['gemm_median_cpu_s'] * 1e3:.1f} ms CPU: {v['bound_speedup']:.1f}x; "
                  f"loop / product: {v['loop_over_gemm_cpu']:.1f}x")
        elif isinstance(v, dict):
            extra = (f"  ({v['speedup_vs_torch_loop']:.1f}x vs loop; CPU time "
                     f"{v['median_cpu_s'] * 1e3:.1f} ms, {v['speedup_vs_torch_loop_cpu']:.1f}x)"
                     if "speedup_vs_torch_loop" in v else
                     f"  (CPU time {v['median_cpu_s'] * 1e3:.1f} ms)")
            print(f"jacobian {a.m} x {a.n} {k:<12} median {v['median_s'] * 1e3:9.1f} ms{extra}")
    if not a.skip_memory:
        out["memory"] = memory_run(a.mem_n, a.mem_m, a.iters, a.device, frameworks)
        for k, v in out["memory"].items():
            rss = v["rss_mib_every_10"]
            print(f"memory {k}: {v['iterations']} iterations in {v['wall_s']:.1f} s, RSS "
                  f"{rss[0]:.1f} -> {rss[len(rss) // 2]:.1f} -> {rss[-1]:.1f} MiB, second-half growth "
                  f"{v.get('rss_growth_mib_per_100_iters_second_half', float('nan')):.2f} MiB/100 "
                  f"iterations")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
