#!/usr/bin/env bash
# Every test: set up, build, run the unit and lit tests (ctest), then the unit tests
# again under ASan+UBSan, then the parser fuzzer for a short bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

werror=()
if [[ "${CI:-}" == "true" ]]; then werror=(-DKILN_WERROR=ON); fi
# lavapipe is installed by setup: a Vulkan test must run, never skip for want of a device.
export KILN_REQUIRE_VULKAN=1

bash scripts/build.sh build "${werror[@]}"
(cd build && ctest --output-on-failure -j2)

echo "== ASan + UBSan =="
bash scripts/build.sh build-asan -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug "${werror[@]}"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leak checking is off for the tests that load a Vulkan driver (VulkanTest.*, and the
# end-to-end tests' /vulkan instances): the loader unloads the
# driver (lavapipe, with its LLVM) when an instance is destroyed, and LeakSanitizer can
# then neither name nor suppress the driver's own process-lifetime allocations.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  ctest --output-on-failure -j2 -E '^lit$|Vulkan|/vulkan')
(cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  ctest --output-on-failure -j2 -R 'Vulkan|/vulkan')

echo "== fuzz =="
bash scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-60}"
