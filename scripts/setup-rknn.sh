#!/usr/bin/env bash
# Creates ./.venv-rknn, the environment of the RK3588 converter (rknn-toolkit2
# 2.5.0), separate from .venv because their numpy/onnx/protobuf pins conflict
# (scripts/rknn-requirements.txt says which and why). gem/export/rknn.py runs the
# conversion there as a subprocess; GEM_HIL_RKNN_PYTHON points elsewhere.
# Re-running is cheap: pip finds everything installed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=${PYTHON:-python3}
if [ ! -x .venv-rknn/bin/python ]; then
    "$PY" -m venv .venv-rknn
fi
.venv-rknn/bin/python -m pip install -q -r scripts/rknn-requirements.txt
# --no-deps: its torch<=2.4.0 pin would pull the CUDA build (see the requirements file)
.venv-rknn/bin/python -m pip install -q --no-deps rknn-toolkit2==2.5.0
.venv-rknn/bin/python -c "from rknn.api import RKNN" 2>/dev/null \
    || { echo "rknn-toolkit2 does not import in .venv-rknn" >&2; exit 1; }
echo "rknn-toolkit2 installed in $(pwd)/.venv-rknn in $(( $(date +%s) - start )) s"
