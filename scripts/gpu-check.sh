#!/usr/bin/env bash
# The GPU check (issue 6): run on a GPU host from a clean tree carried with .carry/ (docs/gpu.md,
# "Building on a bare GPU host"); it takes under 8 minutes and
#   1. prints the GPU, driver and CUDA toolkit;
#   2. configures and builds the bare-host mode in build-gpu: Release, CUDA on, no CPU backend,
#      every core, only sdgen and the executables of the `gpu`-labelled tests, for this GPU's
#      architecture alone;
#   3. runs the gpu tests (ctest -L gpu); with a GPU present, a skipped one is a failure. A failing
#      test does not stop the check (a GPU session is too scarce to lose the figures for one
#      kernel): the runs still go, and the check ends with the failure and exit status 1;
#   4. writes the full-size SD 1.5 model with random weights (make-model --preset sd15, fp16: the
#      weights the CUDA backend computes in, at half the bytes to write);
#   5. runs `sdgen --device cuda --profile --json` at 512x512 (25 DPM-Solver++ steps and 50 DDIM
#      steps, batch 1 and 4; and the first once more with --dtype bf16), and at 768x768 and
#      1024x1024 (25 DPM-Solver++ steps, batch 1), all with guidance 7.5 and seed 0;
#   6. prints one table of them (scripts/gpu_table.py): UNet it/s, s/image, peak device memory,
#      per-stage times, achieved TFLOP/s against the card's dense fp16 rate.
# It writes nothing into the tree but build-gpu/, and appends to no document: the table goes into
# docs/benchmarks.md by hand, with the date, GPU, commit and command it prints.
#
# The first step that cannot work stops it with its reason. Without a GPU (a rehearsal on a
# development machine) that is the first `--device cuda` run; the gpu tests report "skipped".
# A later run that fails is a "failed" row and exit status 1. Each run may take 150 s, and none
# starts after 420 s ($SDGEN_GPU_CHECK_BUDGET), so a slow backend cannot push it far past 8 minutes.
#
#   scripts/gpu-check.sh [--quick] [--work DIR]
#     --quick     only the 512x512 runs
#     --work DIR  where the model, images, logs and JSON files go ($SDGEN_GPU_CHECK_WORK, else
#                 /tmp/sdgen-gpu-check); about 2.2 GB
set -euo pipefail
cd "$(dirname "$0")/.."

invocation="scripts/gpu-check.sh${*:+ $*}"
quick=0
work=${SDGEN_GPU_CHECK_WORK:-/tmp/sdgen-gpu-check}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --work) work=$2; shift ;;
    *) echo "usage: $0 [--quick] [--work DIR]" >&2; exit 2 ;;
  esac
  shift
done

build="build-gpu"
per_run_limit=150  # seconds; one run that hangs must not eat the whole 8 minutes
budget=${SDGEN_GPU_CHECK_BUDGET:-420}  # seconds after which no further run starts
started=$SECONDS
phase() { printf '\n== %s (at %d s)\n' "$1" "$((SECONDS - started))"; }
stop() { printf '\ngpu-check: stopped: %s\n' "$1" >&2; exit 1; }

# ---- 1. GPU, driver, toolkit
phase "GPU, driver and toolkit"
gpu_name=""
compute_cap=""
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap,clocks.max.sm,power.limit --format=csv
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
  compute_cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
else
  echo "no GPU visible: $(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | head -n1 || echo 'nvidia-smi not found')"
fi
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || stop "no nvcc on PATH or in /usr/local/cuda/bin: the CUDA toolkit is needed to build"
"$nvcc" --version | tail -n2
echo "host: $(uname -srm), $(nproc) cores; $(cmake --version | head -n1); $(c++ --version | head -n1)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'unknown (no git here)')"
[ -d .carry ] || echo "note: no .carry/ here, so the headers must come from system packages (scripts/gather-deps.sh)"

# ---- 2. configure and build
phase "configure ($build)"
configure=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DSDGEN_CUDA=ON -DSDGEN_CPU_BACKEND=OFF "-DCMAKE_CUDA_COMPILER=$nvcc")
# This GPU's architecture only: half the device code of the default list (80 and 90) to compile.
[ -n "$compute_cap" ] && configure+=("-DCMAKE_CUDA_ARCHITECTURES=$compute_cap")
mkdir -p "$work"
if ! cmake -S . -B "$build" "${configure[@]}" >"$work/configure.log" 2>&1; then
  cat "$work/configure.log"
  stop "configuring failed (cmake -S . -B $build ${configure[*]})"
fi
grep "^-- sdgen:" "$work/configure.log"
# The executables of the gpu-labelled tests, read from the CTestTestfile.cmake files that configure
# wrote (ctest names a test's command only once its executable exists).
read -ra gpu_targets <<<"$(python3 - "$build" <<'PY'
import os, pathlib, re, sys
exe, gpu = {}, set()
for f in pathlib.Path(sys.argv[1]).rglob("CTestTestfile.cmake"):
    text = f.read_text()
    for name, path in re.findall(r'add_test\((?:\[=\[)?(.+?)(?:\]=\])? "([^"]+)"', text):
        exe[name] = os.path.basename(path)
    for name, props in re.findall(r'set_tests_properties\((?:\[=\[)?(.+?)(?:\]=\])? PROPERTIES (.*)\)', text):
        if re.search(r'LABELS "(?:[^"]*;)?gpu(?:;[^"]*)?"', props):
            gpu.add(name)
print(" ".join(sorted(exe[name] for name in gpu)))
PY
)"
((${#gpu_targets[@]})) || stop "configure registered no test labelled gpu"
phase "build: sdgen ${gpu_targets[*]}"
build_start=$SECONDS
cmake --build "$build" -j"$(nproc)" --target sdgen "${gpu_targets[@]}" || stop "the build failed"
echo "built in $((SECONDS - build_start)) s"
sdgen=$build/app/sdgen
"$sdgen" devices

# ---- 3. the gpu tests
phase "ctest -L gpu"
ctest_log=$(mktemp)
test_failure=""
ctest --test-dir "$build" -L gpu --output-on-failure --timeout 240 2>&1 | tee "$ctest_log" ||
  test_failure="a gpu test failed (ctest's output is in the phase above): the figures below come from code that failed it"
skipped=$(grep -c '\*\*\*Skipped' "$ctest_log" || true)
if [ "$skipped" -gt 0 ]; then
  if [ -n "$gpu_name" ]; then
    test_failure="$skipped gpu test(s) skipped although nvidia-smi sees $gpu_name"
  else
    echo "($skipped gpu test(s) skipped: no GPU here)"
  fi
fi
[ -z "$test_failure" ] || echo "gpu-check: $test_failure; going on with the runs" >&2

# ---- 4. the full-size model
phase "make-model --preset sd15 --dtype fp16"
model=$work/sd15
rm -rf "$model"
model_start=$SECONDS
"$sdgen" make-model --preset sd15 --seed 0 --dtype fp16 -o "$model" || stop "make-model failed"
echo "written in $((SECONDS - model_start)) s"

# ---- 5. the runs
runs=$work/runs
rm -rf "$runs"
mkdir -p "$runs"
#        name                  width height batch steps scheduler dtype
plan=("1_512_dpm25_b1          512   512    1     25    dpm++2m   fp16"
      "2_512_dpm25_b4          512   512    4     25    dpm++2m   fp16"
      "3_512_ddim50_b1         512   512    1     50    ddim      fp16"
      "4_512_ddim50_b4         512   512    4     50    ddim      fp16"
      "5_512_dpm25_b1_bf16     512   512    1     25    dpm++2m   bf16")
((quick)) || plan+=("6_768_dpm25_b1          768   768    1     25    dpm++2m   fp16"
                    "7_1024_dpm25_b1         1024  1024   1     25    dpm++2m   fp16")
failures=0
for entry in "${plan[@]}"; do
  read -r name width height batch steps scheduler dtype <<<"$entry"
  if ((SECONDS - started > budget)); then
    echo "skipped run $name: past the ${budget} s budget (SDGEN_GPU_CHECK_BUDGET)"
    continue
  fi
  phase "run $name: ${width}x$height, $steps $scheduler steps, batch $batch, $dtype"
  printf '{"width": %d, "height": %d, "batch": %d, "steps": %d, "scheduler": "%s", "dtype": "%s", "cfg": 7.5}\n' \
    "$width" "$height" "$batch" "$steps" "$scheduler" "$dtype" >"$runs/$name.request.json"
  mkdir "$runs/$name"
  command=("$sdgen" "a photograph of an astronaut riding a horse" -m "$model" --device cuda
           -W "$width" -H "$height" --steps "$steps" --scheduler "$scheduler" --cfg 7.5 --batch "$batch"
           --dtype "$dtype" --seed 0 --profile --json "$runs/$name.json" --outdir "$runs/$name" --overwrite -q)
  echo "${command[*]}"
  if timeout "$per_run_limit" "${command[@]}" >"$runs/$name.log" 2>&1; then
    tail -n1 "$runs/$name.log"
  else
    failures=$((failures + 1))
    cat "$runs/$name.log"
    if [ "$name" = "${plan[0]%% *}" ]; then
      reason="the first GPU run failed: $(tail -n1 "$runs/$name.log")"
      [ -n "$gpu_name" ] || reason+=" (this machine has no GPU: a rehearsal ends here)"
      stop "$reason"
    fi
  fi
done

# ---- 6. the table
phase "table (for docs/benchmarks.md: $(date -u +%Y-%m-%d), $gpu_name, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $invocation)"
python3 scripts/gpu_table.py --model "$model" --gpu "$gpu_name" "$runs"
echo "total: $((SECONDS - started)) s"
[ -z "$test_failure" ] || stop "$test_failure"
[ "$failures" -eq 0 ] || stop "$failures run(s) failed; their logs are in $runs"
