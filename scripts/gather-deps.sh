#!/usr/bin/env bash
# Gathers the header-only libraries sdgen builds with into .carry/ (ignored by git), to travel with
# the source tree to a host that has a compiler, CMake, ninja and the CUDA toolkit but none of our
# Debian packages and no network (a bare GPU host: docs/gpu.md, "Building on a bare GPU host").
#
# It copies from this machine's Debian packages (scripts/setup.sh installs them) and downloads
# nothing:
#   .carry/include/CLI, nlohmann, catch2, stb   CLI11, nlohmann-json, Catch2 v2's single header,
#                                               stb_image.h and stb_image_write.h
#   .carry/share/cmake/nlohmann_json,           the packages' own CMake config files, which locate
#   .carry/lib/cmake/Catch2                     their headers relative to themselves, so
#                                               find_package works from .carry as from /usr
#   .carry/licenses/<package>.copyright         each package's Debian copyright file (licences)
#   .carry/VERSIONS                             package versions, one per line
# The root CMakeLists.txt searches .carry after the system's prefixes, so it is only a fallback.
# ICU, oneDNN and OpenBLAS are not gathered: shared libraries of 30-40 MB each would not fit in
# what the host accepts; the build leaves out what needs them (docs/gpu.md).
#
# Prints the total size. Run again to refresh; it replaces .carry/ whole.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.carry

fail() { echo "gather-deps: $*" >&2; exit 1; }
for package in libcli11-dev nlohmann-json3-dev libstb-dev catch2; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    fail "the Debian package $package is not installed (scripts/setup.sh installs it)"
done

# copy SOURCE... DIR: copies into DIR (created), failing on a missing source.
copy() {
  local dir="${*: -1}"
  mkdir -p "$dir"
  for source in "${@:1:$#-1}"; do
    [ -e "$source" ] || fail "$source is missing; is its package complete?"
    cp -R "$source" "$dir/"
  done
}

rm -rf "$dest"
copy /usr/include/CLI "$dest/include"
copy /usr/include/nlohmann "$dest/include"
copy /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake \
     /usr/share/cmake/nlohmann_json/nlohmann_jsonConfigVersion.cmake \
     /usr/share/cmake/nlohmann_json/nlohmann_jsonTargets.cmake "$dest/share/cmake/nlohmann_json"
copy /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h "$dest/include/stb"
copy /usr/include/catch2/catch.hpp "$dest/include/catch2"
# Not Catch2Targets-none.cmake: it only locates the prebuilt libCatch2WithMain.a, which sdgen does
# not use (its tests have their own mains).
copy /usr/lib/cmake/Catch2/Catch2Config.cmake /usr/lib/cmake/Catch2/Catch2ConfigVersion.cmake \
     /usr/lib/cmake/Catch2/Catch2Targets.cmake "$dest/lib/cmake/Catch2"

mkdir -p "$dest/licenses"
for package in libcli11-dev nlohmann-json3-dev libstb-dev catch2; do
  cp "/usr/share/doc/$package/copyright" "$dest/licenses/$package.copyright"
  dpkg-query -W -f='${Package} ${Version}\n' "$package" >>"$dest/VERSIONS"
done

echo "gather-deps: $(du -sh "$dest" | cut -f1) in $dest ($(find "$dest" -type f | wc -l) files):"
sed 's/^/  /' "$dest/VERSIONS"
