#!/usr/bin/env bash
# The GPU-machine run (see ../shared/device.md). Here, first:
#   cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_LLVM_STATIC=ON
#   ninja -C build-device kiln-run
#   mkdir -p build-device/carry && cp build-device/bin/kiln-run build-device/carry/ &&
#     strip build-device/carry/kiln-run
# and fetch the Vulkan loader into .gl/ once (device.md has the recipe), with the GL
# vendor-neutral libraries the NVIDIA driver needs beside it (without libglvnd0 its
# Vulkan driver is not found): `apt-get $o download libvulkan1 libglvnd0 libegl1 libgl1
# libglx0 libgles2 libopengl0` in .gl/, with $o as in device.md. Then run this
# script through the device tool with carry [build-device/carry, .gl]. It runs the
# walking skeleton on the GPU's Vulkan driver against the reference interpreter and
# prints a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${KILN_BIN:-build-device/carry}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
"$bin/kiln-run" --list-devices

log=$(mktemp)
"$bin/kiln-run" examples/pointwise_chain.kir --device=vulkan --check --iters 50 \
  --dims n=1 --dims n=1024 --dims n=4096 | tee "$log"
status=${PIPESTATUS[0]}

echo
echo "== kiln walking skeleton on $gpu =="
grep -E "^device:|^run |^PASS|^FAIL" "$log"
exit "$status"
