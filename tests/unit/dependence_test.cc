// Tests for the cost model and the dependency analysis on byte ranges.
#include <gtest/gtest.h>

#include "ir/parser.h"
#include "passes/cost_model.h"
#include "passes/dependence.h"

namespace kiln::passes {
namespace {

struct Analysis {
  ir::Graph g;
  std::vector<Layout> layouts;
  std::vector<Accesses> accesses;
  DependenceGraph deps;
};

Analysis analyze(const char *text) {
  Analysis a;
  auto g = ir::parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  a.g = *g;
  a.layouts = analyzeLayouts(a.g);
  auto acc = nodeAccesses(a.g, a.layouts);
  EXPECT_TRUE(acc) << acc.message();
  a.accesses = *acc;
  a.deps = analyzeDependences(a.accesses, std::vector<double>(a.g.nodes.size(), 1.0));
  return a;
}

int node(const Analysis &a, const std::string &name) {
  for (size_t i = 0; i < a.g.nodes.size(); ++i)
    if (a.g.nodes[i].name == name)
      return static_cast<int>(i);
  ADD_FAILURE() << "no node " << name;
  return -1;
}

bool hasEdge(const Analysis &a, const std::string &from, const std::string &to) {
  const auto &p = a.deps.preds[node(a, to)];
  return std::find(p.begin(), p.end(), node(a, from)) != p.end();
}

bool hasHazard(const Analysis &a, const std::string &from, const std::string &to, Hazard kind) {
  for (const Dependence &d : a.deps.hazards)
    if (d.from == node(a, from) && d.to == node(a, to) && d.kind == kind)
      return true;
  return false;
}

TEST(Dependence, DiamondIsTransitivelyReduced) {
  Analysis a = analyze(R"(graph @g(%x: f32[4]) -> (f32[4]) {
  %a = exp %x : f32[4]
  %b = neg %a : f32[4]
  %c = abs %a : f32[4]
  %d = add %b, %c : f32[4]
  %e = add %d, %a : f32[4]
  return %e
})");
  EXPECT_TRUE(hasHazard(a, "a", "e", Hazard::RAW));
  EXPECT_FALSE(hasEdge(a, "a", "e")); // implied by a -> b -> d -> e
  EXPECT_TRUE(hasEdge(a, "a", "b") && hasEdge(a, "a", "c") && hasEdge(a, "d", "e"));
  EXPECT_EQ(a.deps.asap[node(a, "e")], 3);
  EXPECT_EQ(a.deps.alap[node(a, "b")], 1);
  EXPECT_EQ(a.deps.criticalPath.size(), 4u);
  EXPECT_DOUBLE_EQ(a.deps.criticalPathMicros, 4.0);
}

TEST(Dependence, DisjointInPlaceWritesAreIndependentOverlappingOnesAreOrdered) {
  Analysis a = analyze(R"(graph @g(%c: f32[8, 4], %k: f32[2, 4]) -> (f32[8, 4]) {
  %u = insert_slice %c, %k {offsets = [0, 0]} : f32[8, 4]
  %v = insert_slice %u, %k {offsets = [4, 0]} : f32[8, 4]
  %w = insert_slice %v, %k {offsets = [5, 0]} : f32[8, 4]
  return %w
})");
  EXPECT_FALSE(hasHazard(a, "u", "v", Hazard::WAW)); // rows 0-1 and 4-5
  EXPECT_TRUE(hasHazard(a, "v", "w", Hazard::WAW));  // rows 4-5 and 5-6
  EXPECT_EQ(a.layouts[node(a, "w")].buffer, node(a, "c"));
}

TEST(Dependence, ViewsReadTheirBaseBuffer) {
  Analysis a = analyze(R"(graph @g(%x: f32[4, 8]) -> (f32[8, 4], f32[2, 8]) {
  %t = permute %x {perm = [1, 0]} : f32[8, 4]
  %e = exp %t : f32[8, 4]
  %s = slice %x {axis = 0, start = 2, end = 4} : f32[2, 8]
  %n = neg %s : f32[2, 8]
  return %e, %n
})");
  const Layout &s = a.layouts[node(a, "s")];
  EXPECT_EQ(s.buffer, node(a, "x"));
  EXPECT_EQ(s.range.begin, 64);
  EXPECT_EQ(s.range.end, 128);
  ASSERT_EQ(a.accesses[node(a, "e")].reads.size(), 1u);
  EXPECT_EQ(a.accesses[node(a, "e")].reads[0].buffer, node(a, "x"));
  EXPECT_TRUE(a.deps.hazards.empty()); // two readers of one input never conflict
}

TEST(Dependence, SymbolicSlicesFallBackToTheWholeRange) {
  Analysis a = analyze(R"(graph @g(%c: f32[16, 4]) -> (f32[kv, 4]) {
  dim kv in [1, 16]
  %s = slice %c {axis = 0, start = 0, end = kv} : f32[kv, 4]
  return %s
})");
  const Layout &s = a.layouts[node(a, "s")];
  EXPECT_FALSE(s.exact);
  EXPECT_EQ(s.range.end, 256);
}

TEST(Dependence, StaleReadAfterInPlaceWriteIsAnError) {
  auto g = ir::parseGraph(R"(graph @g(%c: f32[8], %k: f32[1]) -> (f32[8], f32[8]) {
  %u = insert_slice %c, %k {offsets = [3]} : f32[8]
  return %u, %c
})");
  ASSERT_TRUE(g) << g.message();
  auto acc = nodeAccesses(*g, analyzeLayouts(*g));
  ASSERT_FALSE(acc);
  EXPECT_NE(acc.message().find("the graph's result reads %c after %u overwrote it"),
            std::string::npos)
      << acc.message();
}

TEST(CostModel, RooflineOnTheH200Profile) {
  const DeviceProfile *p = findDeviceProfile("h200");
  ASSERT_NE(p, nullptr);
  // 4.22 GB at 4.22 TB/s is 1000 us, plus one launch.
  EXPECT_NEAR(predictMicros(*p, {4.22e9, 0}, false), 1000 + p->launchMicros, 1e-6);
  // A tiny kernel costs the minimum a kernel takes.
  EXPECT_NEAR(predictMicros(*p, {64, 16}, false), p->minKernelMicros, 1e-9);
  auto g = ir::parseGraph(R"(graph @g(%a: f16[64, 128], %b: f16[128, 32]) -> (f16[64, 32]) {
  %m = matmul %a, %b : f16[64, 32]
  return %m
})");
  ASSERT_TRUE(g);
  Cost c = nodeCost(*g, 2, {});
  EXPECT_EQ(c.flops, 2.0 * 64 * 32 * 128);
  EXPECT_EQ(c.bytes, 2.0 * (64 * 128 + 128 * 32 + 64 * 32));
}

} // namespace
} // namespace kiln::passes
