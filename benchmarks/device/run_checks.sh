#!/usr/bin/env bash
# Run ON the device machine (the `device` tool's `run`, with carry [".whl"]), from the repo root:
#   bash benchmarks/device/run_checks.sh
# Installs the carried wheels and ncvx_ref into /tmp/site, then runs, each logged to $OUT:
# the gpu-marked tests (CuPy, torch CUDA, JAX GPU), the Jacobian benchmark on CUDA (torch and
# JAX), and the large-n Hessian paths on torch CUDA.  About 1-2 minutes on an H200.
# Options (any order):
#   --suite        first the whole default suite on the device's CPU (another CPU, NumPy build and
#                  BLAS than here: it catches tests that hinge on last-bit rounding), with the
#                  GRANSO reference set if it was copied to .ref/granso_reference and .ref carried;
#   --conformance  the conformance runner over that reference set, alongside (JSON to $OUT);
#                  again with a NumPy wheel from here when one was put in .np and .np carried;
#   --no-bench     skip the Jacobian and large-n benchmarks.
set -uo pipefail
SUITE=0; CONFORMANCE=0; BENCH=1
for arg in "$@"; do
    case "$arg" in
        --suite) SUITE=1 ;;
        --conformance) CONFORMANCE=1 ;;
        --no-bench) BENCH=0 ;;
        *) echo "unknown option $arg"; exit 2 ;;
    esac
done
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
# proxsuite (a cmeel wheel) lives under cmeel.prefix, which a .pth file would add; PYTHONPATH
# folders do not read .pth files, so it is named here.
export PYTHONPATH=/tmp/site:/tmp/site/cmeel.prefix/lib/python3.12/site-packages
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
if [ "$CONFORMANCE" = 1 ]; then  # one core, in the background while the rest runs
    (OPENBLAS_NUM_THREADS=1 JAX_PLATFORMS=cpu timeout 400 python3 -m ncvx_ref.conformance \
        "$REPO/.ref/granso_reference" --json "$OUT/conformance.json" > "$OUT/conformance.log" 2>&1) &
    CONF_PID=$!
    if ls "$REPO"/.np/numpy-*.whl > /dev/null 2>&1; then  # again with this machine's NumPy (.np carried)
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/np "$REPO"/.np/numpy-*.whl
        (PYTHONPATH=/tmp/np:$PYTHONPATH OPENBLAS_NUM_THREADS=1 JAX_PLATFORMS=cpu timeout 400 \
            python3 -m ncvx_ref.conformance "$REPO/.ref/granso_reference" \
            --json "$OUT/conformance_np.json" > "$OUT/conformance_np.log" 2>&1) &
        CONF_NP_PID=$!
    fi
fi
if [ "$SUITE" = 1 ]; then
    # CPU only: eight workers would each take the GPU (JAX preallocates most of its memory)
    JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES= OPENBLAS_NUM_THREADS=1 timeout 300 python3 -m pytest \
        -q -rs -n 8 -m "not slow and not gpu" -p no:cacheprovider -c "$REPO/setup.cfg" \
        --rootdir "$REPO" "$REPO/tests" 2>&1 | tee "$OUT/suite.log"
fi
timeout 240 python3 -m pytest -q -rs -m gpu -p no:cacheprovider -c "$REPO/setup.cfg" \
    --rootdir "$REPO" "$REPO/tests" 2>&1 | tee "$OUT/gpu_tests.log"
if [ "$BENCH" = 1 ]; then
timeout 180 python3 "$REPO/benchmarks/jacobian_bench.py" --device cuda --skip-memory --reps 7 \
    --json "$OUT/jacobian_cuda.json" 2>&1 | tee "$OUT/jacobian_cuda.log"
timeout 120 python3 "$REPO/benchmarks/device/large_n_cuda.py" 2>&1 | tee "$OUT/large_n_cuda.log"
fi
if [ "$CONFORMANCE" = 1 ]; then
    wait "$CONF_PID"; tail -12 "$OUT/conformance.log"
    [ -n "${CONF_NP_PID:-}" ] && wait "$CONF_NP_PID" && tail -12 "$OUT/conformance_np.log"
    (python3 -c "import numpy, scipy; print('numpy', numpy.__version__, 'scipy', scipy.__version__); numpy.show_config()"; lscpu) >> "$OUT/device.txt" 2>&1
fi
