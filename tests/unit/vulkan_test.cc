// The Vulkan backend on the best device (lavapipe in CI) against CPU computations.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <gtest/gtest.h>
#include <unistd.h>

#include "compiler/spirv/emit_spirv.h"
#include "ir/float16.h"
#include "runtime/vulkan/vulkan_device.h"
#include "tests/unit/sample_kernels.h"

namespace kiln::runtime {
namespace {

using compiler::Kernel;
using compiler::KernelBuilder;
using compiler::KOp;
using compiler::KType;
using compiler::MemType;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

ir::DType dtypeOf(MemType m) {
  switch (m) {
  case MemType::F32:
    return ir::DType::F32;
  case MemType::F16:
    return ir::DType::F16;
  case MemType::BF16:
    return ir::DType::BF16;
  case MemType::I32:
    return ir::DType::I32;
  }
  return ir::DType::F32;
}

// An executable of one kernel whose buffers all have shape [dims[0]]: read-only buffers
// are inputs, written ones outputs; the grid is dims[0] as well.
Executable oneKernel(const Kernel &k, std::vector<ir::SymDim> dims) {
  Executable exe;
  exe.dims = std::move(dims);
  ExecKernel ek;
  ek.name = k.name;
  Expected<std::vector<uint32_t>> words = compiler::emitSpirv(k);
  EXPECT_TRUE(words) << words.message();
  if (words)
    ek.spirv = *words;
  ek.grid = {ir::Dim::symbol(0)};
  for (size_t i = 0; i < k.buffers.size(); ++i) {
    const compiler::KBuffer &kb = k.buffers[i];
    BufferRole role = kb.written ? BufferRole::Output : BufferRole::Input;
    exe.buffers.push_back({kb.name, {dtypeOf(kb.elem), {ir::Dim::symbol(0)}}, role});
    (kb.written ? exe.outputs : exe.inputs).push_back(static_cast<int>(i));
    ek.buffers.push_back(static_cast<int>(i));
  }
  exe.kernels.push_back(std::move(ek));
  return exe;
}

template <class T> Bytes toBytes(const std::vector<T> &v) {
  Bytes b(v.size() * sizeof(T));
  if (!b.empty())
    std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <class T> std::vector<T> fromBytes(const Bytes &b) {
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty())
    std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

uint16_t toBf16(float f) { // round to nearest even; NaN stays a quiet NaN
  uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f))
    return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
float fromBf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Special values, then random ones: small, large and in between.
std::vector<float> testValues(size_t n, uint32_t seed) {
  std::vector<float> v = {0.0f,  -0.0f, 1.0f,   -1.0f,  0.5f,   2.0f,   3.0f,  -3.0f,
                          kNaN,  kInf,  -kInf,  1e30f,  -1e30f, 1e-30f, 3e38f, -3e38f,
                          1e-6f, 88.0f, -88.0f, 100.0f, 0.25f,  10.0f,  -2.5f, 7.0f};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mid(-10.0f, 10.0f), exponent(-30.0f, 30.0f);
  while (v.size() < n) {
    float x = mid(rng);
    if (v.size() % 3 == 0)
      x = std::copysign(std::pow(10.0f, exponent(rng)), x);
    v.push_back(x);
  }
  return v;
}

class VulkanTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    Expected<std::unique_ptr<Device>> d = openVulkanDevice(-1);
    if (d)
      device_ = std::move(*d);
    else
      openError_ = d.message();
  }
  static void TearDownTestSuite() { device_.reset(); }
  void SetUp() override {
    if (!device_)
      GTEST_SKIP() << "SKIPPED: no Vulkan device: " << openError_;
  }

  // Loads `exe` and runs it once; fails the test on any error.
  std::vector<Bytes> run(const Executable &exe, std::vector<int64_t> dims,
                         const std::vector<Bytes> &inputs) {
    Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
    EXPECT_TRUE(plan) << plan.message();
    if (!plan)
      return {};
    std::vector<Bytes> outputs;
    RunStats stats;
    Status s = (*plan)->run(dims, inputs, outputs, &stats);
    EXPECT_FALSE(s.failed()) << s.message();
    EXPECT_GT(stats.hostMicros, 0);
    return outputs;
  }

  static std::unique_ptr<Device> device_;
  static std::string openError_;
};
std::unique_ptr<Device> VulkanTest::device_;
std::string VulkanTest::openError_;

// Compares float results: NaN where the reference is NaN, else within `rel` of it
// (or within `abs` where the reference is near zero). Vulkan lets devices flush
// denormal results to zero, and lavapipe does.
void expectClose(const std::vector<float> &got, const std::vector<float> &want,
                 const std::vector<float> &in, double rel, double abs, const char *what) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t i = 0; i < want.size() && failures < 5; ++i) {
    bool flushed = got[i] == 0 && std::fabs(want[i]) < std::numeric_limits<float>::min();
    bool near =
        std::fabs(static_cast<double>(got[i]) - want[i]) <= std::max(abs, rel * std::fabs(want[i]));
    bool ok = std::isnan(want[i]) ? std::isnan(got[i]) : flushed || got[i] == want[i] || near;
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << "(" << in[i] << ") = " << got[i] << ", want " << want[i];
    }
  }
}

TEST(VulkanDevices, ListAndBadIndex) {
  Expected<std::vector<VulkanDeviceInfo>> list = listVulkanDevices();
  if (!list || list->empty())
    GTEST_SKIP() << "SKIPPED: no Vulkan device: " << (list ? "none listed" : list.message());
  for (const VulkanDeviceInfo &d : *list)
    EXPECT_FALSE(d.name.empty());
  Expected<std::unique_ptr<Device>> bad = openVulkanDevice(static_cast<int>(list->size()));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("no device"), std::string::npos) << bad.message();
}

// out[i] = a[i] * b[i % m] + exp(a[i]), at two bindings of n and m in one plan.
TEST_F(VulkanTest, BroadcastWithSymbolicDims) {
  Kernel k = testing::mulBroadcastExp();
  Executable exe;
  exe.dims = {{"n", 1, 5000}, {"m", 1, 64}};
  ExecKernel ek{k.name, *compiler::emitSpirv(k), "", {0, 1, 2}, {ir::Dim::symbol(0)}};
  exe.kernels = {ek};
  exe.buffers = {{"a", {ir::DType::F32, {ir::Dim::symbol(0)}}, BufferRole::Input},
                 {"b", {ir::DType::F32, {ir::Dim::symbol(1)}}, BufferRole::Param},
                 {"out", {ir::DType::F32, {ir::Dim::symbol(0)}}, BufferRole::Output}};
  exe.inputs = {0, 1};
  exe.outputs = {2};
  Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
  ASSERT_TRUE(plan) << plan.message();
  for (auto [n, m] : {std::pair<int64_t, int64_t>{1000, 7}, {4999, 64}, {1, 1}}) {
    std::vector<float> a(n), b(m), want(n);
    for (int64_t i = 0; i < n; ++i)
      a[i] = static_cast<float>(i % 37) * 0.25f - 4.0f;
    for (int64_t j = 0; j < m; ++j)
      b[j] = 1.5f - static_cast<float>(j);
    for (int64_t i = 0; i < n; ++i)
      want[i] = a[i] * b[i % m] + std::exp(a[i]);
    std::vector<Bytes> outputs;
    RunStats stats;
    Status s = (*plan)->run(std::vector<int64_t>{n, m}, std::vector<Bytes>{toBytes(a), toBytes(b)},
                            outputs, &stats);
    ASSERT_FALSE(s.failed()) << s.message();
    ASSERT_EQ(outputs.size(), 1u);
    ASSERT_EQ(outputs[0].size(), static_cast<size_t>(n) * 4);
    // exp(a) and a*b reach ~150 and may cancel: an absolute bound.
    expectClose(fromBytes<float>(outputs[0]), want, a, 1e-5, 1e-4, "a*b+exp(a)");
  }
}

struct FloatCase {
  KOp op;
  int arity;
  double rel, abs; // tolerance against the double-precision reference
  float (*ref)(float, float);
};

float nanMax(float a, float b) { return std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b); }
float nanMin(float a, float b) { return std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b); }

// Vulkan's precision rules: division and sqrt within a few ulp, exp/log/pow within
// 3 + 2|x| ulp, sin/cos to an absolute error.
const FloatCase kFloatCases[] = {
    {KOp::FAdd, 2, 0, 0, [](float a, float b) { return a + b; }},
    {KOp::FSub, 2, 0, 0, [](float a, float b) { return a - b; }},
    {KOp::FMul, 2, 0, 0, [](float a, float b) { return a * b; }},
    {KOp::FDiv, 2, 3e-7, 0, [](float a, float b) { return a / b; }},
    {KOp::FNeg, 1, 0, 0, [](float a, float) { return -a; }},
    {KOp::FAbs, 1, 0, 0, [](float a, float) { return std::fabs(a); }},
    {KOp::FMax, 2, 0, 0, nanMax},
    {KOp::FMin, 2, 0, 0, nanMin},
    {KOp::FSqrt, 1, 3e-7, 0, [](float a, float) { return std::sqrt(a); }},
    {KOp::FRsqrt, 1, 3e-7, 0, [](float a, float) { return 1.0f / std::sqrt(a); }},
    {KOp::FExp, 1, 2e-5, 0, [](float a, float) { return std::exp(a); }},
    {KOp::FExp16, 1, 2e-5, 0, [](float a, float) { return std::exp(a); }},
    {KOp::FLog, 1, 1e-6, 1e-6, [](float a, float) { return std::log(a); }},
    {KOp::FSin, 1, 1e-5, 1e-5, [](float a, float) { return std::sin(a); }},
    {KOp::FCos, 1, 1e-5, 1e-5, [](float a, float) { return std::cos(a); }},
    {KOp::FTanh, 1, 1e-5, 1e-6, [](float a, float) { return std::tanh(a); }},
    {KOp::FPow, 2, 2e-5, 0, [](float a, float b) { return std::pow(a, b); }},
    {KOp::FErf, 1, 1e-6, 0, [](float a, float) { return std::erf(a); }},
    {KOp::RoundF16, 1, 0, 0,
     [](float a, float) { return static_cast<float>(ir::roundToDType(a, ir::DType::F16)); }},
    {KOp::RoundBF16, 1, 0, 0,
     [](float a, float) { return static_cast<float>(ir::roundToDType(a, ir::DType::BF16)); }},
};

TEST_F(VulkanTest, FloatOpsMatchCpu) {
  const size_t n = 4096;
  std::vector<float> a = testValues(n, 1), b = testValues(n, 2);
  // Every pair of the special values, for the binary ops.
  for (size_t i = 0; i < 24; ++i)
    for (size_t j = 0; j < 24; ++j) {
      a[24 + i * 24 + j] = a[i];
      b[24 + i * 24 + j] = b[j];
    }
  for (const FloatCase &c : kFloatCases) {
    SCOPED_TRACE("op " + std::to_string(static_cast<int>(c.op)));
    std::vector<float> in = a;
    // Vulkan bounds sin/cos error only for moderate arguments; pow only for x^y in range.
    if (c.op == KOp::FSin || c.op == KOp::FCos)
      for (float &x : in)
        if (std::isfinite(x) && std::fabs(x) > 100)
          x = std::fmod(x, 100.0f);
    Executable exe = oneKernel(testing::floatOp(c.op, c.arity), {{"n", 1, 1 << 16}});
    std::vector<Bytes> inputs = {toBytes(in)};
    if (c.arity == 2)
      inputs.push_back(toBytes(b));
    std::vector<Bytes> out = run(exe, {static_cast<int64_t>(n)}, inputs);
    ASSERT_EQ(out.size(), 1u);
    std::vector<float> want(n);
    for (size_t i = 0; i < n; ++i)
      want[i] = c.ref(in[i], b[i]);
    expectClose(fromBytes<float>(out[0]), want, in, c.rel, c.abs, "op");
  }
}

// erf to 1e-6 relative on a dense sweep and the special values.
TEST_F(VulkanTest, ErfIsAccurate) {
  std::vector<float> in = testValues(64, 3);
  for (float x = -6.0f; x <= 6.0f; x += 1.0f / 1024)
    in.push_back(x);
  for (float x = 1e-20f; x < 1; x *= 1.37f)
    in.push_back(x);
  int64_t n = static_cast<int64_t>(in.size());
  Executable exe = oneKernel(testing::floatOp(KOp::FErf, 1), {{"n", 1, 1 << 16}});
  std::vector<Bytes> out = run(exe, {n}, {toBytes(in)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<float> got = fromBytes<float>(out[0]), want(in.size());
  for (size_t i = 0; i < in.size(); ++i)
    want[i] = static_cast<float>(std::erf(static_cast<double>(in[i])));
  expectClose(got, want, in, 1e-6, 0, "erf");
  EXPECT_EQ(got[9], 1.0f);   // erf(inf)
  EXPECT_EQ(got[10], -1.0f); // erf(-inf)
}

// Every f16 value survives a load and a store; f32 -> f16 rounds to nearest even.
TEST_F(VulkanTest, F16RoundTripAndRounding) {
  const int64_t n = 65536;
  std::vector<uint16_t> all(n);
  for (int64_t i = 0; i < n; ++i)
    all[i] = static_cast<uint16_t>(i);
  Kernel copy = testing::elementwise("f16_copy", {MemType::F16}, MemType::F16,
                                     [](KernelBuilder &, std::vector<int> v) { return v[0]; });
  std::vector<Bytes> out = run(oneKernel(copy, {{"n", 1, n}}), {n}, {toBytes(all)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<uint16_t> back = fromBytes<uint16_t>(out[0]);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool nan = (all[i] & 0x7c00) == 0x7c00 && (all[i] & 0x3ff);
    bool ok = nan ? (back[i] & 0x7c00) == 0x7c00 && (back[i] & 0x3ff) : back[i] == all[i];
    if (!ok && mismatches++ < 5)
      ADD_FAILURE() << "f16 bits " << all[i] << " came back as " << back[i];
  }

  std::vector<float> f = testValues(4096, 4);
  f.push_back(65520.0f);           // rounds up to inf
  f.push_back(65519.0f);           // rounds down to the largest f16
  f.push_back(1.0f + 1.0f / 2048); // a tie, to even (1.0)
  f.push_back(1.0f + 3.0f / 2048); // a tie, to even (up)
  f.push_back(6e-8f);              // an f16 subnormal
  Kernel narrow = testing::elementwise("to_f16", {MemType::F32}, MemType::F16,
                                       [](KernelBuilder &, std::vector<int> v) { return v[0]; });
  int64_t m = static_cast<int64_t>(f.size());
  out = run(oneKernel(narrow, {{"n", 1, n}}), {m}, {toBytes(f)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<uint16_t> h = fromBytes<uint16_t>(out[0]);
  mismatches = 0;
  for (int64_t i = 0; i < m; ++i) {
    uint16_t want = std::bit_cast<uint16_t>(static_cast<_Float16>(f[i]));
    bool ok = std::isnan(f[i]) ? (h[i] & 0x7c00) == 0x7c00 && (h[i] & 0x3ff) : h[i] == want;
    if (!ok && mismatches++ < 5)
      ADD_FAILURE() << "f16(" << f[i] << ") = " << h[i] << ", want " << want;
  }
}

// bf16 -> f32 -> bf16 keeps every value; f32 -> bf16 rounds to nearest even.
TEST_F(VulkanTest, Bf16LoadsAndRounds) {
  std::vector<float> f = testValues(4096, 5);
  f.push_back(std::bit_cast<float>(0x3f808000u)); // a tie, to even (down)
  f.push_back(std::bit_cast<float>(0x3f818000u)); // a tie, to even (up)
  f.push_back(std::bit_cast<float>(0x7f7fffffu)); // rounds to inf
  Kernel k = testing::elementwise("bf16_pair", {MemType::F32}, MemType::BF16,
                                  [](KernelBuilder &, std::vector<int> v) { return v[0]; });
  int64_t n = static_cast<int64_t>(f.size());
  std::vector<Bytes> out = run(oneKernel(k, {{"n", 1, 1 << 16}}), {n}, {toBytes(f)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<uint16_t> h = fromBytes<uint16_t>(out[0]);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(h[i], toBf16(f[i])) << "bf16(" << f[i] << ")";

  Kernel widen = testing::elementwise("from_bf16", {MemType::BF16}, MemType::F32,
                                      [](KernelBuilder &, std::vector<int> v) { return v[0]; });
  out = run(oneKernel(widen, {{"n", 1, 1 << 16}}), {n}, {toBytes(h)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<float> back = fromBytes<float>(out[0]);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(fromBf16(h[i])));
}

// Integer arithmetic, compares, select and casts: out = x < 7 ? (x*3)/2 % 5 : int(f) + (f != f).
TEST_F(VulkanTest, IntegerOpsAndCasts) {
  Kernel k = testing::elementwise(
      "int_ops", {MemType::I32, MemType::F32}, MemType::I32,
      [](KernelBuilder &b, std::vector<int> v) {
        int x = v[0], f = v[1];
        int lhs = b.op(KOp::IRem, KType::I32,
                       {b.op(KOp::IDiv, KType::I32,
                             {b.op(KOp::IMul, KType::I32, {x, b.constI(3)}), b.constI(2)}),
                        b.constI(5)});
        int unordered = b.op(KOp::Cast, KType::I32, {b.op(KOp::FNe, KType::Bool, {f, f})});
        int rhs = b.op(KOp::IAdd, KType::I32, {b.op(KOp::Cast, KType::I32, {f}), unordered});
        int lt = b.op(KOp::ILt, KType::Bool, {x, b.constI(7)});
        return b.op(KOp::Select, KType::I32, {lt, lhs, rhs});
      });
  std::vector<int32_t> x;
  std::vector<float> f;
  for (int i = 0; i < 1000; ++i) {
    x.push_back(i % 13);
    f.push_back(i == 5 || i == 11 ? kNaN : static_cast<float>(i) * 0.75f - 300.0f);
  }
  std::vector<Bytes> out = run(oneKernel(k, {{"n", 1, 1024}}), {1000}, {toBytes(x), toBytes(f)});
  ASSERT_EQ(out.size(), 1u);
  std::vector<int32_t> got = fromBytes<int32_t>(out[0]);
  for (int i = 0; i < 1000; ++i) {
    if (std::isnan(f[i]) && x[i] >= 7)
      continue; // float -> int of NaN is undefined
    int32_t want = x[i] < 7 ? (x[i] * 3) / 2 % 5 : static_cast<int32_t>(f[i]) + std::isnan(f[i]);
    ASSERT_EQ(got[i], want) << "at " << i;
  }
}

// Two kernels through a temporary: the second must see the first's writes. The dim's
// range starts at 0, where no dispatch runs at all.
TEST_F(VulkanTest, KernelsRunInOrderAndEmptyGridsSkip) {
  auto scale = [](float s, float add) {
    return [=](KernelBuilder &b, std::vector<int> v) {
      return b.op(KOp::FAdd, KType::F32,
                  {b.op(KOp::FMul, KType::F32, {v[0], b.constF(s)}), b.constF(add)});
    };
  };
  Kernel first = testing::elementwise("first", {MemType::F32}, MemType::F32, scale(2, 0));
  Kernel second = testing::elementwise("second", {MemType::F32}, MemType::F32, scale(1, 1));
  Executable exe;
  exe.dims = {{"n", 0, 100000}};
  ir::TensorType t{ir::DType::F32, {ir::Dim::symbol(0)}};
  exe.buffers = {
      {"x", t, BufferRole::Input}, {"tmp", t, BufferRole::Temp}, {"y", t, BufferRole::Output}};
  exe.inputs = {0};
  exe.outputs = {2};
  exe.kernels = {{"first", *compiler::emitSpirv(first), "", {0, 1}, {ir::Dim::symbol(0)}},
                 {"second", *compiler::emitSpirv(second), "", {1, 2}, {ir::Dim::symbol(0)}}};
  Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
  ASSERT_TRUE(plan) << plan.message();
  for (int64_t n : {100000, 0, 3}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i)
      x[i] = static_cast<float>(i);
    std::vector<Bytes> outputs;
    RunStats stats;
    Status s =
        (*plan)->run(std::vector<int64_t>{n}, std::vector<Bytes>{toBytes(x)}, outputs, &stats);
    ASSERT_FALSE(s.failed()) << s.message();
    // Where the device has timestamps: each kernel's span, in order, within the run's.
    if (stats.deviceMicros > 0) {
      ASSERT_EQ(stats.kernelSpans.size(), 2u);
      EXPECT_LE(0.0, stats.kernelSpans[0].first);
      EXPECT_LE(stats.kernelSpans[0].first, stats.kernelSpans[0].second);
      EXPECT_LE(stats.kernelSpans[0].second, stats.kernelSpans[1].second);
      EXPECT_LE(stats.kernelSpans[1].second, stats.deviceMicros);
    }
    std::vector<float> y = fromBytes<float>(outputs.at(0));
    ASSERT_EQ(y.size(), static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(y[i], 2.0f * static_cast<float>(i) + 1.0f) << "at " << i;
  }
}

// More workgroups than one dispatch row holds (65535 on most devices): every id once.
TEST_F(VulkanTest, WideGridCoversEveryIdOnce) {
  Kernel k;
  k.name = "iota";
  k.numDims = 1;
  k.buffers = {{"out", MemType::I32, true}};
  KernelBuilder b(k);
  int i = b.globalId();
  b.guard(b.op(KOp::ILt, KType::Bool, {i, b.dim(0)}));
  b.store(0, i, i);
  const int64_t n = 65536 * 256 + 77;
  std::vector<Bytes> out = run(oneKernel(k, {{"n", 1, n}}), {n}, {});
  ASSERT_EQ(out.size(), 1u);
  std::vector<int32_t> ids = fromBytes<int32_t>(out[0]);
  ASSERT_EQ(ids.size(), static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j)
    ASSERT_EQ(ids[j], j);
}

// testing::rowSumMax with one workgroup per row: the grid is rows * kWorkgroupSize.
Executable rowSumMaxExecutable(int64_t maxRows, int64_t maxCols) {
  Kernel k = testing::rowSumMax();
  Executable exe;
  exe.dims = {{"rows", 1, maxRows}, {"cols", 1, maxCols}};
  ir::Dim rows = ir::Dim::symbol(0), cols = ir::Dim::symbol(1);
  Expected<std::vector<uint32_t>> words = compiler::emitSpirv(k);
  EXPECT_TRUE(words) << words.message();
  if (words)
    exe.kernels = {{k.name, *words, "", {0, 1, 2}, {rows, ir::Dim::of(compiler::kWorkgroupSize)}}};
  exe.buffers = {{"in", {ir::DType::F32, {rows, cols}}, BufferRole::Input},
                 {"out_sum", {ir::DType::F32, {rows}}, BufferRole::Output},
                 {"out_max", {ir::DType::F32, {rows}}, BufferRole::Output}};
  exe.inputs = {0};
  exe.outputs = {1, 2};
  return exe;
}

// Values of both signs and several magnitudes, so that sums cancel.
std::vector<float> rowValues(int64_t rows, int64_t cols) {
  std::vector<float> v(rows * cols);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mid(-100.0f, 100.0f);
  for (float &x : v)
    x = mid(rng);
  return v;
}

// Runs rowSumMax on `in` and checks it against a CPU loop: maxima exactly (NaN where a
// row has one); sums within what f32 summation in any order can lose, a few ulp of the
// sum of magnitudes per addition on the longest chain (cols / kWorkgroupSize + 8 deep).
void checkRowSumMax(const std::vector<Bytes> &out, const std::vector<float> &in, int64_t rows,
                    int64_t cols) {
  ASSERT_EQ(out.size(), 2u);
  std::vector<float> sums = fromBytes<float>(out[0]), maxima = fromBytes<float>(out[1]);
  ASSERT_EQ(sums.size(), static_cast<size_t>(rows));
  ASSERT_EQ(maxima.size(), static_cast<size_t>(rows));
  double depth = static_cast<double>(cols / compiler::kWorkgroupSize + 9);
  int failures = 0;
  for (int64_t r = 0; r < rows && failures < 5; ++r) {
    double sum = 0, magnitude = 0;
    float max = -kInf;
    for (int64_t c = 0; c < cols; ++c) {
      float x = in[r * cols + c];
      sum += x;
      magnitude += std::fabs(x);
      max = nanMax(max, x);
    }
    auto want = static_cast<float>(sum);
    bool sumOk = std::isnan(want)
                     ? std::isnan(sums[r])
                     : sums[r] == want || std::fabs(sums[r] - sum) <= depth * 1.2e-7 * magnitude;
    bool maxOk = std::isnan(max) ? std::isnan(maxima[r]) : maxima[r] == max;
    if (!sumOk || !maxOk) {
      ++failures;
      ADD_FAILURE() << "row " << r << " of " << rows << " x " << cols << ": sum " << sums[r]
                    << " (want " << want << "), max " << maxima[r] << " (want " << max << ")";
    }
  }
}

// Loops, variables, shared memory, barriers and uniform ifs; columns fewer than, equal to
// and more than the workgroup; one row with NaN and +inf, one with +inf alone.
TEST_F(VulkanTest, RowSumMaxMatchesCpu) {
  Executable exe = rowSumMaxExecutable(8, 5000);
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {2, 256}, {4, 1000}, {5, 4097}, {3, 300}}) {
    std::vector<float> in = rowValues(rows, cols);
    bool special = rows == 3 && cols == 300;
    if (special) {
      in[1 * cols + 17] = kInf;
      in[1 * cols + 290] = kNaN;
      in[2 * cols + 299] = kInf;
    }
    std::vector<Bytes> out = run(exe, {rows, cols}, {toBytes(in)});
    checkRowSumMax(out, in, rows, cols);
    if (special && out.size() == 2) {
      std::vector<float> sums = fromBytes<float>(out[0]), maxima = fromBytes<float>(out[1]);
      EXPECT_TRUE(std::isfinite(sums[0]) && std::isfinite(maxima[0]));
      EXPECT_TRUE(std::isnan(sums[1]) && std::isnan(maxima[1]));
      EXPECT_EQ(sums[2], kInf);
      EXPECT_EQ(maxima[2], kInf);
    }
  }
}

// One plan at several shapes: each run rewrites the dims and the workgroup counts of its
// indirect dispatches, and replays the command buffer recorded at load. A stale count
// would leave the added rows unwritten.
TEST_F(VulkanTest, ShapeChangesReplayTheRecordedCommands) {
  Expected<std::unique_ptr<Plan>> plan = device_->load(rowSumMaxExecutable(8, 5000));
  ASSERT_TRUE(plan) << plan.message();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2, 256}, {5, 4097}, {1, 1}, {8, 300}}) {
    std::vector<float> in = rowValues(rows, cols);
    std::vector<Bytes> out;
    Status s = (*plan)->run(std::vector<int64_t>{rows, cols}, std::vector<Bytes>{toBytes(in)}, out,
                            nullptr);
    ASSERT_FALSE(s.failed()) << s.message();
    checkRowSumMax(out, in, rows, cols);
  }
}

// The pipeline cache goes to KILN_CACHE_DIR, one file per device and driver build that
// starts with a Vulkan cache header; a file that is not one is ignored and replaced.
TEST_F(VulkanTest, PipelineCachePersistsAndSurvivesGarbage) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kiln-cache-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  setenv("KILN_CACHE_DIR", dir.c_str(), 1);
  auto files = [&] {
    std::vector<std::filesystem::path> v;
    for (const auto &e : std::filesystem::directory_iterator(dir))
      v.push_back(e.path());
    return v;
  };
  auto header = [](const std::filesystem::path &p) {
    std::ifstream in(p, std::ios::binary);
    uint32_t h[2] = {0, 0};
    in.read(reinterpret_cast<char *>(h), sizeof h);
    return std::make_pair(h[0], h[1]);
  };
  std::vector<float> in = rowValues(3, 300);
  checkRowSumMax(run(rowSumMaxExecutable(8, 5000), {3, 300}, {toBytes(in)}), in, 3, 300);
  ASSERT_TRUE(std::filesystem::exists(dir));
  ASSERT_EQ(files().size(), 1u);
  std::filesystem::path cache = files()[0];
  EXPECT_EQ(header(cache),
            std::make_pair(32u, 1u)); // header size, VK_PIPELINE_CACHE_HEADER_VERSION_ONE
  std::ofstream(cache, std::ios::binary | std::ios::trunc)
      << "not a pipeline cache, but long enough to pass for one";
  checkRowSumMax(run(rowSumMaxExecutable(8, 5000), {3, 300}, {toBytes(in)}), in, 3, 300);
  EXPECT_EQ(files().size(), 1u);
  EXPECT_EQ(header(cache), std::make_pair(32u, 1u));
  unsetenv("KILN_CACHE_DIR");
  std::filesystem::remove_all(dir);
}

// More rows than one dispatch row of workgroups holds (65535 on lavapipe): GroupId must
// count the rows of a 2-D dispatch.
TEST_F(VulkanTest, RowSumMaxOnAWideGrid) {
  const int64_t rows = 70000, cols = 3;
  std::vector<float> in = rowValues(rows, cols);
  // Every row's maximum names its row, so a row computed twice or skipped shows.
  for (int64_t r = 0; r < rows; ++r)
    in[r * cols + r % cols] = 1000.0f + static_cast<float>(r);
  std::vector<Bytes> out = run(rowSumMaxExecutable(rows, cols), {rows, cols}, {toBytes(in)});
  checkRowSumMax(out, in, rows, cols);
}

// Workgroups count themselves in with atomics on a Zeroed buffer: each run of one plan
// sees every count from 0 once (the buffer starts at zero, and the last workgroup leaves
// it so for the next run).
TEST_F(VulkanTest, AtomicsCountEachWorkgroupOnceARun) {
  const int64_t groups = 300;
  Executable exe = oneKernel(testing::groupCount(), {{"n", 1, 1 << 20}});
  exe.buffers[0].role = BufferRole::Zeroed;
  exe.outputs = {1};
  Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
  ASSERT_TRUE(plan) << plan.message();
  std::vector<int64_t> dims{groups * compiler::kWorkgroupSize};
  for (int run = 0; run < 2; ++run) {
    std::vector<Bytes> out;
    Status s = (*plan)->run(dims, {}, out, nullptr);
    ASSERT_FALSE(s.failed()) << s.message();
    ASSERT_EQ(out.size(), 1u);
    std::vector<int32_t> order = fromBytes<int32_t>(out[0]);
    order.resize(groups);
    std::sort(order.begin(), order.end());
    for (int64_t g = 0; g < groups; ++g)
      ASSERT_EQ(order[g], g) << "run " << run;
  }
}

// Shuffles and the subgroup size: every invocation gets its subgroup's sum, which also
// checks that subgroups are runs of consecutive invocations (the row template relies on it).
TEST_F(VulkanTest, SubgroupShufflesSumEachSubgroup) {
  const int64_t n = 1000;
  std::vector<float> in(n);
  for (int64_t i = 0; i < n; ++i)
    in[i] = static_cast<float>(i);
  std::vector<Bytes> out =
      run(oneKernel(testing::subgroupSum(), {{"n", 1, 4096}}), {n}, {toBytes(in)});
  ASSERT_EQ(out.size(), 2u);
  std::vector<float> sums = fromBytes<float>(out[0]);
  std::vector<int32_t> sizes = fromBytes<int32_t>(out[1]);
  ASSERT_EQ(sums.size(), static_cast<size_t>(n));
  int64_t size = sizes[0];
  ASSERT_TRUE(size >= 1 && size <= 128 && (size & (size - 1)) == 0) << size;
  int failures = 0;
  for (int64_t i = 0; i < n && failures < 5; ++i) {
    double want = 0;
    for (int64_t j = i / size * size; j < (i / size + 1) * size; ++j)
      want += j < n ? static_cast<double>(j) : 0;
    if (sizes[i] != size || sums[i] != static_cast<float>(want)) {
      ++failures;
      ADD_FAILURE() << "invocation " << i << ": sum " << sums[i] << " (want " << want
                    << "), subgroup size " << sizes[i] << " (want " << size << ")";
    }
  }
}

// A plan frees every allocation it made, and a load that fails keeps none.
TEST_F(VulkanTest, PlansFreeWhatTheyAllocate) {
  int64_t before = device_->liveAllocations();
  ASSERT_GE(before, 0);
  Executable exe = oneKernel(testing::floatOp(KOp::FExp, 1), {{"n", 1, 100}});
  {
    Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
    ASSERT_TRUE(plan) << plan.message();
    // One for x, y, the dims and the dispatches; one for the staging buffers.
    EXPECT_EQ(device_->liveAllocations(), before + 2);
    std::vector<Bytes> outputs;
    std::vector<float> x(10, 1.0f);
    ASSERT_FALSE(
        (*plan)
            ->run(std::vector<int64_t>{10}, std::vector<Bytes>{toBytes(x)}, outputs, nullptr)
            .failed());
  }
  EXPECT_EQ(device_->liveAllocations(), before);
  Executable bad = exe;
  bad.kernels[0].buffers.pop_back();
  ASSERT_FALSE(device_->load(bad));
  EXPECT_EQ(device_->liveAllocations(), before);
}

TEST_F(VulkanTest, BadArgumentsAreErrors) {
  Executable exe = oneKernel(testing::floatOp(KOp::FExp, 1), {{"n", 1, 100}});
  Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
  ASSERT_TRUE(plan) << plan.message();
  std::vector<Bytes> outputs;
  std::vector<float> x(200, 1.0f);
  auto message = [&](std::vector<int64_t> dims, std::vector<Bytes> inputs) {
    Status s = (*plan)->run(dims, inputs, outputs, nullptr);
    EXPECT_TRUE(s.failed());
    return s.message();
  };
  EXPECT_NE(message({200}, {toBytes(x)}).find("dim n = 200 is outside its range [1, 100]"),
            std::string::npos);
  EXPECT_NE(message({0}, {Bytes{}}).find("outside its range"), std::string::npos);
  EXPECT_NE(message({}, {toBytes(x)}).find("expected 1 dim values, got 0"), std::string::npos);
  EXPECT_NE(message({10}, {}).find("expected 1 inputs, got 0"), std::string::npos);
  EXPECT_NE(message({10}, {toBytes(x)}).find("needs 40 bytes at these dims, got 800"),
            std::string::npos);

  Executable fewer = exe;
  fewer.kernels[0].buffers.pop_back();
  Expected<std::unique_ptr<Plan>> mismatch = device_->load(fewer);
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.message().find("lists 1 buffers but its SPIR-V binds 3"), std::string::npos)
      << mismatch.message();

  Executable badBarrier = exe;
  badBarrier.barriers = std::vector<QueueBarrier>{{0, {}}};
  Expected<std::unique_ptr<Plan>> unordered = device_->load(badBarrier);
  ASSERT_FALSE(unordered);
  EXPECT_NE(unordered.message().find("a barrier before kernel 0 is out of order"),
            std::string::npos)
      << unordered.message();

  Executable outsideArena = exe;
  outsideArena.buffers[0].arenaOffset = 0;
  Expected<std::unique_ptr<Plan>> arena = device_->load(outsideArena);
  ASSERT_FALSE(arena);
  EXPECT_NE(arena.message().find("is not a temporary within the 0-byte arena"), std::string::npos)
      << arena.message();

  Executable noSpirv = exe;
  noSpirv.kernels[0].spirv.clear();
  Expected<std::unique_ptr<Plan>> bad = device_->load(noSpirv);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("not compiled to SPIR-V"), std::string::npos) << bad.message();
}

// With KILN_VK_VALIDATE=1 the validation layer (synchronization checks included) watches
// a load and runs of two dependent kernels with f16 buffers.
class VulkanValidation : public ::testing::Test {
protected:
  void SetUp() override {
    setenv("KILN_VK_VALIDATE", "1", 1);
    Expected<std::unique_ptr<Device>> d = openVulkanDevice(-1);
    unsetenv("KILN_VK_VALIDATE");
    if (!d)
      GTEST_SKIP() << "SKIPPED: no Vulkan device: " << d.message();
    if ((*d)->describe().find("validation on") == std::string::npos)
      GTEST_SKIP() << "SKIPPED: VK_LAYER_KHRONOS_validation is not installed";
    device_ = std::move(*d);
  }

  // erf of x into e, then max(e, y) into z: the second kernel reads what the first wrote.
  static Executable dependentKernels() {
    Kernel first = testing::elementwise(
        "erf16", {MemType::F16}, MemType::F16,
        [](KernelBuilder &b, std::vector<int> v) { return b.op(KOp::FErf, KType::F32, {v[0]}); });
    Kernel second = testing::elementwise("max16", {MemType::F16, MemType::F32}, MemType::F32,
                                         [](KernelBuilder &b, std::vector<int> v) {
                                           return b.op(KOp::FMax, KType::F32, {v[0], v[1]});
                                         });
    Executable exe;
    exe.dims = {{"n", 1, 1000}};
    ir::TensorType h{ir::DType::F16, {ir::Dim::symbol(0)}}, f{ir::DType::F32, {ir::Dim::symbol(0)}};
    exe.buffers = {{"x", h, BufferRole::Input},
                   {"e", h, BufferRole::Temp},
                   {"y", f, BufferRole::Input},
                   {"z", f, BufferRole::Output}};
    exe.inputs = {0, 2};
    exe.outputs = {3};
    exe.kernels = {
        {"erf16", *compiler::emitSpirv(first), "", {0, 1}, {ir::Dim::symbol(0)}, 1, {false, true}},
        {"max16",
         *compiler::emitSpirv(second),
         "",
         {1, 2, 3},
         {ir::Dim::symbol(0)},
         1,
         {false, false, true}}};
    return exe;
  }

  // Two runs; the first failure, or z.
  Expected<std::vector<float>> runTwice(const Executable &exe) {
    Expected<std::unique_ptr<Plan>> plan = device_->load(exe);
    if (!plan)
      return plan.status();
    std::vector<uint16_t> x(1000, std::bit_cast<uint16_t>(static_cast<_Float16>(0.5f)));
    std::vector<float> y(1000, 0.25f);
    std::vector<Bytes> outputs;
    for (int rep = 0; rep < 2; ++rep) {
      Status s = (*plan)->run(std::vector<int64_t>{1000},
                              std::vector<Bytes>{toBytes(x), toBytes(y)}, outputs, nullptr);
      if (s.failed())
        return s;
    }
    return fromBytes<float>(outputs.at(0));
  }

  std::unique_ptr<Device> device_;
};

TEST_F(VulkanValidation, CorrectRunHasNoMessages) {
  Expected<std::vector<float>> z = runTwice(dependentKernels());
  ASSERT_TRUE(z) << z.message();
  float want = static_cast<float>(static_cast<_Float16>(std::erf(0.5f)));
  EXPECT_EQ(z->at(0), want);
  EXPECT_EQ(z->at(999), want);
}

// The same with the barrier the compiler would place stated: before the second kernel,
// for e.
TEST_F(VulkanValidation, AStatedBarrierOrdersTheKernels) {
  Executable exe = dependentKernels();
  exe.barriers = std::vector<QueueBarrier>{{1, {1}}};
  Expected<std::vector<float>> z = runTwice(exe);
  ASSERT_TRUE(z) << z.message();
  float want = static_cast<float>(static_cast<_Float16>(std::erf(0.5f)));
  EXPECT_EQ(z->at(0), want);
  EXPECT_EQ(z->at(999), want);
}

// The check is live: an executable that states no barriers gets none before the second
// kernel, and synchronization validation reports the hazard (the layer reports it when
// the commands are recorded, at load).
TEST_F(VulkanValidation, AMissingBarrierIsReported) {
  Executable exe = dependentKernels();
  exe.barriers = std::vector<QueueBarrier>{};
  Expected<std::vector<float>> z = runTwice(exe);
  ASSERT_FALSE(z) << "synchronization validation said nothing about a missing barrier";
  EXPECT_NE(z.message().find("SYNC-HAZARD-READ-AFTER-WRITE"), std::string::npos) << z.message();
}

} // namespace
} // namespace kiln::runtime
