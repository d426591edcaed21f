#!/usr/bin/env bash
# Builds kiln-run, kiln-bench and compile_test for the GPU machine and packs them,
# stripped and gzipped (16 MB each, where stripped they take 39 MB and two do not fit
# the 64 MiB a device call carries), into build-device/pack/ with PyTorch's anchor
# script beside them. Then one call runs both: carry [build-device/pack, .gl] and run
# scripts/device_run.sh, which unpacks them (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f build-device/build.ninja ]]; then
  cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_LLVM_STATIC=ON >/dev/null
fi
ninja -C build-device kiln-run kiln-bench compile_test
mkdir -p build-device/pack
for b in kiln-run kiln-bench compile_test; do
  strip -o "build-device/pack/$b" "build-device/bin/$b"
  gzip -f -6 "build-device/pack/$b"
done
anchors=../shared/bench/torch_anchors.py
[[ -f $anchors ]] && cp "$anchors" build-device/pack/
du -sh build-device/pack
