"""The ncvx_ref benchmark suite: `python benchmarks/run.py [--quick|--full]` (docs/benchmarks.md)."""
