#!/usr/bin/env bash
# The main job from a freshly built wheel, far from any checkout: proves that the
# agent, the QEMU recipe and the shipped profiles travel inside the package.
# Usage: bash scripts/wheel-smoke.sh   (uses .venv to build the wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/gem-hil-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel -q --no-deps -w "$work/dist" .
wheel=$(ls "$work"/dist/gem_hil-*.whl)
python3 -m venv "$work/venv"
# torch first and pinned (a range would pull a CUDA build), then the wheel with
# the build extra (torch, onnx) so it can build the artifact itself
"$work/venv/bin/python" -m pip install -q torch==2.13.0
"$work/venv/bin/python" -m pip install -q "${wheel}[build]"
cd "$work"  # no checkout here: everything must come from the installed package
GEM_HIL_CACHE="$work/cache" GEM_HIL_LOCAL_HOME="$work/device-home" \
    "$work/venv/bin/gem-hil" bench --device local --report-dir "$work/reports"
GEM_HIL_CACHE="$work/cache" "$work/venv/bin/gem-hil" devices local
echo "wheel smoke test passed: $(basename "$wheel")"
