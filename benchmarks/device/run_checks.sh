#!/usr/bin/env bash
# Run ON the device machine (the `device` tool's `run`, with carry [".whl"]), from the repo root:
#   bash benchmarks/device/run_checks.sh
# Installs the carried wheels and ncvx_ref into /tmp/site, then runs, each logged to $OUT:
# the gpu-marked tests (CuPy, torch CUDA, JAX GPU), the Jacobian benchmark on CUDA (torch and
# JAX), and the large-n Hessian paths on torch CUDA.  About 1-2 minutes on an H200.
# With --suite, first the whole default test suite on the device's CPU (another CPU, NumPy build
# and BLAS than here: it catches tests that hinge on last-bit rounding), with the GRANSO reference
# set when it was copied to .ref/granso_reference here and .ref is carried too.
set -uo pipefail
SUITE=0
[ "${1:-}" = "--suite" ] && SUITE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/site . || exit 1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, jax, cupy; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('jax', jax.__version__, jax.devices()); print('cupy', cupy.__version__)" | tee -a "$OUT/device.txt"
REPO=$(pwd)
# From /tmp: the package must come from /tmp/site (installed, with ncvx_ref.adapters mapped from
# adapters/), not from the checkout's ncvx_ref/ folder, which `python -m` would put first.
if [ -d "$REPO/.ref/granso_reference" ] && [ ! -e "$REPO/../shared/granso_reference" ]; then
    mkdir -p "$REPO/../shared" && ln -s "$REPO/.ref/granso_reference" "$REPO/../shared/granso_reference"
fi
cd /tmp
if [ "$SUITE" = 1 ]; then
    timeout 300 python3 -m pytest -q -rs -n 8 -p no:cacheprovider -c "$REPO/setup.cfg" \
        --rootdir "$REPO" "$REPO/tests" 2>&1 | tee "$OUT/suite.log"
fi
timeout 240 python3 -m pytest -q -rs -m gpu -p no:cacheprovider -c "$REPO/setup.cfg" \
    --rootdir "$REPO" "$REPO/tests" 2>&1 | tee "$OUT/gpu_tests.log"
timeout 180 python3 "$REPO/benchmarks/jacobian_bench.py" --device cuda --skip-memory --reps 7 \
    --json "$OUT/jacobian_cuda.json" 2>&1 | tee "$OUT/jacobian_cuda.log"
timeout 120 python3 "$REPO/benchmarks/device/large_n_cuda.py" 2>&1 | tee "$OUT/large_n_cuda.log"
