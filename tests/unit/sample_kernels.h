// Hand-built kernels shared by the SPIR-V and Vulkan tests.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "compiler/kernel_ir.h"

namespace kiln::testing {

using compiler::KernelBuilder;
using compiler::KOp;
using compiler::KType;
using compiler::MemType;

// out[i] = body(in_0[i], in_1[i], ...) for i < dims[0]. Buffers: the inputs, then out.
inline compiler::Kernel elementwise(std::string name, std::vector<MemType> ins, MemType out,
                                    std::function<int(KernelBuilder &, std::vector<int>)> body) {
  compiler::Kernel k;
  k.name = std::move(name);
  k.numDims = 1;
  for (size_t i = 0; i < ins.size(); ++i)
    k.buffers.push_back({"in" + std::to_string(i), ins[i], false});
  k.buffers.push_back({"out", out, true});
  KernelBuilder b(k);
  int i = b.globalId();
  b.guard(b.op(KOp::ILt, KType::Bool, {i, b.dim(0)}));
  std::vector<int> loaded;
  for (size_t j = 0; j < ins.size(); ++j)
    loaded.push_back(b.load(static_cast<int>(j), compiler::registerType(ins[j]), i));
  b.store(static_cast<int>(ins.size()), i, body(b, loaded));
  return k;
}

// A unary or binary float op on f32 buffers.
inline compiler::Kernel floatOp(KOp op, int arity) {
  std::vector<MemType> ins(arity, MemType::F32);
  return elementwise("float_op", ins, MemType::F32,
                     [&](KernelBuilder &b, std::vector<int> v) { return b.op(op, KType::F32, v); });
}

// out[i] = a[i] * b[i % m] + exp(a[i]) with n = dims[0], m = dims[1]: a broadcast.
inline compiler::Kernel mulBroadcastExp() {
  compiler::Kernel k;
  k.name = "mul_broadcast_exp";
  k.numDims = 2;
  k.buffers = {{"a", MemType::F32, false}, {"b", MemType::F32, false}, {"out", MemType::F32, true}};
  KernelBuilder b(k);
  int i = b.globalId();
  b.guard(b.op(KOp::ILt, KType::Bool, {i, b.dim(0)}));
  int a = b.load(0, KType::F32, i);
  int bi = b.load(1, KType::F32, b.op(KOp::IRem, KType::I32, {i, b.dim(1)}));
  int prod = b.op(KOp::FMul, KType::F32, {a, bi});
  b.store(2, i, b.op(KOp::FAdd, KType::F32, {prod, b.op(KOp::FExp, KType::F32, {a})}));
  return k;
}

// Row sums and maxima, one workgroup per row: out_sum[r] = sum of in[r, :], out_max[r] =
// max of in[r, :], rows = dims[0], cols = dims[1]. Each invocation accumulates a strided
// part of the row in variables (a loop), then the workgroup combines the partials with a
// shared-memory tree (barriers; halving loop). Workgroups past the last row do nothing
// (a uniform if). Buffers: in, out_sum, out_max.
inline compiler::Kernel rowSumMax() {
  compiler::Kernel k;
  k.name = "row_sum_max";
  k.numDims = 2;
  k.buffers = {{"in", MemType::F32, false},
               {"out_sum", MemType::F32, true},
               {"out_max", MemType::F32, true}};
  constexpr int kSize = compiler::kWorkgroupSize;
  k.shared = {{MemType::F32, kSize}, {MemType::F32, kSize}};
  KernelBuilder b(k);
  int row = b.groupId(), lane = b.localId(), rows = b.dim(0), cols = b.dim(1);
  b.ifBegin(b.op(KOp::ILt, KType::Bool, {row, rows}));
  int sum = b.varNew(KType::F32, b.constF(0));
  int max = b.varNew(KType::F32, b.constF(-std::numeric_limits<float>::infinity()));
  int base = b.op(KOp::IMul, KType::I32, {row, cols});
  int c = b.loopBegin(lane, cols, b.constI(kSize));
  int x = b.load(0, KType::F32, b.op(KOp::IAdd, KType::I32, {base, c}));
  b.varSet(sum, b.op(KOp::FAdd, KType::F32, {b.varGet(KType::F32, sum), x}));
  b.varSet(max, b.op(KOp::FMax, KType::F32, {b.varGet(KType::F32, max), x}));
  b.loopEnd();
  b.sharedStore(0, lane, b.varGet(KType::F32, sum));
  b.sharedStore(1, lane, b.varGet(KType::F32, max));
  b.barrier();
  // for (half = kSize / 2; half > 0; half /= 2), as a loop over steps.
  int half = b.varNew(KType::I32, b.constI(kSize / 2));
  int steps = 0;
  for (int w = kSize; w > 1; w /= 2)
    ++steps;
  b.loopBegin(b.constI(0), b.constI(steps), b.constI(1));
  int h = b.varGet(KType::I32, half);
  b.ifBegin(b.op(KOp::ILt, KType::Bool, {lane, h}));
  int other = b.op(KOp::IAdd, KType::I32, {lane, h});
  b.sharedStore(0, lane,
                b.op(KOp::FAdd, KType::F32,
                     {b.sharedLoad(0, KType::F32, lane), b.sharedLoad(0, KType::F32, other)}));
  b.sharedStore(1, lane,
                b.op(KOp::FMax, KType::F32,
                     {b.sharedLoad(1, KType::F32, lane), b.sharedLoad(1, KType::F32, other)}));
  b.ifEnd();
  b.barrier();
  b.varSet(half, b.op(KOp::IDiv, KType::I32, {h, b.constI(2)}));
  b.loopEnd();
  b.ifBegin(b.op(KOp::ILt, KType::Bool, {lane, b.constI(1)}));
  b.store(1, row, b.sharedLoad(0, KType::F32, b.constI(0)));
  b.store(2, row, b.sharedLoad(1, KType::F32, b.constI(0)));
  b.ifEnd();
  b.ifEnd();
  return k;
}

// out[i] = the sum of in over invocation i's subgroup, by a butterfly of shuffles (each
// step where its lane mask is below the subgroup size); size[i] = the subgroup size. No
// guard: invocations past n read element 0 and store nothing.
inline compiler::Kernel subgroupSum() {
  compiler::Kernel k;
  k.name = "subgroup_sum";
  k.numDims = 1;
  k.buffers = {
      {"in", MemType::F32, false}, {"out", MemType::F32, true}, {"size", MemType::I32, true}};
  KernelBuilder b(k);
  int gid = b.globalId(), n = b.dim(0), size = b.subgroupSize();
  int inside = b.op(KOp::ILt, KType::Bool, {gid, n});
  int sum = b.varNew(
      KType::F32, b.load(0, KType::F32, b.op(KOp::Select, KType::I32, {inside, gid, b.constI(0)})));
  for (int mask = 1; mask < compiler::kWorkgroupSize; mask *= 2) {
    b.ifBegin(b.op(KOp::ILt, KType::Bool, {b.constI(mask), size}));
    int v = b.varGet(KType::F32, sum);
    b.varSet(sum, b.op(KOp::FAdd, KType::F32, {v, b.shuffleXor(v, mask)}));
    b.ifEnd();
  }
  b.ifBegin(inside);
  b.store(1, gid, b.varGet(KType::F32, sum));
  b.store(2, gid, size);
  b.ifEnd();
  return k;
}

// Workgroups count themselves in: invocation 0 of each, after a fence, adds 1 to
// counts[0] and stores the count it saw to order[group]; the workgroup that sees the last
// count (there are ceil(dims[0] / 256) workgroups) leaves counts[0] at zero again. Ids:
// %0 local_id, %1 group_id, %2 const 1, %3 ilt, %4 if, %5 fence, %6 const 0,
// %7 atomic_add, %8 store.
inline compiler::Kernel groupCount() {
  compiler::Kernel k;
  k.name = "group_count";
  k.numDims = 1;
  k.buffers = {{"counts", MemType::I32, true}, {"order", MemType::I32, true}};
  KernelBuilder b(k);
  int lane = b.localId(), group = b.groupId(), one = b.constI(1);
  b.ifBegin(b.op(KOp::ILt, KType::Bool, {lane, one}));
  b.fence();
  int zero = b.constI(0);
  int before = b.atomicAdd(0, zero, one);
  b.store(1, group, before);
  int size = b.constI(compiler::kWorkgroupSize);
  int groups =
      b.op(KOp::IDiv, KType::I32,
           {b.op(KOp::IAdd, KType::I32, {b.dim(0), b.constI(compiler::kWorkgroupSize - 1)}), size});
  int lastCount = b.op(KOp::ISub, KType::I32, {groups, one});
  b.ifBegin(b.op(KOp::Not, KType::Bool, {b.op(KOp::ILt, KType::Bool, {before, lastCount})}));
  b.store(0, zero, zero);
  b.ifEnd();
  b.ifEnd();
  return k;
}

// c = a * b for one 16 x 16 f16 matrix of each, by one subgroup: a and b copied to shared
// arrays (b transposed when `transposedB`: the array holds its columns), one product of
// a zero sum, and the sums out through an f32 array. Ids: %0 local_id, %1 const 256,
// %2 ilt, %3 if, %4 load a, %5 shared_store, %6 load b, %7 shared_store, %8 end_if,
// %9 barrier, %10 const 0, %11 mat_load a, %12 mat_load b, %13 mat_zero, %14 var,
// %15 get, %16 mat_mul_add, %17 set, %18 get, %19 mat_store, %20 barrier, %21 if,
// %22 shared_load, %23 store, %24 end_if.
inline compiler::Kernel matrixProduct(bool transposedB) {
  compiler::Kernel k;
  k.name = "matrix_product";
  k.buffers = {{"a", MemType::F16, false}, {"b", MemType::F16, false}, {"c", MemType::F32, true}};
  k.shared = {{MemType::F16, 256}, {MemType::F16, 256}, {MemType::F32, 256}};
  KernelBuilder b(k);
  int lane = b.localId(), n = b.constI(256);
  int inside = b.op(KOp::ILt, KType::Bool, {lane, n});
  b.ifBegin(inside);
  b.sharedStore(0, lane, b.load(0, KType::F32, lane));
  b.sharedStore(1, lane, b.load(1, KType::F32, lane));
  b.ifEnd();
  b.barrier();
  int zero = b.constI(0);
  int fa = b.matLoad(KType::MatA, 0, zero, 16, false);
  int fb = b.matLoad(KType::MatB, 1, zero, 16, transposedB);
  int sum = b.varNew(KType::MatC, b.matZero());
  b.varSet(sum, b.matMulAdd(fa, fb, b.varGet(KType::MatC, sum)));
  b.matStore(2, zero, 16, b.varGet(KType::MatC, sum));
  b.barrier();
  b.ifBegin(inside);
  b.store(2, lane, b.sharedLoad(2, KType::F32, lane));
  b.ifEnd();
  return k;
}

} // namespace kiln::testing
