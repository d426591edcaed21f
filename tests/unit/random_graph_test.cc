// Property tests of the random graph generator: every graph verifies, reads back from
// its text, runs on the reference interpreter and passes the in-place dependency
// check; a seed always gives the same graph.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/random_graph.h"
#include "ir/verifier.h"
#include "passes/dependence.h"

namespace kiln::ir {
namespace {

constexpr uint64_t kSeeds = 200;

// Seeds 0..199 at sizes 10..200.
RandomGraphOptions optionsFor(uint64_t seed) {
  RandomGraphOptions o;
  o.seed = seed;
  o.nodes = 10 + static_cast<int>(seed % 191);
  return o;
}

// Each dim at a value drawn from its range.
std::vector<int64_t> randomDims(const Graph &g, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> dims;
  for (const SymDim &d : g.dims)
    dims.push_back(d.lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(d.hi - d.lo + 1)));
  return dims;
}

TEST(RandomGraph, GraphsVerifyRoundTripAndRun) {
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RandomGraphOptions o = optionsFor(seed);
    auto g = randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    EXPECT_EQ(static_cast<int>(g->nodes.size()), o.nodes);
    Status v = verify(*g);
    ASSERT_FALSE(v.failed()) << v.message();
    for (const Node &n : g->nodes) {
      auto bytes = maxBytes(n.type, g->dims);
      ASSERT_TRUE(bytes);
      EXPECT_LE(*bytes / dtypeBytes(n.type.dtype), o.maxElements) << "%" << n.name;
    }

    std::string text = printGraph(*g);
    auto back = parseGraph(text);
    ASSERT_TRUE(back) << back.message() << "\n" << text;
    EXPECT_EQ(printGraph(*back), text);

    std::vector<int64_t> dims = randomDims(*g, seed);
    auto out = interpret(*g, dims, randomInputs(*g, dims, seed));
    ASSERT_TRUE(out) << out.message() << "\n" << text;
    EXPECT_EQ(out->size(), g->outputs.size());

    auto accesses = passes::nodeAccesses(*g, passes::analyzeLayouts(*g));
    EXPECT_TRUE(accesses) << accesses.message() << "\n" << text;
  }
}

// Every value is read or returned, so canonicalize has nothing dead to remove.
TEST(RandomGraph, NothingIsDead) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto g = randomGraph(optionsFor(seed));
    ASSERT_TRUE(g) << g.message();
    std::vector<bool> live(g->nodes.size(), false);
    for (int o : g->outputs)
      live[o] = true;
    for (const Node &n : g->nodes)
      for (int o : n.operands)
        live[o] = true;
    for (size_t id = 0; id < live.size(); ++id)
      EXPECT_TRUE(live[id]) << "seed " << seed << ": %" << g->nodes[id].name;
  }
}

TEST(RandomGraph, SeedsAreReproducibleAndDistinct) {
  std::set<std::string> seen;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    RandomGraphOptions o = optionsFor(seed);
    auto a = randomGraph(o), b = randomGraph(o);
    ASSERT_TRUE(a && b);
    std::string text = printGraph(*a);
    EXPECT_EQ(printGraph(*b), text) << "seed " << seed;
    EXPECT_TRUE(seen.insert(text).second) << "seed " << seed << " repeats an earlier graph";
  }
  RandomGraphOptions o = optionsFor(7), p = o;
  p.seed = 8;
  EXPECT_NE(printGraph(*randomGraph(o)), printGraph(*randomGraph(p)));
}

// The mix: every op of the table appears, and so do symbolic dims, transposed and
// batched matmuls and symbolic insert offsets.
TEST(RandomGraph, CoversEveryOp) {
  std::set<Op> ops;
  bool symbolic = false, transposed = false, batched = false, movingInsert = false;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    auto g = randomGraph(optionsFor(seed));
    ASSERT_TRUE(g) << g.message();
    symbolic |= !g->dims.empty();
    for (const Node &n : g->nodes) {
      ops.insert(n.op);
      if (n.op == Op::Matmul) {
        transposed |= n.attrBool("transpose_a") || n.attrBool("transpose_b");
        batched |= n.type.rank() > 2;
      }
      if (n.op == Op::InsertSlice)
        for (const Dim &d : n.attrDims("offsets"))
          movingInsert |= !d.isStatic();
    }
  }
  for (const OpInfo &info : allOps())
    EXPECT_TRUE(ops.count(info.op)) << info.name << " never appears";
  EXPECT_TRUE(symbolic);
  EXPECT_TRUE(transposed);
  EXPECT_TRUE(batched);
  EXPECT_TRUE(movingInsert);
}

TEST(RandomGraph, StaticDimsWhenAsked) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    RandomGraphOptions o = optionsFor(seed);
    o.symbolicDims = false;
    auto g = randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    EXPECT_TRUE(g->dims.empty());
    auto out = interpret(*g, {}, randomInputs(*g, {}, seed));
    EXPECT_TRUE(out) << out.message();
  }
}

TEST(RandomGraph, SmallSizesAreExact) {
  for (int nodes = 1; nodes <= 12; ++nodes) {
    RandomGraphOptions o;
    o.nodes = nodes;
    auto g = randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    EXPECT_EQ(static_cast<int>(g->nodes.size()), nodes);
  }
}

TEST(RandomGraph, RefusesBadOptions) {
  RandomGraphOptions o;
  o.nodes = 0;
  auto g = randomGraph(o);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.message(), "error: a random graph needs at least 1 node");
  o.nodes = 10;
  o.maxElements = 8;
  EXPECT_FALSE(randomGraph(o));
}

} // namespace
} // namespace kiln::ir
