#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) under ASan+UBSan and runs each on its seed corpus.
#   scripts/fuzz.sh [SECONDS]     SECONDS per harness, default 60
# Needs clang-14 and libclang-rt-14-dev (scripts/setup.sh). Every library the harnesses link is
# built with the same sanitizers, so the build lives in its own directory, build-fuzz. New corpus
# entries go to build-fuzz/fuzz/corpus/<harness> (the committed seeds in tests/fuzz/corpus are only
# read); a finding (a crash, a sanitizer report, a broken invariant, or an input that runs longer
# than 10 s, which is a hang: timeout-*) is saved in build-fuzz/fuzz/findings/<harness>/ and makes
# the script exit 1.
# Reproduce one with: build-fuzz/tests/fuzz/<harness>_fuzz <file>
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
harnesses=(safetensors configs tokenizer tokenizer_files key_mapping prompt_file)

# SDGEN_SANITIZE=ON gives every target ASan+UBSan; fuzzer-no-link adds libFuzzer's coverage
# instrumentation to the libraries, whose code is what the harnesses explore.
cmake -S "$root" -B "$build" -G Ninja -DSDGEN_FUZZ=ON -DSDGEN_SANITIZE=ON -DSDGEN_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link >/dev/null
cmake --build "$build" --target "${harnesses[@]/%/_fuzz}"

# UBSan reports are findings too: make them fatal so that libFuzzer saves the input.
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
summary=()
total_findings=0
for h in "${harnesses[@]}"; do
  corpus="$build/fuzz/corpus/$h"
  findings="$build/fuzz/findings/$h"
  log="$build/fuzz/$h.log"
  rm -rf "$findings"
  mkdir -p "$corpus" "$findings"
  echo "== $h: ${seconds}s"
  status=0
  "$build/tests/fuzz/${h}_fuzz" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -rss_limit_mb=4096 \
    -artifact_prefix="$findings/" "$corpus" "$root/tests/fuzz/corpus/$h" >"$log" 2>&1 || status=$?
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  count="$(find "$findings" -type f | wc -l)"
  if ((status != 0)); then
    grep -E 'FINDING|ERROR: |runtime error|SUMMARY' "$log" | head -5 || true
    ((count > 0)) || count=1  # a failure that saved no input still counts
  fi
  total_findings=$((total_findings + count))
  summary+=("$(printf '%-16s execs %10s   cov %6s   findings %s' "$h" "${execs:-?}" "${cov:-?}" "$count")")
done
echo
echo "fuzzing, ${seconds}s per harness ($(date -u +%Y-%m-%d)):"
printf '  %s\n' "${summary[@]}"
((total_findings == 0))
