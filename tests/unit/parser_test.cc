// Tests for the .kir parser and printer: exact round trips and located diagnostics.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/parser.h"
#include "ir/printer.h"
#include "tests/unit/examples.h"

namespace kiln::ir {
namespace {

using ::testing::HasSubstr;

using kiln::testing::readExample;

const char *kExamples[] = {"pointwise_chain.kir", "rmsnorm_mul.kir", "softmax_scale_mask.kir",
                           "llama_decoder.kir"};

TEST(Parser, ExamplesRoundTripExactly) {
  for (const char *name : kExamples) {
    std::string text = readExample(name);
    ASSERT_FALSE(text.empty()) << name;
    auto g = parseGraph(text, name);
    ASSERT_TRUE(g) << g.message();
    EXPECT_EQ(printGraph(*g), text) << name;
  }
}

TEST(Parser, PrintedGraphParsesToTheSameText) {
  const char *text = R"(graph @g(%x: f32[n, 4]) -> (f32[n, 4], f32[4]) {
  dim n in [1, 8]
  // comments and odd spacing are fine
  %c   = constant {value = -1.5e-3} : f32[]
  %y = max %x,%c : f32[n, 4]
  %r = reduce_sum %y {axes = [0]} : f32[4]
  return %y, %r
})";
  auto g = parseGraph(text);
  ASSERT_TRUE(g) << g.message();
  std::string once = printGraph(*g);
  auto g2 = parseGraph(once);
  ASSERT_TRUE(g2) << g2.message();
  EXPECT_EQ(printGraph(*g2), once);
  EXPECT_THAT(once, HasSubstr("%c = constant {value = -0.0015} : f32[]"));
}

TEST(Parser, SymbolicDimsKeepDeclarationOrder) {
  auto g = parseGraph(R"(graph @g(%a: f32[b, a]) -> (f32[b, a]) {
  dim a in [1, 4]
  dim b in [2, 3]
  %y = neg %a : f32[b, a]
  return %y
})");
  ASSERT_TRUE(g) << g.message();
  EXPECT_EQ(g->dims[0].name, "a");
  EXPECT_EQ(g->dims[1].lo, 2);
  EXPECT_THAT(printGraph(*g), HasSubstr("%a: f32[b, a]"));
}

struct BadCase {
  const char *text;
  const char *message; // expected substring, location included
};

class ParserErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParserErrors, ReportsLocationAndReason) {
  auto g = parseGraph(GetParam().text, "bad.kir");
  ASSERT_FALSE(g) << "accepted:\n" << GetParam().text;
  EXPECT_THAT(g.message(), HasSubstr(GetParam().message));
  EXPECT_EQ(g.message().find('\n'), std::string::npos) << "diagnostics are one line";
}

INSTANTIATE_TEST_SUITE_P(
    All, ParserErrors,
    ::testing::Values(
        BadCase{"", "bad.kir:1:1: error: expected 'graph', got end of input"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = neg %x : f32[4]\n",
                "bad.kir:3:1: error: expected 'return'"},
        BadCase{"graph @g(%x: f33[4]) -> (f32[4]) {", "bad.kir:1:14: error: unknown dtype 'f33'"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = frob %x : f32[4]\n  return %y\n}",
                "bad.kir:2:8: error: unknown op 'frob'"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = neg %z : f32[4]\n  return %y\n}",
                "bad.kir:2:12: error: use of undefined value '%z'"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = add %y, %x : f32[4]\n  return "
                "%y\n}",
                "use of undefined value '%y'"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = neg %x : f32[5]\n  return %y\n}",
                "bad.kir:2:3: error: type f32[5] does not match the inferred f32[4]"},
        BadCase{"graph @g(%x: f32[4], %w: f16[4]) -> (f32[4]) {\n  %y = add %x, %w : f32[4]\n "
                " return %y\n}",
                "bad.kir:2:3: error: add operands differ in dtype"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = neg %x : f32[4]\n  %y = neg %x : "
                "f32[4]\n  return %y\n}",
                "bad.kir:3:3: error: value %y is defined twice"},
        BadCase{"graph @g(%x: f32[n]) -> (f32[n]) {\n  return %x\n}",
                "bad.kir:1:18: error: dim 'n' is used but not declared"},
        BadCase{"graph @g(%x: f32[n]) -> (f32[n]) {\n  dim n in [5, 2]\n  return %x\n}",
                "bad.kir:2:7: error: dim 'n' needs 0 <= lo <= hi"},
        BadCase{"graph @g(%x: f32[99999999999999999999]) -> (f32[4]) {",
                "bad.kir:1:18: error: integer '99999999999999999999' is out of range"},
        BadCase{"graph @g(%x: f32[4294967296, 4294967296, 4]) -> (f32[4]) {\n  return %x\n}",
                "more bytes than fit in 63 bits"},
        BadCase{"graph @g(%x: f32[1,1,1,1,1,1,1,1,1]) -> (f32[4]) {",
                "bad.kir:1:34: error: rank exceeds the limit of 8"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %c = constant {value = 1e999} : f32[]\n",
                "bad.kir:2:26: error: number '1e999' is out of range"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = reduce_sum %x : f32[]\n  return "
                "%y\n}",
                "bad.kir:2:3: error: reduce_sum needs attribute `axes`"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = softmax %x {axis = 3} : f32[4]\n  "
                "return %y\n}",
                "bad.kir:2:3: error: axis 3 is out of range for f32[4]"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = softmax %x {axes = 3} : f32[4]\n",
                "bad.kir:2:20: error: softmax has no attribute 'axes'"},
        BadCase{"graph @g(%x: f32[kv]) -> (f32[kv]) {\n  dim kv in [1, 8]\n  %y = slice %x "
                "{axis = 0, start = 0, end = kv+1} : f32[kv+1]\n  return %y\n}",
                "bad.kir:3:3: error: slice [0, kv+1) is not within 0..kv"},
        BadCase{"graph @g(%x: f32[8]) -> (f32[3]) {\n  %v = view %x {offset = 1, strides = [4]} "
                ": f32[3]\n  return %v\n}",
                "bad.kir:2:3: error: view f32[3] at offset 1 may reach past the end of f32[8]"},
        BadCase{"graph @g(%x: f32[n, 4]) -> (f32[n, 4]) {\n  dim n in [1, 9]\n  %v = view %x "
                "{offset = 0, strides = [5, 1]} : f32[n, 4]\n  return %v\n}",
                "bad.kir:3:3: error: view f32[n, 4] at offset 0 may reach past the end"},
        BadCase{"graph @g(%x: f32[kv-2]) -> (f32[4]) {\n  dim kv in [1, 8]\n  return %x\n}",
                "extent kv-2 can be negative"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4], f32[4]) {\n  return %x\n}",
                "bad.kir:2:3: error: returns 1 values but the signature declares 2"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  return %x\n} trailing",
                "bad.kir:3:3: error: expected end of input, got 'trailing'"},
        BadCase{"graph @g(%x: f32[4]) -> (f32[4]) {\n  %y = neg %x : f32[4] \x01\n",
                "bad.kir:2:24: error: expected"}));

TEST(Parser, EveryTruncationIsAnErrorNotACrash) {
  std::string text = readExample("llama_decoder.kir");
  ASSERT_FALSE(text.empty());
  auto full = parseGraph(text);
  ASSERT_TRUE(full) << full.message();
  // Every prefix that cuts the closing brace must fail with a located message.
  for (size_t n = 0; n + 2 < text.size(); n += 7) {
    auto g = parseGraph(text.substr(0, n), "cut.kir");
    ASSERT_FALSE(g) << "prefix of " << n << " bytes parsed";
    EXPECT_THAT(g.message(), HasSubstr("cut.kir:"));
  }
}

} // namespace
} // namespace kiln::ir
