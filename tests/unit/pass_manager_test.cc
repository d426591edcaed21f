// Tests for the pass manager and canonicalize.
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "passes/pass_manager.h"

namespace kiln::passes {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

ir::Graph parse(const char *text) {
  auto g = ir::parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  return g ? *g : ir::Graph{};
}

std::string canonicalize(ir::Graph &g) {
  PassManager pm;
  EXPECT_FALSE(pm.addPipeline("canonicalize").failed());
  Status s = pm.run(g);
  EXPECT_FALSE(s.failed()) << s.message();
  return ir::printGraph(g);
}

TEST(PassManager, UnknownPassIsNamed) {
  PassManager pm;
  Status s = pm.addPipeline("canonicalize,frobnicate");
  ASSERT_TRUE(s.failed());
  EXPECT_THAT(s.message(), HasSubstr("unknown pass 'frobnicate'"));
}

TEST(PassManager, PrintsAfterEachPassAndTimes) {
  ir::Graph g = parse(R"(graph @g(%x: f32[4]) -> (f32[4]) {
  %y = neg %x : f32[4]
  return %y
})");
  std::ostringstream out;
  Instrumentation inst;
  inst.printAfterAll = true;
  inst.timePasses = true;
  inst.out = &out;
  PassManager pm(inst);
  ASSERT_FALSE(pm.addPipeline("canonicalize,canonicalize").failed());
  ASSERT_FALSE(pm.run(g).failed());
  std::string s = out.str();
  size_t first = s.find("IR Dump After canonicalize");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(s.find("IR Dump After canonicalize", first + 1), std::string::npos);
  EXPECT_THAT(s, HasSubstr("kiln pass timing"));
}

TEST(PassManager, PrintAfterChangeSkipsPassesThatChangedNothing) {
  ir::Graph g = parse(R"(graph @g(%x: f32[4]) -> (f32[4]) {
  %y = neg %x : f32[4]
  return %y
})");
  std::ostringstream out;
  Instrumentation inst;
  inst.printAfterChange = true;
  inst.out = &out;
  PassManager pm(inst);
  ASSERT_FALSE(pm.addPipeline("canonicalize").failed());
  ASSERT_FALSE(pm.run(g).failed());
  EXPECT_EQ(out.str(), "");
}

TEST(Canonicalize, RemovesDeadNodesAndMergesDuplicates) {
  ir::Graph g = parse(R"(graph @g(%x: f32[4]) -> (f32[4]) {
  %a = exp %x : f32[4]
  %b = exp %x : f32[4]
  %dead = log %x : f32[4]
  %y = add %a, %b : f32[4]
  return %y
})");
  std::string s = canonicalize(g);
  EXPECT_THAT(s, Not(HasSubstr("%dead")));
  EXPECT_THAT(s, Not(HasSubstr("%b =")));
  EXPECT_THAT(s, HasSubstr("%y = add %a, %a : f32[4]"));
}

TEST(Canonicalize, FoldsConstants) {
  ir::Graph g = parse(R"(graph @g(%x: f32[2]) -> (f32[2]) {
  %a = constant {values = [1, 4]} : f32[2]
  %b = sqrt %a : f32[2]
  %y = mul %x, %b : f32[2]
  return %y
})");
  std::string s = canonicalize(g);
  EXPECT_THAT(s, HasSubstr("%b = constant {values = [1, 2]} : f32[2]"));
  EXPECT_THAT(s, Not(HasSubstr("sqrt")));
}

TEST(Canonicalize, FoldsViewChains) {
  ir::Graph g = parse(R"(graph @g(%x: f32[2, 3, 4]) -> (f32[2, 3, 4], f32[24], f32[4, 2, 3]) {
  %p = permute %x {perm = [1, 0, 2]} : f32[3, 2, 4]
  %q = permute %p {perm = [1, 0, 2]} : f32[2, 3, 4]
  %r = reshape %x : f32[6, 4]
  %s = reshape %r : f32[24]
  %t = permute %x {perm = [2, 0, 1]} : f32[4, 2, 3]
  %u = slice %t {axis = 0, start = 0, end = 4} : f32[4, 2, 3]
  return %q, %s, %u
})");
  std::string s = canonicalize(g);
  EXPECT_THAT(s, HasSubstr("%s = reshape %x : f32[24]"));
  EXPECT_THAT(s, HasSubstr("return %x, %s, %t"));
  EXPECT_THAT(s, Not(HasSubstr("%r =")));
  EXPECT_THAT(s, Not(HasSubstr("slice")));
}

TEST(Canonicalize, MergesSlicesOfSlices) {
  ir::Graph g = parse(R"(graph @g(%x: f32[10]) -> (f32[3]) {
  %a = slice %x {axis = 0, start = 2, end = 9} : f32[7]
  %b = slice %a {axis = 0, start = 1, end = 4} : f32[3]
  return %b
})");
  std::string s = canonicalize(g);
  EXPECT_THAT(s, HasSubstr("%b = slice %x {axis = 0, start = 3, end = 6} : f32[3]"));
}

TEST(Canonicalize, KeepsResultsOnTheReferenceInterpreter) {
  const char *text = R"(graph @g(%x: f32[2, 3]) -> (f32[3, 2], f32[2, 3]) {
  %c = constant {value = 2} : f32[]
  %d = mul %c, %c : f32[]
  %p = permute %x {perm = [1, 0]} : f32[3, 2]
  %q = permute %p {perm = [1, 0]} : f32[2, 3]
  %y = mul %q, %d : f32[2, 3]
  %z = mul %x, %d : f32[2, 3]
  %w = add %y, %z : f32[2, 3]
  return %p, %w
})";
  ir::Graph before = parse(text), after = parse(text);
  canonicalize(after);
  EXPECT_LT(after.nodes.size(), before.nodes.size());
  std::vector<ir::HostTensor> in{ir::randomTensor(ir::DType::F32, {2, 3}, 3)};
  auto a = ir::interpret(before, {}, in), b = ir::interpret(after, {}, in);
  ASSERT_TRUE(a && b);
  for (size_t i = 0; i < a->size(); ++i)
    EXPECT_EQ((*a)[i].data, (*b)[i].data);
}

} // namespace
} // namespace kiln::passes
