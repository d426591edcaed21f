#!/usr/bin/env bash
# Builds the .kir parser fuzzer with clang 19 (libFuzzer, ASan, UBSan) and runs it for
# a bounded time: scripts/fuzz.sh [SECONDS] (default 600). Exits non-zero on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
out=build-fuzz
mkdir -p "$out/corpus"
clang++-19 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I. tests/fuzz/parser_fuzz.cc ir/*.cc -o "$out/parser_fuzz"
echo "fuzz: running the parser fuzzer for ${seconds}s"
"$out/parser_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" examples tests/lit 2>&1 |
  grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|SUMMARY|stat::number_of_executed_units|crash-|timeout-|oom-" || true
# libFuzzer writes crash-/timeout-/oom- files on a finding; the pipeline above hides its exit code.
if compgen -G "$out/crash-*" >/dev/null || compgen -G "$out/timeout-*" >/dev/null ||
   compgen -G "$out/oom-*" >/dev/null || compgen -G "$out/leak-*" >/dev/null; then
  echo "fuzz: FINDING (see $out/)"
  exit 1
fi
echo "fuzz: no finding in ${seconds}s"
