#!/usr/bin/env bash
# The GPU-machine run (see ../shared/device.md). Here, first `bash scripts/device_pack.sh`
# (it builds kiln-run, kiln-bench and compile_test with LLVM linked in and packs them into
# build-device/pack/), and fetch the Vulkan loader into .gl/ once (device.md has the
# recipe), with the GL vendor-neutral libraries the NVIDIA driver needs beside it
# (without libglvnd0 its Vulkan driver is not found): `apt-get $o download libvulkan1
# libglvnd0 libegl1 libgl1 libglx0 libgles2 libopengl0` in .gl/, with $o as in
# device.md. Then run this script through the device tool with carry
# [build-device/pack, .gl], output under $OUT. (KILN_BIN names a folder of unpacked
# binaries instead.)
#
# It checks kiln's kernels on the GPU (CUDA and Vulkan; KILN_VULKAN=0 skips Vulkan)
# against the reference interpreter, times them (kernel time from device events or
# timestamps, median of --iters runs), with KILN_NCU=1 prints each kernel's time from
# Nsight Compute, runs ../shared/bench/torch_anchors.py (or the copy in the pack),
# bench/torch_matmul.py and bench/torch_attention.py in the same call (KILN_TORCH=0 skips
# them), runs kiln-bench on CUDA and sets its JSON beside PyTorch's anchors
# (bench/side_by_side.py) and beside a run with --quick-ptx (bench/ab.py; KILN_QUICK=0
# skips it), and prints a short table last. KILN_CONFORMANCE=1 runs the conformance tests
# instead (the end-to-end tests and 200 generated graphs on CUDA and Vulkan; KILN_TESTS
# narrows them, as a gtest filter), and KILN_CONFORMANCE=both runs them first and then
# the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
bin=${KILN_BIN:-}
if [[ -z $bin ]]; then
  bin=$(mktemp -d)
  for b in kiln-run kiln-bench compile_test; do
    [[ -f build-device/pack/$b.gz ]] && gunzip -c "build-device/pack/$b.gz" >"$bin/$b" &&
      chmod +x "$bin/$b"
  done
  cp build-device/pack/*.py "$bin/" 2>/dev/null
fi
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
"$bin/kiln-run" --list-devices

status=0
if [[ ${KILN_CONFORMANCE:-0} != 0 ]]; then
  KILN_SOURCE_DIR=$PWD "$bin/compile_test" --gtest_filter="${KILN_TESTS:-*}" 2>&1 |
    tee "$out/compile_test.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |generated graphs|refused"
  status=${PIPESTATUS[0]}
  [[ $KILN_CONFORMANCE == both ]] || exit "$status"
fi

table=$out/table.txt
: >"$table"
# run NAME DEVICE FILE [kiln-run args...]: checks and times one graph.
run() {
  local name=$1 dev=$2 file=$3
  shift 3
  echo "== $name on $dev"
  "$bin/kiln-run" "$file" --device="$dev" --iters 50 "$@" | tee "$out/$name.$dev.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  local verdict us
  verdict=$(grep -cE "^FAIL" "$out/$name.$dev.log")
  us=$(grep -oE "[0-9.]+ us median" "$out/$name.$dev.log" | tail -1 | cut -d' ' -f1)
  printf "%-36s %-7s %10s us  %s\n" "$name" "$dev" "${us:-?}" \
    "$(grep -q "^PASS" "$out/$name.$dev.log" && echo PASS || { [[ $verdict -eq 0 ]] && echo "not checked" || echo FAIL; })" >>"$table"
}

devices=(cuda vulkan)
[[ ${KILN_VULKAN:-1} == 0 ]] && devices=(cuda)
for dev in "${devices[@]}"; do
  run pointwise_chain[1x4096] $dev examples/pointwise_chain.kir --check --dims n=1
  run pointwise_chain[4096x4096] $dev examples/pointwise_chain.kir --check --dims n=4096
  run rmsnorm_mul[1x4096,f16] $dev examples/rmsnorm_mul.kir --check --dims t=1
  run rmsnorm_mul[8192x4096,f16] $dev examples/rmsnorm_mul.kir --check --dims t=8192
  run rmsnorm_mul[8192x4096,f32] $dev bench/graphs/rmsnorm_mul_f32.kir --check --dims t=8192
  run ew_chain[16M,f32] $dev bench/graphs/ew_chain.kir --check --dims n=16777216
  run softmax_scale_mask[32x512x512,f16] $dev examples/softmax_scale_mask.kir --check
  run tiny_chain[64ops,4096] $dev bench/graphs/tiny_chain.kir --check
  run independent_reductions[8x32x4096] $dev bench/graphs/independent_reductions.kir --check
  run gemv[4096x11008,f16] $dev bench/graphs/gemv_f16.kir --check
  run gemv_nk[11008x4096,f16] $dev bench/graphs/gemv_f16_nk.kir --check
  run decode_attention[kv1024] $dev bench/graphs/decode_attention.kir --check --dims kv=1024
  run decode_attention[kv4096] $dev bench/graphs/decode_attention.kir --dims kv=4096
  # The reference takes about 30 s a decoder layer: checked once, on CUDA.
  check=()
  [[ $dev == cuda ]] && check=(--check)
  run llama_decoder[kv1024] $dev examples/llama_decoder.kir "${check[@]}" --dims kv=1024
  run llama_decoder_nk[kv1024] $dev bench/graphs/llama_decoder_nk.kir "${check[@]}" --dims kv=1024
  # 4096^3 in float64 would take the reference minutes: the tests check this template
  # at smaller sizes.
  [[ $dev == cuda ]] && run matmul[4096^3,f16] $dev bench/graphs/matmul_f16.kir
  # PyTorch's prefill anchor (512 tokens), not checked here: the reference is slow at
  # that size; EndToEnd.ASmallPrefillLayerMatches checks the graph at small sizes.
  [[ $dev == cuda ]] && run llama_prefill_nk[512] $dev bench/graphs/llama_prefill_nk.kir --dims t=512
done

# kiln-bench's JSON (median, bytes floor, bandwidth) for bench/side_by_side.py below; and
# the graphs without tensor-core kernels again with --quick-ptx (KILN_QUICK=0 skips it),
# beside the first run (bench/ab.py).
quick=(rmsnorm_mul_f16_1 rmsnorm_mul_f16_8192 rmsnorm_mul_f32_8192 ew_chain_16m softmax_scale_mask
  tiny_chain independent_reductions gemv_f16 gemv_f16_nk decode_attention_kv1024
  llama_decoder_kv1024 llama_decoder_nk_kv1024)
if [[ -x $bin/kiln-bench ]]; then
  echo "== kiln-bench on cuda"
  "$bin/kiln-bench" --device=cuda >"$out/kiln_bench.json" || status=1
  if [[ ${KILN_QUICK:-1} != 0 ]]; then
    "$bin/kiln-bench" --device=cuda --quick-ptx "${quick[@]}" >"$out/kiln_bench_quick.json" ||
      status=1
  fi
fi

# KILN_NCU=1: each kernel's time in the decoder and prefill layers, the square matmul,
# GEMVs, rms_norm, softmax and the elementwise chain, from Nsight Compute, at the clocks
# the GPU runs at by itself (the PyTorch anchors' conditions): ncu's default locks them
# at base, which made gemv_f16 30.88 us against 29.66 unlocked (H200, one call).
if [[ ${KILN_NCU:-0} == 1 ]] && command -v ncu >/dev/null; then
  for g in "examples/llama_decoder.kir --dims kv=1024" "bench/graphs/llama_decoder_nk.kir --dims kv=1024" \
    "bench/graphs/llama_prefill_nk.kir --dims t=512" bench/graphs/matmul_f16.kir \
    "bench/graphs/decode_attention.kir --dims kv=1024" "bench/graphs/decode_attention.kir --dims kv=4096" \
    bench/graphs/gemv_f16.kir bench/graphs/gemv_f16_nk.kir "examples/rmsnorm_mul.kir --dims t=8192" \
    examples/softmax_scale_mask.kir "bench/graphs/ew_chain.kir --dims n=16777216"; do
    echo "== ncu: $g"
    # shellcheck disable=SC2086 # the graph and its --dims
    ncu --clock-control none --metrics gpu__time_duration.sum "$bin/kiln-run" $g --device=cuda 2>&1 |
      tee -a "$out/ncu.log" | grep -E "^  kiln_|gpu__time_duration" | paste - - |
      awk '{print $1, $2, $(NF-1), $NF}'
  done
fi

# The team's PyTorch anchors: ../shared/bench/torch_anchors.py, or a copy carried
# beside the binaries (the device machine has no ../shared).
anchors=../shared/bench/torch_anchors.py
[[ -f $anchors ]] || anchors=$bin/torch_anchors.py
if [[ ${KILN_TORCH:-1} != 0 && -f $anchors ]]; then
  echo "== PyTorch, same machine, same call"
  OUT=$out python3 "$anchors" 2>&1 | tee "$out/torch.log"
fi
# The matmul's and the decode attention's own anchors (cuBLAS and SDPA through PyTorch),
# which torch_anchors.py lacks.
if [[ ${KILN_TORCH:-1} != 0 ]]; then
  for anchor in bench/torch_matmul.py bench/torch_attention.py; do
    python3 "$anchor" 2>&1 | tee -a "$out/torch.log"
  done
fi

echo
if [[ -f $out/kiln_bench.json && -f $out/torch_anchors.json ]]; then
  echo "== kiln-bench beside PyTorch's anchors"
  python3 bench/side_by_side.py "$out/kiln_bench.json" "$out/torch_anchors.json"
fi
if [[ -f $out/kiln_bench.json && -f $out/kiln_bench_quick.json ]]; then
  echo "== kiln-bench: O3 PTX beside --quick-ptx"
  python3 bench/ab.py "$out/kiln_bench.json" "$out/kiln_bench_quick.json" O3 quick
fi
echo "== kiln on $gpu (kernel time, median of 50)"
cat "$table"
if [[ -f $out/torch.log ]]; then
  echo "== PyTorch on the same graphs"
  grep -E "^copy|^(rmsnorm_mul|ew_chain|softmax_scale_mask|tiny_chain|llama7b).*inductor|^matmul|^decode_attention" "$out/torch.log"
fi
exit "$status"
