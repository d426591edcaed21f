#!/usr/bin/env bash
# The GPU-machine run (see ../shared/device.md). Here: build with
#   cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_LLVM_STATIC=ON
#   ninja -C build-device kiln-run kiln-opt && strip build-device/bin/kiln-*
# and fetch the Vulkan loader into .gl/ once (device.md has the recipe). Then run this
# script through the device tool with carry [build-device/bin, .gl]. It runs the
# walking skeleton on the GPU's Vulkan driver against the reference interpreter,
# assembles the PTX with the machine's ptxas, and prints a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${KILN_BIN:-build-device/bin}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$bin/kiln-run" --list-devices

status=0
row() { printf '%-44s %s\n' "$1" "$2"; }
log=$(mktemp)
"$bin/kiln-run" examples/pointwise_chain.kir --device=vulkan --check --iters 50 \
  --dims n=1 --dims n=1024 --dims n=4096 | tee "$log" || status=1
summary=()
while read -r line; do summary+=("$line"); done < <(grep -E "^run |^PASS|^FAIL" "$log")
for sm in sm_80 sm_90; do
  if "$bin/kiln-opt" examples/pointwise_chain.kir --emit=ptx --sm=$sm -o "$log.ptx" &&
     ptxas -arch=$sm "$log.ptx" -o "$log.cubin"; then
    ptx[${#ptx[@]}]="ptxas $sm: ok"
  else
    ptx[${#ptx[@]}]="ptxas $sm: FAILED"; status=1
  fi
done

echo
echo "== kiln on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) =="
row "pointwise_chain.kir on Vulkan (kiln-run)" ""
for s in "${summary[@]}"; do row "" "$s"; done
for p in "${ptx[@]}"; do row "pointwise_chain.kir PTX" "$p"; done
exit $status
