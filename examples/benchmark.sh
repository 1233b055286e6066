#!/usr/bin/env bash
# Full-size CPU benchmark: SD 1.5 architecture (random weights made by `sdgen make-model`, so no
# download), 512x512, guidance 7.5, DPM-Solver++ 2M, fixed seed, fp32 and bf16. Prints the
# --profile table of each run; the figures go into docs/benchmarks.md with the date and commit.
#
#   examples/benchmark.sh [STEPS] [MODEL_DIR]      defaults: 4 steps, /tmp/sdgen-sd15
#
# A few steps are enough: the table reports the minimum and median step time, and the first step
# pays one-time costs (weight re-layouts), which the median of 4 already excludes.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-4}
model=${2:-/tmp/sdgen-sd15}
[ -x build/app/sdgen ] || scripts/build.sh
[ -d "$model" ] || build/app/sdgen make-model --preset sd15 --seed 0 -o "$model"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "commit $(git rev-parse --short HEAD), $(date -u +%F), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for dtype in fp32 bf16; do
  build/app/sdgen "a red fox in the snow, golden hour" -m "$model" -W 512 -H 512 --steps "$steps" \
    --seed 1 --cfg 7.5 --scheduler dpm++2m --dtype "$dtype" -q --profile -o "$out/$dtype.png"
done
