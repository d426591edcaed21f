// PTX emitter: every op and memory type compiles, ptxas accepts the result, output is stable.
#include "compiler/nvptx/emit_nvptx.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/unit/sample_kernels.h"

namespace kiln::compiler {
namespace {

// Reads every buffer type, applies every op, writes every buffer type.
Kernel everyOpKernel() {
  Kernel k;
  k.name = "every_op";
  k.buffers = {{"a", MemType::F32, false},   {"h", MemType::F16, false},
               {"bf", MemType::BF16, false}, {"i", MemType::I32, false},
               {"oa", MemType::F32, true},   {"oh", MemType::F16, true},
               {"obf", MemType::BF16, true}, {"oi", MemType::I32, true}};
  k.numDims = 2;
  KernelBuilder b(k);
  int gid = b.globalId();
  int n = b.dim(0);
  int m = b.dim(1);
  b.guard(b.op(KOp::ILt, KType::Bool, {gid, n}));

  auto f = [&](KOp op, std::vector<int> args) { return b.op(op, KType::F32, std::move(args)); };
  int a = b.load(0, KType::F32, gid);
  int h = b.load(1, KType::F32, gid);
  int bf = b.load(2, KType::F32, gid);
  int x = f(KOp::FAdd, {a, h});
  for (KOp op : {KOp::FSub, KOp::FMul, KOp::FDiv, KOp::FMax, KOp::FMin, KOp::FPow})
    x = f(op, {x, bf});
  for (KOp op : {KOp::FNeg, KOp::FAbs, KOp::FSqrt, KOp::FRsqrt, KOp::FExp, KOp::FExp16, KOp::FLog,
                 KOp::FSin, KOp::FCos, KOp::FTanh, KOp::FErf, KOp::RoundF16, KOp::RoundBF16})
    x = f(op, {x});
  // Special constants behind a run-time choice, so LLVM cannot fold the chain above away.
  int nan = b.constF(std::numeric_limits<float>::quiet_NaN());
  int inf = b.constF(std::numeric_limits<float>::infinity());
  x = b.op(KOp::Select, KType::F32, {b.op(KOp::FLt, KType::Bool, {x, a}), x, nan});
  x = b.op(KOp::Select, KType::F32, {b.op(KOp::FLt, KType::Bool, {x, h}), x, inf});

  int i = b.load(3, KType::I32, gid);
  int j = b.op(KOp::IAdd, KType::I32, {i, gid});
  for (KOp op : {KOp::ISub, KOp::IMul, KOp::IDiv, KOp::IRem})
    j = b.op(op, KType::I32, {j, m});
  j = b.op(KOp::IAdd, KType::I32, {j, b.constI(-7)});

  auto bl = [&](KOp op, std::vector<int> args) { return b.op(op, KType::Bool, std::move(args)); };
  int c = bl(KOp::ILt, {j, gid});
  c = bl(KOp::And, {c, bl(KOp::FLt, {x, a})});
  c = bl(KOp::Or, {c, bl(KOp::FLe, {x, h})});
  c = bl(KOp::And, {c, bl(KOp::FEq, {x, bf})});
  c = bl(KOp::Or, {c, bl(KOp::FNe, {x, a})});
  c = bl(KOp::Not, {c});
  c = bl(KOp::Or, {c, b.emit({KOp::ConstB, KType::Bool, {}, 1})});
  c = bl(KOp::And, {c, b.op(KOp::Cast, KType::Bool, {j})});
  c = bl(KOp::And, {c, b.op(KOp::Cast, KType::Bool, {x})});

  x = f(KOp::FAdd, {x, b.op(KOp::Cast, KType::F32, {j})});
  x = f(KOp::FAdd, {x, b.op(KOp::Cast, KType::F32, {c})});
  j = b.op(KOp::IAdd, KType::I32, {j, b.op(KOp::Cast, KType::I32, {x})});
  j = b.op(KOp::IAdd, KType::I32, {j, b.op(KOp::Cast, KType::I32, {c})});
  x = b.op(KOp::Select, KType::F32, {c, x, a});
  j = b.op(KOp::Select, KType::I32, {c, j, i});

  b.store(4, gid, x);
  b.store(5, gid, x);
  b.store(6, gid, x);
  b.store(7, gid, j);
  return k;
}

std::string emitOrFail(const Kernel &k, std::string_view arch) {
  Expected<std::string> ptx = emitPtx(k, arch);
  EXPECT_TRUE(static_cast<bool>(ptx)) << ptx.message();
  return ptx ? *ptx : std::string();
}

// Approximate instructions other than exp's ex2.approx.f32 (which keeps subnormals).
int otherApproximations(const std::string &ptx) {
  int n = 0;
  for (size_t at = ptx.find("approx"); at != std::string::npos; at = ptx.find("approx", at + 1))
    n += ptx.compare(at - 4, 15, "ex2.approx.f32 ") != 0;
  return n;
}

std::string findPtxas() {
  if (const char *path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty() && access((dir + "/ptxas").c_str(), X_OK) == 0)
        return dir + "/ptxas";
  }
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
    return "/usr/local/cuda/bin/ptxas";
  return "";
}

// Runs ptxas on `ptx`; returns "" on success, else its output.
std::string runPtxas(const std::string &ptxas, const std::string &ptx, std::string_view arch) {
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir());
  std::string base =
      (dir / ("kiln_nvptx_" + std::to_string(getpid()) + "_" + std::string(arch))).string();
  std::ofstream(base + ".ptx") << ptx;
  std::string cmd = ptxas + " -arch=" + std::string(arch) + " " + base + ".ptx -o " + base +
                    ".cubin > " + base + ".log 2>&1";
  int rc = std::system(cmd.c_str());
  std::stringstream log;
  log << std::ifstream(base + ".log").rdbuf();
  std::remove((base + ".ptx").c_str());
  std::remove((base + ".cubin").c_str());
  std::remove((base + ".log").c_str());
  return rc == 0 ? "" : "ptxas failed (" + std::to_string(rc) + "): " + log.str();
}

class NvptxArch : public ::testing::TestWithParam<const char *> {};

TEST_P(NvptxArch, EveryOpEmitsAnEntry) {
  std::string ptx = emitOrFail(everyOpKernel(), GetParam());
  EXPECT_NE(ptx.find(".entry every_op("), std::string::npos) << ptx;
  EXPECT_NE(ptx.find(".target " + std::string(GetParam())), std::string::npos);
  EXPECT_NE(ptx.find(".maxntid 256, 1, 1"), std::string::npos);
  // One .u64 param per buffer plus the dims pointer.
  EXPECT_NE(ptx.find("every_op_param_8"), std::string::npos);
  EXPECT_EQ(ptx.find("every_op_param_9"), std::string::npos);
}

TEST_P(NvptxArch, PtxasAccepts) {
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  std::string ptx = emitOrFail(everyOpKernel(), GetParam());
  EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
}

TEST_P(NvptxArch, EachMathOpAloneAccepted) {
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  for (KOp op : {KOp::FExp, KOp::FExp16, KOp::FLog, KOp::FSin, KOp::FCos, KOp::FTanh, KOp::FPow,
                 KOp::FErf}) {
    Kernel k;
    k.name = "math_op";
    k.buffers = {{"x", MemType::F32, false}, {"y", MemType::F32, true}};
    k.numDims = 1;
    KernelBuilder b(k);
    int gid = b.globalId();
    b.guard(b.op(KOp::ILt, KType::Bool, {gid, b.dim(0)}));
    int x = b.load(0, KType::F32, gid);
    std::vector<int> args = {x};
    if (op == KOp::FPow)
      args.push_back(b.constF(2.5f));
    b.store(1, gid, b.op(op, KType::F32, args));
    std::string ptx = emitOrFail(k, GetParam());
    // Self-contained: no libdevice, no calls, no approximate instructions but exp's.
    EXPECT_EQ(ptx.find("call"), std::string::npos) << ptx;
    EXPECT_EQ(otherApproximations(ptx), 0) << ptx;
    bool exp = op == KOp::FExp || op == KOp::FExp16;
    EXPECT_EQ(ptx.find("ex2.approx") != std::string::npos, exp) << ptx;
    EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "") << printKernel(k);
  }
}

// Loops, variables, shared memory, barriers and ifs (a workgroup row reduction).
TEST_P(NvptxArch, ControlFlowAndSharedMemory) {
  std::string ptx = emitOrFail(testing::rowSumMax(), GetParam());
  for (const char *s : {".shared", "bar.sync", "st.shared.f32", "ld.shared.f32", "max.NaN.f32"})
    EXPECT_NE(ptx.find(s), std::string::npos) << s << "\n" << ptx;
  EXPECT_EQ(ptx.find(".local"), std::string::npos) << "a variable stayed in memory";
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
}

// Shared arrays past the 48 KB a kernel may declare statically are places in the
// launch's dynamic shared memory, each on a 16-byte boundary, and the PTX declares none.
TEST_P(NvptxArch, SharedArraysPastTheStaticLimitAreDynamic) {
  Kernel k = testing::rowSumMax();
  EXPECT_EQ(dynamicSharedBytes(k), 0);
  EXPECT_EQ(emitOrFail(k, GetParam()).find(".extern .shared"), std::string::npos);
  k.shared[0].size = 257; // 1028 bytes: the next array starts at 1040
  k.shared[1].size = static_cast<int>(kStaticSharedBytes / 4);
  EXPECT_EQ(sharedLayout(k), (std::vector<int64_t>{0, 1040}));
  EXPECT_EQ(dynamicSharedBytes(k), 1040 + kStaticSharedBytes);
  std::string ptx = emitOrFail(k, GetParam());
  EXPECT_NE(ptx.find(".extern .shared .align 16 .b8 dynamic_shared[];"), std::string::npos) << ptx;
  EXPECT_EQ(ptx.find(".shared .align 16 .b8 shared"), std::string::npos) << ptx;
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
}

// A warp is the subgroup: its size folds to 32, so the masks from 32 up disappear.
TEST_P(NvptxArch, ShufflesAreWarpShuffles) {
  std::string ptx = emitOrFail(testing::subgroupSum(), GetParam());
  size_t shuffles = 0;
  for (size_t at = ptx.find("shfl.sync.bfly.b32"); at != std::string::npos;
       at = ptx.find("shfl.sync.bfly.b32", at + 1))
    ++shuffles;
  EXPECT_EQ(shuffles, 5u) << ptx;
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
}

// Atomics are global atom.add, fences membar.gl.
TEST_P(NvptxArch, AtomicsAndFences) {
  std::string ptx = emitOrFail(testing::groupCount(), GetParam());
  for (const char *want : {"atom.global.add.u32", "membar.gl;"})
    EXPECT_NE(ptx.find(want), std::string::npos) << want << " missing in\n" << ptx;
  std::string ptxas = findPtxas();
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found";
  EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
}

// Matrix ops are wmma on tensor cores, the product's layouts its factors' loads'; the
// f16 arrays hold halves.
TEST_P(NvptxArch, MatrixOpsAreWmma) {
  std::string ptxas = findPtxas();
  for (bool transposed : {false, true}) {
    std::string ptx = emitOrFail(testing::matrixProduct(transposed), GetParam());
    std::string b = transposed ? "wmma.load.b.sync.aligned.col.m16n16k16.shared.f16"
                               : "wmma.load.b.sync.aligned.row.m16n16k16.shared.f16";
    std::string mma = transposed ? "wmma.mma.sync.aligned.row.col.m16n16k16.f32.f32"
                                 : "wmma.mma.sync.aligned.row.row.m16n16k16.f32.f32";
    for (const std::string &s :
         {std::string("wmma.load.a.sync.aligned.row.m16n16k16.shared.f16"), b, mma,
          std::string("wmma.store.d.sync.aligned.row.m16n16k16.shared.f32"),
          std::string("st.shared.b16")})
      EXPECT_NE(ptx.find(s), std::string::npos) << s << "\n" << ptx;
    EXPECT_EQ(ptx.find(".local"), std::string::npos) << "the sums stayed in memory\n" << ptx;
    if (!ptxas.empty()) {
      EXPECT_EQ(runPtxas(ptxas, ptx, GetParam()), "");
    }
  }
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found (PTX was emitted but not assembled)";
}

INSTANTIATE_TEST_SUITE_P(Archs, NvptxArch, ::testing::Values("sm_80", "sm_90"),
                         [](const auto &info) { return std::string(info.param); });

TEST(Nvptx, IeeeAndNanSemanticsReachThePtx) {
  std::string ptx = emitOrFail(everyOpKernel(), "sm_80");
  for (const char *s : {"max.NaN.f32", "min.NaN.f32", "div.rn.f32", "sqrt.rn.f32", "cvt.rn.f16.f32",
                        "cvt.f32.f16", "ctaid.x", "tid.x"})
    EXPECT_NE(ptx.find(s), std::string::npos) << s;
  // The workgroup size is the kernel IR's constant: the global id does not read it.
  EXPECT_EQ(ptx.find("ntid.x"), std::string::npos);
  EXPECT_EQ(otherApproximations(ptx), 0);
  EXPECT_EQ(ptx.find(".ftz"), std::string::npos);
}

// Sums `count` f16 or f32 loads at base + first, base + first + 1, ... (base = gid * 8, plus
// dims[0] where `shifted`), the loads from `guarded` on inside an if.
Kernel neighbourLoads(MemType elem, int first, int count, int guarded, bool shifted = false) {
  Kernel k;
  k.name = "neighbours";
  k.buffers = {{"x", elem, false}, {"y", MemType::F32, true}};
  KernelBuilder b(k);
  int gid = b.globalId();
  int base = b.op(KOp::IMul, KType::I32, {gid, b.constI(8)});
  if (shifted)
    base = b.op(KOp::IAdd, KType::I32, {base, b.dim(0)});
  int sum = b.varNew(KType::F32, b.constF(0));
  for (int i = 0; i < count; ++i) {
    if (i == guarded)
      b.ifBegin(b.op(KOp::ILt, KType::Bool, {gid, b.dim(0)}));
    int at = b.op(KOp::IAdd, KType::I32, {base, b.constI(first + i)});
    int v = b.load(0, KType::F32, at);
    b.varSet(sum, b.op(KOp::FAdd, KType::F32, {b.varGet(KType::F32, sum), v}));
  }
  if (guarded < count)
    b.ifEnd();
  b.store(1, gid, b.varGet(KType::F32, sum));
  k.numDims = 1;
  return k;
}

TEST(Nvptx, NeighbouringLoadsMoveAsOneVectorOnlyWhereAlignedAndTogether) {
  std::string ptx = emitOrFail(neighbourLoads(MemType::F16, 0, 8, 8), "sm_90");
  EXPECT_NE(ptx.find("ld.global.nc.v4.u32"), std::string::npos) << ptx;
  // One element past an 8-element boundary: no 16 bytes are aligned (4 and 2 are).
  ptx = emitOrFail(neighbourLoads(MemType::F16, 1, 8, 8), "sm_90");
  EXPECT_EQ(ptx.find("ld.global.nc.v4.u32"), std::string::npos) << ptx;
  EXPECT_NE(ptx.find("ld.global.nc.v4.u16"), std::string::npos) << ptx;
  // A base of unknown low bits: no alignment at all is proved.
  ptx = emitOrFail(neighbourLoads(MemType::F16, 0, 8, 8, true), "sm_90");
  EXPECT_EQ(ptx.find("ld.global.nc.v"), std::string::npos) << ptx;
  // The last two of four f32 loads run only under a condition: they do not join the first two.
  ptx = emitOrFail(neighbourLoads(MemType::F32, 0, 4, 2), "sm_90");
  EXPECT_EQ(ptx.find("ld.global.nc.v4"), std::string::npos) << ptx;
  EXPECT_NE(ptx.find("ld.global.nc.v2.f32"), std::string::npos) << ptx;
}

TEST(Nvptx, Deterministic) {
  Kernel k = everyOpKernel();
  EXPECT_EQ(emitOrFail(k, "sm_90"), emitOrFail(k, "sm_90"));
}

TEST(Nvptx, ThreadSafe) {
  Kernel k = everyOpKernel();
  std::string expect = emitOrFail(k, "sm_80");
  std::string got[4];
  std::vector<std::thread> threads;
  for (std::string &g : got)
    threads.emplace_back([&k, &g] {
      Expected<std::string> ptx = emitPtx(k, "sm_80");
      g = ptx ? *ptx : ptx.message();
    });
  for (std::thread &t : threads)
    t.join();
  for (const std::string &g : got)
    EXPECT_EQ(g, expect);
}

TEST(Nvptx, RejectsUnverifiedKernelAndUnknownArch) {
  Kernel k = everyOpKernel();
  Expected<std::string> bad = emitPtx(k, "sm_70");
  ASSERT_FALSE(static_cast<bool>(bad));
  EXPECT_NE(bad.message().find("sm_70"), std::string::npos);
  k.body.back().args[1] = static_cast<int>(k.body.size());
  Expected<std::string> unverified = emitPtx(k, "sm_80");
  ASSERT_FALSE(static_cast<bool>(unverified));
  EXPECT_NE(unverified.message().find("(store)"), std::string::npos) << unverified.message();
}

} // namespace
} // namespace kiln::compiler
