#!/usr/bin/env bash
# Sets up gem-hil in ./.venv: torch==2.13.0 (CPU) first, then the project with
# its build and test extras. With --system-packages (root) it also installs the
# Debian packages the integration tests use (sshd, qemu, adb, nftables...).
#
# torch goes first and pinned: an unpinned or ranged torch pulls a multi-GB CUDA
# build; once 2.13.0 is there, the project's range is already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--system-packages" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2046
    apt-get install -y -qq --no-install-recommends $(grep -v '^#' scripts/debian-packages.txt)
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test]'
echo "gem-hil installed in $(pwd)/.venv"
# the RK3588 converter (rknn-toolkit2) cannot share .venv: its own, .venv-rknn
bash scripts/setup-rknn.sh
