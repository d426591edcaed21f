#!/usr/bin/env bash
# Builds the .kir parser fuzzer with clang 19 (libFuzzer, ASan, UBSan) and runs it for
# a bounded time: scripts/fuzz.sh [SECONDS] (default 600). Exits non-zero on a finding
# or when the fuzzer did not run to its time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
out=build-fuzz
mkdir -p "$out/corpus"
clang++-19 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I. tests/fuzz/parser_fuzz.cc ir/*.cc -o "$out/parser_fuzz"
echo "fuzz: running the parser fuzzer for ${seconds}s (seeds: examples/, tests/lit/, tests/fuzz/seeds/)"
status=0
"$out/parser_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" examples tests/lit tests/fuzz/seeds \
  >"$out/fuzz.log" 2>&1 || status=$?
grep -E "^Done [0-9]+ runs|ERROR|SUMMARY|^artifact_prefix|Test unit written" "$out/fuzz.log" || true
if [[ $status -ne 0 ]]; then
  echo "fuzz: FINDING (exit $status; see $out/fuzz.log and the crash-/timeout-/oom- files)"
  exit 1
fi
if ! grep -qE "^Done [0-9]+ runs" "$out/fuzz.log"; then
  echo "fuzz: the fuzzer stopped early (see $out/fuzz.log)"
  exit 1
fi
echo "fuzz: no finding in ${seconds}s"
