#!/usr/bin/env bash
# Compile-time benchmark: the default pipeline on generated graphs, median of several
# runs per pass, then lowering and code generation (PTX for sm_90, with and without
# --quick-ptx, and SPIR-V) of
# examples/llama_decoder.kir, in all and per kernel. bench/compile_time.sh [NODES] [RUNS] [SEEDS...]
# (default 10000 9 1 2 3). Needs a build in build/ (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-10000}
runs=${2:-9}
shift 2 2>/dev/null || shift $#
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(1 2 3)
bin=build/bin
[[ -x $bin/kiln-opt && -x $bin/kiln-gen ]] || { echo "error: build kiln first (scripts/build.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# medians FILE: lines look like "   12.345 ms  fusion"; the median per name, in order.
medians() {
  awk '$2 == "ms" { t[$3] = t[$3] " " $1; if (!($3 in seen)) { seen[$3] = 1; order[++n] = $3 } }
    END {
      for (i = 1; i <= n; i++) {
        k = split(substr(t[order[i]], 2), v, " ")
        for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++) if (v[b] + 0 < v[a] + 0) { x = v[a]; v[a] = v[b]; v[b] = x }
        printf "%s %.1f  ", order[i], v[int((k + 1) / 2)]
      }
    }' "$1"
}

echo "passes on kiln-gen --nodes $nodes, median of $runs runs (ms)"
for seed in "${seeds[@]}"; do
  "$bin/kiln-gen" --nodes "$nodes" --seed "$seed" -o "$tmp/g.kir"
  : >"$tmp/times"
  for ((i = 0; i < runs; i++)); do
    "$bin/kiln-opt" "$tmp/g.kir" --time-passes --emit=stats -o "$tmp/stats.json" 2>>"$tmp/times"
  done
  kernels=$(grep -o '"kernels": [0-9]*' "$tmp/stats.json" | cut -d' ' -f2)
  echo "seed $seed ($kernels kernels): $(medians "$tmp/times")"
done

# Kernels compile one thread per core: the figure depends on the machine's cores.
echo "code generation of examples/llama_decoder.kir, median of $runs runs (ms, $(nproc) cores)"
for emit in ptx "ptx --quick-ptx" spirv; do
  : >"$tmp/times"
  for ((i = 0; i < runs; i++)); do
    # shellcheck disable=SC2086 # the kind and its flag
    "$bin/kiln-opt" examples/llama_decoder.kir --time-passes --emit=$emit --sm=sm_90 -o /dev/null \
      2>>"$tmp/times"
  done
  echo "$emit: $(medians "$tmp/times")"
done
