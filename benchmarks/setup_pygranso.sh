#!/usr/bin/env bash
# Create benchmarks/.venv-pygranso with PyGRANSO 1.2.0 and the dependencies it imports.
#
# PyGRANSO 1.2.0 declares no dependencies on PyPI but imports torch, numpy (1.x API),
# scipy, osqp (the 0.6 API) and gurobipy unconditionally.  torch is pinned and installed
# first, from the CPU build, so pip never pulls a multi-GB CUDA build.
# Usage: bash benchmarks/setup_pygranso.sh            (idempotent; re-run to repair)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-pygranso"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade "pip<25" wheel
# CPU torch first, pinned: the "+cpu" local build when pip can see one (it sorts above the
# CUDA build of the same version), else plain torch==2.13.0.
"${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" "numpy<2" "scipy<1.14" "osqp==0.6.7.post3" gurobipy
"${pip[@]}" --no-deps "pygranso==1.2.0"
# The suite's own needs in the venv: array-api-compat (the problems are written once against
# the Array API; ncvx_ref.problems rebuilds the conformance cases).
"${pip[@]}" array-api-compat
"$venv/bin/python" - <<'EOF'
import numpy, torch, osqp, gurobipy, pygranso, array_api_compat  # noqa: F401
from pygranso.pygranso import pygranso as _p  # noqa: F401
print(f"pygranso venv ok: torch {torch.__version__}, numpy {numpy.__version__}, osqp {osqp.__version__}")
EOF
