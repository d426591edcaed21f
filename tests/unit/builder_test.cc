// Tests for the C++ graph builder.
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "ir/printer.h"

namespace kiln::ir {
namespace {

TEST(Builder, BuildsAVerifiedGraphThatPrints) {
  Builder b("rms");
  Dim t = b.dim("t", 1, 64);
  int x = b.input("x", {DType::F16, {t, Dim::of(8)}});
  int w = b.param("w", {DType::F16, {Dim::of(8)}});
  int n = b.op(Op::RmsNorm, {x}, {{"eps", 1e-5}});
  int y = b.binary(Op::Mul, n, w);
  b.output(y);
  auto g = b.finish();
  ASSERT_TRUE(g) << g.message();
  EXPECT_EQ(printGraph(*g), R"(graph @rms(%x: f16[t, 8], param %w: f16[8]) -> (f16[t, 8]) {
  dim t in [1, 64]
  %2 = rms_norm %x {eps = 1e-05} : f16[t, 8]
  %3 = mul %2, %w : f16[t, 8]
  return %3
}
)");
}

TEST(Builder, ReportsTheFirstError) {
  Builder b;
  int x = b.input("x", {DType::F32, {Dim::of(3)}});
  int y = b.input("y", {DType::F32, {Dim::of(4)}});
  int bad = b.binary(Op::Add, x, y);
  EXPECT_EQ(bad, -1);
  b.output(b.unary(Op::Neg, bad));
  auto g = b.finish();
  ASSERT_FALSE(g);
  EXPECT_NE(g.message().find("do not broadcast"), std::string::npos) << g.message();
}

TEST(Builder, MissingRequiredAttributeIsAnError) {
  Builder b;
  int x = b.input("x", {DType::F32, {Dim::of(3)}});
  EXPECT_EQ(b.op(Op::ReduceSum, {x}), -1);
  auto g = b.finish();
  ASSERT_FALSE(g);
  EXPECT_NE(g.message().find("needs attribute `axes`"), std::string::npos) << g.message();
}

} // namespace
} // namespace kiln::ir
