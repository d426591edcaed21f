#!/usr/bin/env bash
# Configures and builds kiln: scripts/build.sh [BUILD_DIR] [extra cmake args...].
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
jobs=${KILN_JOBS:-$(nproc)}
if [[ ! -f "$dir/build.ninja" ]]; then
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.cmake.log" 2>&1 ||
    { cat "$dir.cmake.log"; exit 1; }
  grep -E "^-- kiln:" "$dir.cmake.log" || true
  rm -f "$dir.cmake.log"
fi
echo "build: $dir (ninja -j$jobs)"
# Progress lines are dropped; errors and warnings stay.
set +o pipefail
ninja -C "$dir" -j"$jobs" | grep -vE "^\[[0-9]+/[0-9]+\] "
exit "${PIPESTATUS[0]}"
