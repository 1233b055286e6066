#!/usr/bin/env bash
# Configures and builds sdgen into build/ (Release, Ninja, ccache when present).
# Extra arguments go to the configure step, e.g. scripts/build.sh -DSDGEN_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)"
