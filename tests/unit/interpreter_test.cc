// Tests for the reference interpreter: each op category on small hand-checked cases.
#include <cmath>

#include <gtest/gtest.h>

#include "ir/interpreter.h"
#include "ir/parser.h"

namespace kiln::ir {
namespace {

// Parses `text`, runs it with `inputs` (values only; shapes from the graph) at `dims`.
std::vector<HostTensor> run(const std::string &text, std::vector<std::vector<double>> inputs,
                            std::vector<int64_t> dims = {}) {
  auto g = parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  if (!g)
    return {};
  std::vector<HostTensor> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType &t = g->typeOf(g->inputs[i]);
    in.push_back({t.dtype, evalShape(t.shape, dims), inputs[i]});
  }
  auto out = interpret(*g, dims, in);
  EXPECT_TRUE(out) << out.message();
  return out ? *out : std::vector<HostTensor>{};
}

TEST(Interpreter, BroadcastingBinaryOps) {
  auto out = run(R"(graph @g(%a: f32[2, 3], %b: f32[3]) -> (f32[2, 3]) {
  %y = sub %a, %b : f32[2, 3]
  return %y
})",
                 {{1, 2, 3, 4, 5, 6}, {1, 1, 2}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, (std::vector<double>{0, 1, 1, 3, 4, 4}));
}

TEST(Interpreter, MaxPropagatesNaNAndReluKeepsIt) {
  auto out = run(R"(graph @g(%a: f32[3], %b: f32[3]) -> (f32[3], f32[3]) {
  %m = max %a, %b : f32[3]
  %r = relu %a : f32[3]
  return %m, %r
})",
                 {{NAN, -1, 2}, {0, NAN, 1}});
  EXPECT_TRUE(std::isnan(out[0].data[0]) && std::isnan(out[0].data[1]));
  EXPECT_EQ(out[0].data[2], 2);
  EXPECT_TRUE(std::isnan(out[1].data[0]));
  EXPECT_EQ(out[1].data[1], 0);
}

TEST(Interpreter, IntegerArithmeticWraps) {
  auto out = run(R"(graph @g(%a: i32[2]) -> (i32[2]) {
  %y = add %a, %a : i32[2]
  return %y
})",
                 {{2147483647, -3}});
  EXPECT_EQ(out[0].data, (std::vector<double>{-2, -6}));
}

TEST(Interpreter, CastRoundsToTheTarget) {
  auto out = run(R"(graph @g(%a: f32[2]) -> (f16[2], i32[2]) {
  %h = cast %a : f16[2]
  %i = cast %a : i32[2]
  return %h, %i
})",
                 {{1.0009765625 + 1e-5, -2.7}});
  EXPECT_EQ(out[0].data[0], 1.0009765625);
  EXPECT_EQ(out[1].data[1], -2);
}

TEST(Interpreter, ReductionsOverAxes) {
  auto out = run(R"(graph @g(%a: f32[2, 3]) -> (f32[2, 1], f32[3], f32[]) {
  %s = reduce_sum %a {axes = [1], keepdims = true} : f32[2, 1]
  %m = reduce_max %a {axes = [0]} : f32[3]
  %e = reduce_mean %a {axes = [0, 1]} : f32[]
  return %s, %m, %e
})",
                 {{1, 2, 3, 4, 5, 7}});
  EXPECT_EQ(out[0].data, (std::vector<double>{6, 16}));
  EXPECT_EQ(out[1].data, (std::vector<double>{4, 5, 7}));
  EXPECT_DOUBLE_EQ(out[2].data[0], 22.0 / 6);
}

TEST(Interpreter, SoftmaxRmsNormLayerNorm) {
  auto out = run(R"(graph @g(%a: f32[2, 2]) -> (f32[2, 2], f32[2, 2], f32[2, 2]) {
  %s = softmax %a : f32[2, 2]
  %r = rms_norm %a {eps = 0} : f32[2, 2]
  %l = layer_norm %a {axis = 0, eps = 0} : f32[2, 2]
  return %s, %r, %l
})",
                 {{0, std::log(3.0), 3, 4}});
  EXPECT_NEAR(out[0].data[0], 0.25, 1e-15);
  EXPECT_NEAR(out[0].data[1], 0.75, 1e-15);
  EXPECT_NEAR(out[1].data[2], 3 / std::sqrt(12.5), 1e-15);
  EXPECT_NEAR(out[2].data[0], -1, 1e-15); // column (0, 3): mean 1.5, std 1.5
  EXPECT_NEAR(out[2].data[2], 1, 1e-15);
}

TEST(Interpreter, RopeBothForms) {
  const char *text = R"(graph @g(%x: f32[1, 4], %p: i32[1]) -> (f32[1, 4]) {
  %y = rope %x, %p {mode = MODE, theta = 100} : f32[1, 4]
  return %y
})";
  std::string inter = text, half = text;
  inter.replace(inter.find("MODE"), 4, "interleaved");
  half.replace(half.find("MODE"), 4, "half");
  // Pair 0 turns by p radians, pair 1 by p / 10.
  auto a = run(inter, {{1, 0, 1, 0}, {2}});
  EXPECT_NEAR(a[0].data[0], std::cos(2.0), 1e-15);
  EXPECT_NEAR(a[0].data[1], std::sin(2.0), 1e-15);
  EXPECT_NEAR(a[0].data[3], std::sin(0.2), 1e-15);
  auto b = run(half, {{1, 1, 0, 0}, {2}});
  EXPECT_NEAR(b[0].data[0], std::cos(2.0), 1e-15);
  EXPECT_NEAR(b[0].data[2], std::sin(2.0), 1e-15);
  EXPECT_NEAR(b[0].data[3], std::sin(0.2), 1e-15);
}

TEST(Interpreter, BatchedMatmulWithTransposeAndBroadcast) {
  auto out = run(R"(graph @g(%a: f32[2, 1, 2], %b: f32[3, 2]) -> (f32[2, 1, 3]) {
  %y = matmul %a, %b {transpose_b = true} : f32[2, 1, 3]
  return %y
})",
                 {{1, 2, 3, 4}, {1, 0, 0, 1, 1, 1}});
  EXPECT_EQ(out[0].data, (std::vector<double>{1, 2, 3, 3, 4, 7}));
}

TEST(Interpreter, GatherConcatSlicePermute) {
  auto out = run(R"(graph @g(%t: f32[3, 2], %i: i32[2]) -> (f32[2, 2], f32[5, 2], f32[2, 2]) {
  %r = gather %t, %i : f32[2, 2]
  %c = concat %t, %r {axis = 0} : f32[5, 2]
  %s = slice %c {axis = 0, start = 1, end = 3} : f32[2, 2]
  %p = permute %s {perm = [1, 0]} : f32[2, 2]
  return %r, %c, %p
})",
                 {{1, 2, 3, 4, 5, 6}, {2, 0}});
  EXPECT_EQ(out[0].data, (std::vector<double>{5, 6, 1, 2}));
  EXPECT_EQ(out[1].data, (std::vector<double>{1, 2, 3, 4, 5, 6, 5, 6, 1, 2}));
  EXPECT_EQ(out[2].data, (std::vector<double>{3, 5, 4, 6}));
}

TEST(Interpreter, GatherOutOfRangeIsAnError) {
  auto g = parseGraph(R"(graph @g(%t: f32[3, 2], %i: i32[1]) -> (f32[1, 2]) {
  %r = gather %t, %i : f32[1, 2]
  return %r
})");
  ASSERT_TRUE(g);
  std::vector<HostTensor> in{{DType::F32, {3, 2}, std::vector<double>(6, 0)},
                             {DType::I32, {1}, {3}}};
  auto out = interpret(*g, {}, in);
  ASSERT_FALSE(out);
  EXPECT_NE(out.message().find("out of range"), std::string::npos) << out.message();
}

TEST(Interpreter, KvCacheWriteAtASymbolicOffset) {
  auto out = run(R"(graph @g(%c: f32[4, 2], %k: f32[1, 2]) -> (f32[4, 2], f32[kv, 2]) {
  dim kv in [1, 4]
  %u = insert_slice %c, %k {offsets = [kv-1, 0]} : f32[4, 2]
  %s = slice %u {axis = 0, start = 0, end = kv} : f32[kv, 2]
  return %u, %s
})",
                 {{0, 0, 0, 0, 0, 0, 0, 0}, {7, 8}}, {3});
  EXPECT_EQ(out[0].data, (std::vector<double>{0, 0, 0, 0, 7, 8, 0, 0}));
  EXPECT_EQ(out[1].shape, (Extents{3, 2}));
  EXPECT_EQ(out[1].data[5], 8);
}

TEST(Interpreter, StridedViews) {
  // Column 1 of a 3x4 matrix, its transpose, and a view at a symbolic offset.
  auto out = run(R"(graph @g(%x: f32[3, 4]) -> (f32[3], f32[4, 3], f32[3]) {
  dim n in [1, 3]
  %c = view %x {offset = 1, strides = [4]} : f32[3]
  %t = view %x {offset = 0, strides = [1, 4]} : f32[4, 3]
  %r = view %x {offset = n-1, strides = [3]} : f32[3]
  return %c, %t, %r
})",
                 {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}, {2});
  EXPECT_EQ(out[0].data, (std::vector<double>{1, 5, 9}));
  EXPECT_EQ(out[1].data, (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(out[2].data, (std::vector<double>{1, 4, 7}));
}

TEST(Interpreter, DimsOutsideTheirRangeAreRefused) {
  auto g = parseGraph(R"(graph @g(%x: f32[n]) -> (f32[n]) {
  dim n in [2, 4]
  return %x
})");
  ASSERT_TRUE(g);
  int64_t dims[] = {5};
  HostTensor x{DType::F32, {5}, std::vector<double>(5, 0)};
  auto out = interpret(*g, dims, std::span(&x, 1));
  ASSERT_FALSE(out);
  EXPECT_NE(out.message().find("outside its range [2, 4]"), std::string::npos) << out.message();
}

TEST(Interpreter, RefusesGraphsTooLargeForMemory) {
  auto g = parseGraph(R"(graph @g(%x: f32[n, 1048576]) -> (f32[n, 1048576]) {
  dim n in [1, 1048576]
  %y = neg %x : f32[n, 1048576]
  return %y
})");
  ASSERT_TRUE(g);
  int64_t dims[] = {1048576};
  auto out = interpret(*g, dims, {});
  ASSERT_FALSE(out);
}

// The NMSE an output may show against the reference: its narrowest float type on the
// way, and kMatmulNmseLimit past a matmul of f16 or bf16 factors.
TEST(Interpreter, OutputLimitsFollowWhatTheValuesPassedThrough) {
  auto limit = [](const std::string &dtype, const std::string &op) {
    std::string text = "graph @g(%a: " + dtype + "[4, 4], %b: " + dtype +
                       "[4, 4]) -> (f32[4, 4]) {\n"
                       "  %c = " +
                       op + " %a, %b : " + dtype +
                       "[4, 4]\n"
                       "  %d = cast %c : f32[4, 4]\n"
                       "  return %d\n}\n";
    auto g = parseGraph(text);
    EXPECT_TRUE(g) << g.message();
    return g ? outputNmseLimit(*g, g->outputs[0]) : -1;
  };
  EXPECT_EQ(limit("f32", "add"), nmseLimit(DType::F32));
  EXPECT_EQ(limit("f32", "matmul"), nmseLimit(DType::F32));
  EXPECT_EQ(limit("f16", "add"), nmseLimit(DType::F16));
  EXPECT_EQ(limit("f16", "matmul"), kMatmulNmseLimit);
  EXPECT_EQ(limit("bf16", "matmul"), kMatmulNmseLimit);
}

} // namespace
} // namespace kiln::ir
