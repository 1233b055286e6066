#!/usr/bin/env bash
# Runs a command as if on a bare GPU host (docs/gpu.md): in a private mount namespace where the
# files of the Debian packages such a host lacks are deleted from an overlay of /usr, so that
# configure, compile and link see only what would travel in .carry/. For rehearsing the bare-host
# build on a development machine (Debian 12, root):
#   scripts/bare-host.sh cmake -S . -B build-bare -G Ninja -DCMAKE_BUILD_TYPE=Release
#   scripts/bare-host.sh cmake --build build-bare --target sdgen
# Needs root, unshare(1) and overlayfs. Nothing outside the command's mount namespace changes: the
# deletions land in a tmpfs that disappears with it.
#
# Deleted: CLI11, nlohmann-json, stb, Catch2, ICU's headers and development links, oneDNN,
# OpenBLAS, LLVM's OpenMP, GCC's OpenMP development files (omp.h, libgomp.so) and ccache. The
# runtime libicu72 stays: CMake itself links it (through libxml2), and without ICU's headers and
# libicuuc.so nothing of ours can use it; `ldd` on the results shows that nothing does.
set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bare-host: needs root (mount namespaces)" >&2; exit 2; }

# Outside: make the directory the namespace mounts its layer on, and remove it afterwards.
if [ -z "${SDGEN_BARE_HOST_LAYER:-}" ]; then
  layer=$(mktemp -d /tmp/sdgen-bare-host.XXXXXX)
  status=0
  SDGEN_BARE_HOST_LAYER=$layer unshare --mount --propagation private "$0" "$@" || status=$?
  rmdir "$layer"
  exit "$status"
fi
layer=$SDGEN_BARE_HOST_LAYER
unset SDGEN_BARE_HOST_LAYER

packages=(libcli11-dev nlohmann-json3-dev libstb-dev libstb0 catch2 libicu-dev icu-devtools
          libdnnl-dev libdnnl2 libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread
          libomp-dev libomp-14-dev libomp5-14 ccache)
gcc_dir=$(dirname "$(gcc -print-libgcc-file-name)")

mount -t tmpfs tmpfs "$layer"
mkdir "$layer/upper" "$layer/work"
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$layer/upper,workdir=$layer/work" /usr

installed=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done
# Files and links first, then the directories they leave empty, deepest first. Paths through the
# /lib -> /usr/lib link resolve into the overlay like the rest.
paths=$( (for p in "${installed[@]}"; do dpkg -L "$p"; done
          printf '%s\n' "$gcc_dir/include/omp.h" "$gcc_dir/libgomp.so" "$gcc_dir/libgomp.a" "$gcc_dir/libgomp.spec") |
        sort -u)
count=0
while read -r f; do
  if [ -L "$f" ] || [ -f "$f" ]; then rm -f "$f" && count=$((count + 1)); fi
done <<<"$paths"
while read -r d; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
done < <(sort -r <<<"$paths")

echo "bare-host: $count files hidden (packages: ${installed[*]}; GCC's OpenMP files)" >&2
"$@"
