#!/usr/bin/env bash
# Run HERE (not on the device machine): download the wheels the device image lacks into .whl/
# (git-ignored), at the versions installed here, for the device's Python 3.12.
# The device image already has torch, jax, cupy, numpy, scipy, pytest, hypothesis, jinja2 and
# joblib; the rest of the `test` extra (the optional QP libraries, array-api-strict) comes too,
# so that `run_checks.sh --suite` runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
pins=()
for pkg in daqp piqp array-api-compat autograd proxsuite cmeel clarabel cffi osqp array-api-strict; do
    ver=$(python3 -m pip show "$pkg" 2>/dev/null | awk '/^Version:/ {print $2}')
    pins+=("${pkg}${ver:+==$ver}")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${pins[@]}"
ls -la .whl
