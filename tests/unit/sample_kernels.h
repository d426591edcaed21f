// Hand-built kernels shared by the SPIR-V and Vulkan tests.
#pragma once

#include <functional>
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

} // namespace kiln::testing
