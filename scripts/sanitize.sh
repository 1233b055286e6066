#!/usr/bin/env bash
# Builds sdgen and its whole test suite with AddressSanitizer and UndefinedBehaviorSanitizer
# (g++, -DSDGEN_SANITIZE=ON, RelWithDebInfo, no CUDA) in build-asan, and runs every test there.
#   scripts/sanitize.sh [CTEST ARGS...]     e.g. scripts/sanitize.sh -R tokenizer
# Any report fails its test: an ASan error or a leak stops the process with a non-zero exit code,
# and UBSan reports are not recoverable in this build (-fno-sanitize-recover). The tests that run
# the sdgen binary run the sanitized one, so its reports count too. ccache is used when present,
# as by scripts/build.sh (the root CMakeLists.txt sets it up).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++ \
  -DSDGEN_CUDA=OFF -DSDGEN_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"

# A leak is a report like any other (detect_leaks), and so is a use of a stack frame after its
# function returned (detect_stack_use_after_return, off by default) or a string argument read
# past its end (strict_string_checks). The stack traces go into ctest's output, so a failure in
# CI says where. exitcode=86: the app tests run sdgen and expect exit codes 1 and 2 for refused
# input, so a report in that child must not exit with ASan's default 1.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:print_stacktrace=1:detect_stack_use_after_return=1:strict_string_checks=1:exitcode=86"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86"
ctest --test-dir build-asan --output-on-failure -j2 "$@"
