// Kernel IR verifier diagnostics and the printer's text form.
#include "compiler/kernel_ir.h"

#include <algorithm>
#include <functional>
#include <limits>

#include <gtest/gtest.h>

#include "tests/unit/sample_kernels.h"

namespace kiln::compiler {
namespace {

// out[i] = in[i] * 2 + 1 for i < dim 0; in is f32, out f16.
Kernel scaleKernel() {
  Kernel k;
  k.name = "scale";
  k.buffers = {{"in", MemType::F32, false}, {"out", MemType::F16, true}};
  k.numDims = 1;
  KernelBuilder b(k);
  int gid = b.globalId();
  int n = b.dim(0);
  b.guard(b.op(KOp::ILt, KType::Bool, {gid, n}));
  int x = b.load(0, KType::F32, gid);
  int y = b.op(KOp::FMul, KType::F32, {x, b.constF(2.0f)});
  int z = b.op(KOp::FAdd, KType::F32, {y, b.constF(1.0f)});
  b.store(1, gid, z);
  return k;
}

std::string verifyError(const Kernel &k) {
  Status s = verifyKernel(k);
  EXPECT_TRUE(s.failed()) << "expected the verifier to reject:\n" << printKernel(k);
  return s.message();
}

TEST(KernelIrVerifier, AcceptsWellFormedKernel) {
  Status s = verifyKernel(scaleKernel());
  EXPECT_FALSE(s.failed()) << s.message();
}

struct BadCase {
  const char *what;
  std::function<void(Kernel &)> breakIt;
  std::vector<std::string> expect; // substrings of the message
};

void PrintTo(const BadCase &c, std::ostream *os) { *os << c.what; }

class KernelIrVerifierRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(KernelIrVerifierRejects, WithUsefulMessage) {
  Kernel k = scaleKernel();
  GetParam().breakIt(k);
  std::string msg = verifyError(k);
  EXPECT_NE(msg.find("kernel @"), std::string::npos) << msg;
  for (const std::string &e : GetParam().expect)
    EXPECT_NE(msg.find(e), std::string::npos) << "'" << e << "' not in: " << msg;
}

// Ids in scaleKernel: %0 gid, %1 dim, %2 ilt (guard), guardEnd 3, %3 load, %4 const 2,
// %5 fmul, %6 const 1, %7 fadd, %8 store.
INSTANTIATE_TEST_SUITE_P(
    Cases, KernelIrVerifierRejects,
    ::testing::Values(
        BadCase{"ForwardReference",
                [](Kernel &k) { k.body[5].args[0] = 7; },
                {"%5 (fmul)", "operand 0 is %7", "not an earlier"}},
        BadCase{"SelfReference",
                [](Kernel &k) { k.body[5].args[1] = 5; },
                {"%5 (fmul)", "operand 1 is %5"}},
        BadCase{"NegativeId",
                [](Kernel &k) { k.body[7].args[0] = -1; },
                {"%7 (fadd)", "operand 0 is %-1"}},
        BadCase{"WrongArity",
                [](Kernel &k) { k.body[7].args.push_back(6); },
                {"%7 (fadd)", "expects 2 operands, has 3"}},
        BadCase{"WrongOperandType",
                [](Kernel &k) { k.body[5].args[0] = 0; },
                {"%5 (fmul)", "operand 0 %0 is i32, expected f32"}},
        BadCase{"WrongResultType",
                [](Kernel &k) { k.body[2].type = KType::I32; },
                {"guard %2", "not a bool"}},
        BadCase{"WrongResultTypeInBody",
                [](Kernel &k) { k.body[7].type = KType::Bool; },
                {"%7 (fadd)", "result type is bool, expected f32"}},
        BadCase{"BufferOutOfRange",
                [](Kernel &k) { k.body[3].buffer = 2; },
                {"%3 (load)", "buffer 2 is outside [0, 2)"}},
        BadCase{"LoadTypeMismatch",
                [](Kernel &k) { k.buffers[0].elem = MemType::I32; },
                {"%3 (load)", "loads f32 from buffer 0 (i32), expected i32"}},
        BadCase{"StoreToReadOnly",
                [](Kernel &k) { k.buffers[1].written = false; },
                {"%8 (store)", "read-only buffer 1"}},
        BadCase{"StoreValueType",
                [](Kernel &k) { k.buffers[1].elem = MemType::I32; },
                {"%8 (store)", "stores f32 to buffer 1 (i32), expected i32"}},
        BadCase{"StoreInPrologue",
                [](Kernel &k) { k.guardEnd = 9; },
                {"%8 (store)", "store in the prologue"}},
        BadCase{"UsesStoreResult",
                [](Kernel &k) {
                  k.body.push_back({KOp::FNeg, KType::F32, {8}});
                },
                {"%9 (fneg)", "a store, which has no result"}},
        BadCase{"GuardAfterPrologue",
                [](Kernel &k) { k.guard = 3; },
                {"guard %3 is not in the prologue [0, 3)"}},
        BadCase{"NoGuardButAPrologue",
                [](Kernel &k) { k.guard = -1; },
                {"without a guard has a prologue (guardEnd 3)"}},
        BadCase{"GuardEndPastBody",
                [](Kernel &k) { k.guardEnd = 20; },
                {"guardEnd 20 is outside the body (9 instructions)"}},
        BadCase{"DimOutOfRange",
                [](Kernel &k) { k.body[1].imm = 1; },
                {"%1 (dim)", "dim index 1 is outside [0, 1)"}},
        BadCase{"ConstTooWide",
                [](Kernel &k) {
                  k.body[1] = {KOp::ConstI, KType::I32, {}, 1LL << 40};
                },
                {"%1 (const)", "does not fit in i32"}},
        BadCase{"SelectMismatch",
                [](Kernel &k) {
                  k.body.push_back({KOp::Select, KType::F32, {2, 7, 0}});
                },
                {"%9 (select)", "operands are f32 and i32"}},
        BadCase{"SelectConditionNotBool",
                [](Kernel &k) {
                  k.body.push_back({KOp::Select, KType::F32, {0, 7, 7}});
                },
                {"%9 (select)", "operand 0 %0 is i32, expected bool"}},
        BadCase{"CastToSameType",
                [](Kernel &k) {
                  k.body.push_back({KOp::Cast, KType::F32, {7}});
                },
                {"%9 (cast)", "casts f32 to itself"}},
        BadCase{"BadName", [](Kernel &k) { k.name = "9lives"; }, {"not a valid identifier"}}),
    [](const ::testing::TestParamInfo<BadCase> &info) { return std::string(info.param.what); });

// A kernel without a guard: out[lane] = sum over i < dims[0] of in[i], through a loop,
// a variable, shared memory and a barrier. Ids: %0 local_id, %1 dim, %2 const 0,
// %3 const 0.0, %4 var, %5 const 1, %6 loop, %7 load, %8 get, %9 fadd, %10 set,
// %11 end_loop, %12 get, %13 shared_store, %14 barrier, %15 shared_load, %16 store.
Kernel regionKernel() {
  Kernel k;
  k.name = "regions";
  k.buffers = {{"in", MemType::F32, false}, {"out", MemType::F32, true}};
  k.shared = {{MemType::F32, kWorkgroupSize}};
  k.numDims = 1;
  KernelBuilder b(k);
  int lane = b.localId();
  int n = b.dim(0);
  int zero = b.constI(0);
  int acc = b.varNew(KType::F32, b.constF(0));
  int i = b.loopBegin(zero, n, b.constI(1));
  int x = b.load(0, KType::F32, i);
  b.varSet(acc, b.op(KOp::FAdd, KType::F32, {b.varGet(KType::F32, acc), x}));
  b.loopEnd();
  b.sharedStore(0, lane, b.varGet(KType::F32, acc));
  b.barrier();
  b.store(1, lane, b.sharedLoad(0, KType::F32, lane));
  return k;
}

TEST(KernelIrVerifier, AcceptsRegionsVariablesAndSharedMemory) {
  Kernel k = regionKernel();
  ASSERT_EQ(k.body.size(), 17u) << printKernel(k);
  Status s = verifyKernel(k);
  EXPECT_FALSE(s.failed()) << s.message() << "\n" << printKernel(k);
}

TEST(KernelIrVerifier, RejectsBrokenRegions) {
  struct Case {
    const char *what;
    std::function<void(Kernel &)> breakIt;
    const char *expect;
  };
  const Case cases[] = {
      {"unclosed loop",
       [](Kernel &k) {
         k.body.push_back({KOp::LoopBegin, KType::I32, {2, 1, 5}});
       },
       "region is never closed"},
      {"loop closed as an if", [](Kernel &k) { k.body[11].op = KOp::IfEnd; }, "closes no open if"},
      {"value used after its loop", [](Kernel &k) { k.body[16].args[1] = 7; },
       "defined inside a region that has ended"},
      {"get of a non-variable", [](Kernel &k) { k.body[12].args[0] = 2; }, "is not a variable"},
      {"variable of the wrong type", [](Kernel &k) { k.body[12].type = KType::I32; },
       "reads i32 from a variable of f32"},
      {"shared array out of range", [](Kernel &k) { k.body[15].buffer = 1; },
       "shared array 1 is outside [0, 1)"},
      {"shared type mismatch", [](Kernel &k) { k.shared[0].elem = MemType::I32; },
       "with shared array 0 of i32"},
      {"empty shared array", [](Kernel &k) { k.shared[0].size = 0; }, "is empty"},
      {"barrier under a guard",
       [](Kernel &k) {
         k.body.insert(k.body.begin() + 1, {KOp::ConstB, KType::Bool, {}, 1});
         for (KInst &in : k.body)
           for (int &a : in.args)
             a += a >= 1;
         k.guard = 1;
         k.guardEnd = 2;
       },
       "barrier in a guarded kernel"},
      {"operand is a barrier", [](Kernel &k) { k.body[16].args[1] = 14; },
       "a barrier, which has no result"},
  };
  for (const Case &c : cases) {
    Kernel k = regionKernel();
    c.breakIt(k);
    std::string msg = verifyError(k);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
  }
}

TEST(KernelIrVerifier, ChecksShuffles) {
  Kernel k = testing::subgroupSum();
  EXPECT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  EXPECT_NE(printKernel(k).find("= shuffle_xor f32 %"), std::string::npos) << printKernel(k);
  Kernel zero = k;
  for (KInst &in : zero.body)
    if (in.op == KOp::ShuffleXor)
      in.imm = 0;
  EXPECT_NE(verifyError(zero).find("lane mask 0 is outside [1, 2^30)"), std::string::npos);
  Kernel guarded = k;
  guarded.guard = 3; // the bounds check, id 3 (global id, dim, subgroup size before it)
  guarded.guardEnd = 4;
  EXPECT_NE(verifyError(guarded).find("shuffle in a guarded kernel"), std::string::npos)
      << verifyError(guarded);
}

TEST(KernelIrVerifier, ChecksMatrixOps) {
  Kernel k = testing::matrixProduct(false);
  ASSERT_EQ(k.body.size(), 25u) << printKernel(k);
  EXPECT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message() << printKernel(k);
  std::string text = printKernel(k);
  for (const char *s : {"shared0: f16[256]", "= mat_load mat_a shared0[%10], rows 16 apart",
                        "= mat_mul_add mat_c %11, %12, %15", "mat_store shared2[%10], %18"})
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  struct Case {
    const char *what;
    std::function<void(Kernel &)> breakIt;
    const char *expect;
  };
  const Case cases[] = {
      {"factor not from a load", [](Kernel &k) { k.body[16].args[1] = 11; },
       "operand 1 %11 is mat_a, expected mat_b"},
      {"factor through a variable", [](Kernel &k) { k.body[14].type = KType::MatA; },
       "a variable of mat_a"},
      {"load from an f32 array", [](Kernel &k) { k.body[11].buffer = 2; },
       "shared array 2 is f32, expected f16"},
      {"store to an f16 array", [](Kernel &k) { k.body[19].buffer = 0; },
       "shared array 0 is f16, expected f32"},
      {"load of sums", [](Kernel &k) { k.body[12].type = KType::MatC; }, "expected mat_a or mat_b"},
      {"no row distance", [](Kernel &k) { k.body[12].imm = 0; }, "row distance 0"},
      {"a matrix selected",
       [](Kernel &k) {
         k.body[15] = {KOp::Select, KType::MatC, {2, 13, 13}};
       },
       "selects a matrix"},
      {"under a guard",
       [](Kernel &k) {
         k.guard = 2;
         k.guardEnd = 3;
         k.body[9] = k.body[20] = {KOp::ConstI, KType::I32}; // no barriers: they would fail first
       },
       "matrix op in a guarded kernel"},
  };
  for (const Case &c : cases) {
    Kernel broken = testing::matrixProduct(false);
    c.breakIt(broken);
    std::string msg = verifyError(broken);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
  }
  // A product of a non-load factor (a mat_zero sum in its place) is refused too.
  Kernel sumAsFactor = testing::matrixProduct(false);
  sumAsFactor.body[16].args[0] = 13;
  EXPECT_NE(verifyError(sumAsFactor).find("operand 0 %13 is mat_c, expected mat_a"),
            std::string::npos)
      << verifyError(sumAsFactor);
}

TEST(KernelIrVerifier, ChecksAsynchronousCopies) {
  auto kernel = [](MemType shared) {
    Kernel k;
    k.name = "copies";
    k.buffers = {{"in", MemType::F16, false}};
    k.shared = {{shared, 64}};
    KernelBuilder b(k);
    int lane = b.localId();
    int at = b.op(KOp::IMul, KType::I32, {lane, b.constI(8)});
    int zero = b.constI(0);
    int yes = b.emit({KOp::ConstB, KType::Bool, {}, 1});
    b.copyAsync(0, at, 0, zero, yes);
    b.copyCommit();
    b.copyWait(0);
    b.barrier();
    return k;
  };
  Kernel k = kernel(MemType::F16);
  EXPECT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  std::string text = printKernel(k);
  for (const char *s : {"copy_async shared0[%3], buf0[%2] if %4", "copy_commit", "copy_wait 0"})
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  EXPECT_NE(verifyError(kernel(MemType::F32)).find("copies f16 into shared array 0 of f32"),
            std::string::npos)
      << verifyError(kernel(MemType::F32));
  Kernel far = k;
  far.body[5].imm = 1; // the shared array
  EXPECT_NE(verifyError(far).find("shared array 1 is outside [0, 1)"), std::string::npos)
      << verifyError(far);
  Kernel negative = k;
  negative.body[7].imm = -1;
  EXPECT_NE(verifyError(negative).find("waits for -1 groups"), std::string::npos)
      << verifyError(negative);
}

TEST(KernelIrVerifier, ChecksAtomics) {
  Kernel k = testing::groupCount();
  EXPECT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  std::string text = printKernel(k);
  for (const char *s : {"    fence\n", "%7 = atomic_add i32 buf0[%6], %2"})
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  Kernel floats = k;
  floats.buffers[0].elem = MemType::F32;
  EXPECT_NE(verifyError(floats).find("atomic_add on buffer 0 (f32), expected an i32 buffer"),
            std::string::npos)
      << verifyError(floats);
  Kernel readOnly = k;
  readOnly.buffers[0].written = false;
  EXPECT_NE(verifyError(readOnly).find("stores to read-only buffer 0"), std::string::npos)
      << verifyError(readOnly);
}

TEST(KernelIrVerifier, ChecksTheOccupancyHint) {
  Kernel k = scaleKernel();
  EXPECT_EQ(printKernel(k).find("resident"), std::string::npos) << printKernel(k);
  k.resident = 2;
  EXPECT_FALSE(verifyKernel(k).failed()) << verifyKernel(k).message();
  EXPECT_NE(printKernel(k).find(") dims=1 resident=2 {\n"), std::string::npos) << printKernel(k);
  k.resident = -1;
  EXPECT_NE(verifyError(k).find("resident is negative"), std::string::npos) << verifyError(k);
}

TEST(KernelIrPrinter, IndentsRegionsAndListsSharedArrays) {
  std::string text = printKernel(regionKernel());
  for (const char *line :
       {"  shared0: f32[256]\n", "  %6 = loop i32 %2, %1, %5\n", "    %7 = load f32 buf0[%6]\n",
        "    set %4, %9\n", "  end_loop\n", "  shared_store shared0[%0], %12\n", "  barrier\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  EXPECT_EQ(text.find("guard"), std::string::npos) << text;
}

TEST(KernelIrVerifier, AcceptsEveryCast) {
  const KType types[] = {KType::Bool, KType::I32, KType::F32};
  for (KType from : types)
    for (KType to : types) {
      if (from == to)
        continue;
      Kernel k = scaleKernel();
      KernelBuilder b(k);
      int v = from == KType::Bool ? 2 : from == KType::I32 ? 0 : 7;
      b.op(KOp::Cast, to, {v});
      Status s = verifyKernel(k);
      EXPECT_FALSE(s.failed()) << s.message();
    }
}

TEST(KernelIrPrinter, GoldenText) {
  Kernel k = scaleKernel();
  KernelBuilder b(k);
  b.constF(-std::numeric_limits<float>::infinity());
  b.emit({KOp::ConstB, KType::Bool, {}, 1});
  EXPECT_EQ(printKernel(k),
            "kernel @scale(buf0 \"in\": f32 read, buf1 \"out\": f16 write) dims=1 {\n"
            "  %0 = global_id i32\n"
            "  %1 = dim i32 0\n"
            "  %2 = ilt bool %0, %1\n"
            "  guard %2\n"
            "  %3 = load f32 buf0[%0]\n"
            "  %4 = const f32 2\n"
            "  %5 = fmul f32 %3, %4\n"
            "  %6 = const f32 1\n"
            "  %7 = fadd f32 %5, %6\n"
            "  store buf1[%0], %7\n"
            "  %9 = const f32 -inf\n"
            "  %10 = const bool true\n"
            "}\n");
}

TEST(KernelIrPrinter, GuardAtEndAndDeterministic) {
  Kernel k;
  k.name = "g";
  KernelBuilder b(k);
  b.guard(b.emit({KOp::ConstB, KType::Bool, {}, 0}));
  EXPECT_EQ(printKernel(k), "kernel @g() dims=0 {\n  %0 = const bool false\n  guard %0\n}\n");
  EXPECT_EQ(printKernel(k), printKernel(k));
}

TEST(CompactKernel, MergesRepeatsInScopeAndDropsWhatNothingUses) {
  Kernel k;
  k.name = "compact";
  k.buffers = {{"in", MemType::F32, false}, {"out", MemType::F32, true}};
  KernelBuilder b(k);
  int gid = b.globalId();
  int x = b.load(0, KType::F32, gid);
  int again = b.load(0, KType::F32, b.globalId()); // the same load of a read-only buffer
  b.op(KOp::FExp, KType::F32, {x});                // unused
  b.store(1, gid, b.op(KOp::FAdd, KType::F32, {x, again}));
  int i = b.loopBegin(b.constI(0), b.constI(4), b.constI(1));
  int inside = b.op(KOp::IAdd, KType::I32, {gid, b.constI(5)});
  b.store(1, b.op(KOp::IAdd, KType::I32, {inside, i}), x);
  b.loopEnd();
  // Equal to `inside`, but the loop that defined it has closed.
  int after = b.op(KOp::IAdd, KType::I32, {gid, b.constI(5)});
  b.store(1, after, x);
  compactKernel(k);
  ASSERT_FALSE(verifyKernel(k).failed()) << printKernel(k);
  auto count = [&](KOp op) {
    return std::count_if(k.body.begin(), k.body.end(),
                         [&](const KInst &in) { return in.op == op; });
  };
  EXPECT_EQ(count(KOp::GlobalId), 1);
  EXPECT_EQ(count(KOp::Load), 1);
  EXPECT_EQ(count(KOp::FExp), 0);
  EXPECT_EQ(count(KOp::IAdd), 3); // inside, inside + i, and after
  EXPECT_EQ(count(KOp::Store), 3);
  // The stored sum adds the one load to itself.
  const KInst &sum =
      k.body[k.body[std::find_if(k.body.begin(), k.body.end(),
                                 [](const KInst &in) { return in.op == KOp::Store; }) -
                    k.body.begin()]
                 .args[1]];
  EXPECT_EQ(sum.args[0], sum.args[1]);
}

} // namespace
} // namespace kiln::compiler
