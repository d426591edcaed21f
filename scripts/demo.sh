#!/usr/bin/env bash
# The demo: set up, build, then compile examples/pointwise_chain.kir, run it on the best
# device found (lavapipe where there is no GPU), check it against the reference
# interpreter and print the time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
build/bin/kiln-run examples/pointwise_chain.kir --dims n=1024 --check --iters 20
