// The SPIR-V builder and emitter: every kernel op and memory type gives a valid module.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "compiler/spirv/emit_spirv.h"
#include "compiler/spirv/spirv_builder.h"
#include "tests/unit/sample_kernels.h"

namespace kiln::compiler {
namespace {

using testing::elementwise;
using testing::floatOp;

std::vector<uint32_t> emitValid(const Kernel &k) {
  Expected<std::vector<uint32_t>> words = emitSpirv(k);
  EXPECT_TRUE(words) << words.message();
  if (!words)
    return {};
  Status s = validateSpirv(*words);
  EXPECT_FALSE(s.failed()) << s.message() << "\n" << disassembleSpirv(*words);
  return *words;
}

// Nested loops (the inner one starting at the outer's induction variable), an if and
// variables of every type under a guard: out[i] = the number of pairs j < i % 5,
// j <= m < 4 with j + m odd, plus 0.5 when there was one.
Kernel nestedRegions() {
  Kernel k;
  k.name = "nested_regions";
  k.numDims = 1;
  k.buffers = {{"out", MemType::F32, true}};
  KernelBuilder b(k);
  int i = b.globalId();
  b.guard(b.op(KOp::ILt, KType::Bool, {i, b.dim(0)}));
  int count = b.varNew(KType::I32, b.constI(0));
  int any = b.varNew(KType::Bool, b.emit({KOp::ConstB, KType::Bool, {}, 0}));
  int j = b.loopBegin(b.constI(0), b.op(KOp::IRem, KType::I32, {i, b.constI(5)}), b.constI(1));
  int m = b.loopBegin(j, b.constI(4), b.constI(1));
  int odd = b.op(KOp::IRem, KType::I32, {b.op(KOp::IAdd, KType::I32, {j, m}), b.constI(2)});
  b.ifBegin(b.op(KOp::ILt, KType::Bool, {b.constI(0), odd}));
  b.varSet(count, b.op(KOp::IAdd, KType::I32, {b.varGet(KType::I32, count), b.constI(1)}));
  b.varSet(any, b.emit({KOp::ConstB, KType::Bool, {}, 1}));
  b.ifEnd();
  b.loopEnd();
  b.loopEnd();
  int half = b.op(KOp::Cast, KType::F32, {b.varGet(KType::Bool, any)});
  half = b.op(KOp::FMul, KType::F32, {half, b.constF(0.5f)});
  int n = b.op(KOp::Cast, KType::F32, {b.varGet(KType::I32, count)});
  b.store(0, i, b.op(KOp::FAdd, KType::F32, {n, half}));
  return k;
}

size_t countOf(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1))
    ++n;
  return n;
}

struct FloatOpCase {
  KOp op;
  int arity;
};
const FloatOpCase kFloatOps[] = {
    {KOp::FAdd, 2}, {KOp::FSub, 2}, {KOp::FMul, 2},     {KOp::FDiv, 2},      {KOp::FNeg, 1},
    {KOp::FAbs, 1}, {KOp::FMax, 2}, {KOp::FMin, 2},     {KOp::FSqrt, 1},     {KOp::FRsqrt, 1},
    {KOp::FExp, 1}, {KOp::FLog, 1}, {KOp::FSin, 1},     {KOp::FCos, 1},      {KOp::FTanh, 1},
    {KOp::FPow, 2}, {KOp::FErf, 1}, {KOp::RoundF16, 1}, {KOp::RoundBF16, 1}, {KOp::FExp16, 1},
};

TEST(SpirvEmit, EveryFloatOpValidates) {
  for (const FloatOpCase &c : kFloatOps) {
    SCOPED_TRACE(static_cast<int>(c.op));
    emitValid(floatOp(c.op, c.arity));
  }
}

TEST(SpirvEmit, EveryMemTypeLoadsAndStores) {
  const MemType all[] = {MemType::F32, MemType::F16, MemType::BF16, MemType::I32};
  for (MemType in : all) {
    for (MemType out : all) {
      Kernel k = elementwise("copy", {in}, out, [&](KernelBuilder &b, std::vector<int> v) {
        KType want = registerType(out);
        return registerType(in) == want ? v[0] : b.op(KOp::Cast, want, {v[0]});
      });
      std::vector<uint32_t> words = emitValid(k);
      bool sixteen =
          in == MemType::F16 || in == MemType::BF16 || out == MemType::F16 || out == MemType::BF16;
      EXPECT_EQ(disassembleSpirv(words).find("StorageBuffer16BitAccess") != std::string::npos,
                sixteen);
    }
  }
}

// Integer arithmetic, compares, logic, select and every cast in one kernel.
TEST(SpirvEmit, IntegerLogicAndCasts) {
  Kernel k = elementwise(
      "int_logic", {MemType::I32, MemType::F32}, MemType::I32,
      [](KernelBuilder &b, std::vector<int> v) {
        int x = v[0], f = v[1];
        int seven = b.constI(7);
        int s = b.op(KOp::IAdd, KType::I32, {x, seven});
        s = b.op(KOp::ISub, KType::I32, {s, b.op(KOp::IMul, KType::I32, {x, seven})});
        s = b.op(
            KOp::IAdd, KType::I32,
            {b.op(KOp::IDiv, KType::I32, {s, seven}), b.op(KOp::IRem, KType::I32, {x, seven})});
        int c = b.op(KOp::ILt, KType::Bool, {x, seven});
        int fc = b.op(KOp::FLt, KType::Bool, {f, b.constF(0.5f)});
        fc = b.op(KOp::Or, KType::Bool, {fc, b.op(KOp::FLe, KType::Bool, {f, b.constF(-1)})});
        fc = b.op(KOp::And, KType::Bool, {fc, b.op(KOp::FEq, KType::Bool, {f, f})});
        fc = b.op(KOp::Or, KType::Bool, {fc, b.op(KOp::FNe, KType::Bool, {f, b.constF(NAN)})});
        int t = b.emit({KOp::ConstB, KType::Bool, {}, 1});
        c = b.op(KOp::And, KType::Bool, {c, b.op(KOp::Not, KType::Bool, {fc})});
        c = b.op(KOp::Or, KType::Bool, {c, b.op(KOp::And, KType::Bool, {t, fc})});
        int fromF = b.op(KOp::Cast, KType::I32, {f});
        int fromB = b.op(KOp::Cast, KType::I32, {c});
        int asF = b.op(KOp::Cast, KType::F32, {x});
        int bF = b.op(KOp::Cast, KType::F32, {c});
        int back = b.op(KOp::Cast, KType::I32, {b.op(KOp::FAdd, KType::F32, {asF, bF})});
        int nz = b.op(KOp::And, KType::Bool,
                      {b.op(KOp::Cast, KType::Bool, {x}), b.op(KOp::Cast, KType::Bool, {f})});
        int sum = b.op(KOp::IAdd, KType::I32, {s, b.op(KOp::IAdd, KType::I32, {fromF, fromB})});
        sum = b.op(KOp::IAdd, KType::I32, {sum, back});
        return b.op(KOp::Select, KType::I32, {nz, sum, b.constI(-1)});
      });
  emitValid(k);
}

TEST(SpirvEmit, ModuleShape) {
  std::vector<uint32_t> words = emitValid(testing::mulBroadcastExp());
  std::string text = disassembleSpirv(words);
  for (const char *want :
       {"OpEntryPoint GLCompute %mul_broadcast_exp \"main\"", "LocalSize 256 1 1",
        "OpSelectionMerge", "OpBranchConditional", "Binding 3", "NonWritable",
        "OpMemoryModel Logical GLSL450", "OpExtInstImport \"GLSL.std.450\""})
    EXPECT_NE(text.find(want), std::string::npos) << want << " missing in\n" << text;
  // Three read-only buffers: a, b and dims.
  EXPECT_EQ(countOf(text, "NonWritable"), 3u);
}

TEST(SpirvEmit, RowSumMaxValidatesAndIsDeterministic) {
  Kernel k = testing::rowSumMax();
  ASSERT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  std::vector<uint32_t> words = emitValid(k);
  ASSERT_FALSE(words.empty());
  Expected<std::vector<uint32_t>> again = emitSpirv(k);
  ASSERT_TRUE(again) << again.message();
  EXPECT_EQ(words, *again);
}

TEST(SpirvEmit, SubgroupShufflesValidate) {
  std::string text = disassembleSpirv(emitValid(testing::subgroupSum()));
  for (const char *want : {"OpCapability GroupNonUniform\n", "OpCapability GroupNonUniformShuffle",
                           "BuiltIn SubgroupSize", "OpGroupNonUniformShuffleXor %float %uint_3"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " missing in\n" << text;
  EXPECT_EQ(countOf(text, "OpGroupNonUniformShuffleXor"), 8u) << text;
}

// Atomics at device scope, fences as memory barriers, and the written buffers of a kernel
// with a fence coherent.
TEST(SpirvEmit, AtomicsAndFencesValidate) {
  std::string text = disassembleSpirv(emitValid(testing::groupCount()));
  for (const char *want : {"OpAtomicIAdd %int", "OpMemoryBarrier %uint_1 %uint_72",
                           "OpDecorate %counts Coherent", "OpDecorate %order Coherent"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " missing in\n" << text;
  EXPECT_EQ(countOf(text, "Coherent"), 2u) << text;
}

// Structured control flow, shared arrays, barriers and the workgroup builtins.
TEST(SpirvEmit, RowSumMaxShape) {
  std::string text = disassembleSpirv(emitValid(testing::rowSumMax()));
  // Two loops; the guardless kernel's ifs: the row check, the tree step and lane 0.
  EXPECT_EQ(countOf(text, "OpLoopMerge"), 2u) << text;
  EXPECT_EQ(countOf(text, "OpSelectionMerge"), 3u) << text;
  EXPECT_EQ(countOf(text, "OpControlBarrier %uint_2 %uint_2 %uint_264"), 2u) << text;
  EXPECT_EQ(countOf(text, "= OpVariable %_ptr_Workgroup__arr_float_uint_256 Workgroup"), 2u)
      << text;
  // Two float variables, one int variable and two induction variables.
  EXPECT_EQ(countOf(text, "= OpVariable %_ptr_Function_float Function"), 2u) << text;
  EXPECT_EQ(countOf(text, "= OpVariable %_ptr_Function_int Function"), 3u) << text;
  for (const char *want :
       {"BuiltIn LocalInvocationId", "BuiltIn WorkgroupId", "BuiltIn NumWorkgroups", "OpSLessThan"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " missing in\n" << text;
  // Only the builtins a kernel reads are declared.
  EXPECT_EQ(text.find("GlobalInvocationId"), std::string::npos) << text;
}

TEST(SpirvEmit, NestedRegionsUnderAGuard) {
  Kernel k = nestedRegions();
  ASSERT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  std::string text = disassembleSpirv(emitValid(k));
  EXPECT_EQ(countOf(text, "OpLoopMerge"), 2u) << text;
  EXPECT_EQ(countOf(text, "OpSelectionMerge"), 2u) << text; // the guard's and the inner if
  EXPECT_EQ(countOf(text, "= OpVariable %_ptr_Function_bool Function"), 1u) << text;
}

TEST(SpirvEmit, ByteIdenticalAcrossRuns) {
  Kernel k = floatOp(KOp::FErf, 1);
  Expected<std::vector<uint32_t>> a = emitSpirv(k), b = emitSpirv(k);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
}

TEST(SpirvEmit, KernelWithoutGuard) {
  Kernel k;
  k.name = "fill";
  k.buffers = {{"out", MemType::F32, true}};
  KernelBuilder b(k);
  b.store(0, b.globalId(), b.constF(INFINITY));
  std::string text = disassembleSpirv(emitValid(k));
  EXPECT_EQ(text.find("OpSelectionMerge"), std::string::npos);
}

TEST(SpirvEmit, RejectsUndefinedOperand) {
  Kernel k;
  k.name = "bad";
  k.buffers = {{"out", MemType::F32, true}};
  KernelBuilder b(k);
  b.store(0, 5, 6);
  Expected<std::vector<uint32_t>> words = emitSpirv(k);
  ASSERT_FALSE(words);
  EXPECT_NE(words.message().find("undefined value"), std::string::npos) << words.message();
}

TEST(SpirvEmit, RejectsUnbalancedRegionEnd) {
  Kernel k;
  k.name = "bad";
  KernelBuilder b(k);
  b.loopEnd();
  Expected<std::vector<uint32_t>> words = emitSpirv(k);
  ASSERT_FALSE(words);
  EXPECT_NE(words.message().find("closes no region"), std::string::npos) << words.message();
}

TEST(SpirvBuilder, CachesTypesAndConstants) {
  spirv::Builder b;
  EXPECT_EQ(b.intType(32, true), b.intType(32, true));
  EXPECT_NE(b.intType(32, true), b.intType(32, false));
  EXPECT_EQ(b.constF32(1.5f), b.constF32(1.5f));
  EXPECT_NE(b.constF32(0.0f), b.constF32(-0.0f));
  spirv::Id f = b.floatType(32);
  EXPECT_NE(b.runtimeArrayType(f, 4), b.runtimeArrayType(f, 8));
  EXPECT_EQ(b.arrayType(f, b.constU32(4)), b.arrayType(f, b.constU32(4)));
  EXPECT_NE(b.arrayType(f, b.constU32(4)), b.arrayType(f, b.constU32(8)));
  EXPECT_EQ(b.pointerType(spv::StorageClassStorageBuffer, f),
            b.pointerType(spv::StorageClassStorageBuffer, f));
}

TEST(SpirvBuilder, ValidatorRejectsGarbage) {
  EXPECT_TRUE(validateSpirv({0x07230203u, 0x00010300u, 0, 1}).failed());
  EXPECT_NE(disassembleSpirv({1, 2, 3}).find("failed"), std::string::npos);
}

// The command-line validator too, as a second opinion on the same modules.
TEST(SpirvEmit, SpirvValToolAccepts) {
  if (std::system("command -v spirv-val >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "SKIPPED: spirv-val not found";
  std::vector<Kernel> kernels = {testing::mulBroadcastExp(), testing::rowSumMax(), nestedRegions()};
  for (const FloatOpCase &c : kFloatOps)
    kernels.push_back(floatOp(c.op, c.arity));
  kernels.push_back(elementwise("bf16_to_f16", {MemType::BF16}, MemType::F16,
                                [](KernelBuilder &, std::vector<int> v) { return v[0]; }));
  std::string path = ::testing::TempDir() + "kiln_spirv_test.spv";
  for (const Kernel &k : kernels) {
    std::vector<uint32_t> words = emitValid(k);
    {
      std::ofstream f(path, std::ios::binary);
      f.write(reinterpret_cast<const char *>(words.data()),
              static_cast<std::streamsize>(words.size() * 4));
    }
    std::string cmd = "spirv-val --target-env vulkan1.1 " + path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << disassembleSpirv(words);
  }
  std::remove(path.c_str());
}

} // namespace
} // namespace kiln::compiler
