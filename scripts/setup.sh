#!/usr/bin/env bash
# Installs everything kiln's build and tests need on Debian 12; idempotent, quiet when all is present.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config python3
  llvm-19-dev llvm-19-tools clang-19 libclang-rt-19-dev libzstd-dev zlib1g-dev
  spirv-tools spirv-headers
  libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers
  libspirv-cross-c-shared-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
