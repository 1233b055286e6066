#!/usr/bin/env bash
# Installs every Debian 12 package sdgen's build and tests need. Safe to run again.
#   build:  cmake, ninja, g++, ccache
#   libs:   CLI11 (command line), nlohmann-json (configs, safetensors headers), stb (PNG),
#           ICU (Unicode categories and normalisation for the CLIP tokenizer),
#           OpenBLAS and oneDNN (CPU backend; its CMake config looks for OpenCL, which
#           Debian only recommends: ocl-icd-opencl-dev)
#   tests:  Catch2 v2
#   fuzz:   clang 14 and its libFuzzer/sanitizer runtimes (scripts/fuzz.sh)
# The CUDA toolkit is not a Debian package here; when /usr/local/cuda/bin/nvcc exists the build
# picks it up (SDGEN_CUDA=AUTO).
set -euo pipefail
packages=(cmake ninja-build g++ ccache pkg-config
          libcli11-dev nlohmann-json3-dev libstb-dev libicu-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev
          catch2 clang-14 libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
