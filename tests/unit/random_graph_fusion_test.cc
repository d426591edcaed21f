// Property test of the pass pipeline on random graphs: canonicalize and fusion keep
// every graph valid, and neither changes a bit of the results.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "ir/interpreter.h"
#include "ir/printer.h"
#include "ir/random_graph.h"
#include "passes/pass_manager.h"

namespace kiln::passes {
namespace {

Expected<ir::Graph> runPasses(ir::Graph g, const char *pipeline) {
  PassManager pm;
  if (Status s = pm.addPipeline(pipeline); s.failed())
    return s;
  if (Status s = pm.run(g); s.failed())
    return s;
  return g;
}

bool bitIdentical(const ir::HostTensor &a, const ir::HostTensor &b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0;
}

// No op of a random graph reads only constants, so canonicalize folds nothing that
// would be rounded to its dtype, and its results match the original's bit for bit too.
TEST(RandomGraphPasses, CanonicalizeAndFusionKeepResultsBitIdentical) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ir::RandomGraphOptions o;
    o.seed = seed;
    o.nodes = 10 + static_cast<int>(seed % 191);
    auto g = ir::randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    std::string text = ir::printGraph(*g);
    auto plain = runPasses(*g, "canonicalize");
    ASSERT_TRUE(plain) << plain.message() << "\n" << text;
    auto fused = runPasses(*g, "canonicalize,fusion");
    ASSERT_TRUE(fused) << fused.message() << "\n" << text;

    std::mt19937_64 rng(seed);
    std::vector<int64_t> dims;
    for (const ir::SymDim &d : g->dims)
      dims.push_back(d.lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(d.hi - d.lo + 1)));
    std::vector<ir::HostTensor> in = ir::randomInputs(*g, dims, seed);
    auto original = ir::interpret(*g, dims, in);
    auto want = ir::interpret(*plain, dims, in), got = ir::interpret(*fused, dims, in);
    ASSERT_TRUE(original) << original.message() << "\n" << text;
    ASSERT_TRUE(want) << want.message() << "\n" << text;
    ASSERT_TRUE(got) << got.message() << "\n" << text;
    ASSERT_EQ(want->size(), original->size());
    ASSERT_EQ(want->size(), got->size());
    for (size_t i = 0; i < want->size(); ++i) {
      EXPECT_TRUE(bitIdentical((*want)[i], (*original)[i])) << "canonicalize: output " << i;
      EXPECT_TRUE(bitIdentical((*got)[i], (*want)[i])) << "fusion: output " << i << "\n" << text;
    }
  }
}

} // namespace
} // namespace kiln::passes

namespace kiln::passes {
namespace {

// Larger generated graphs go through the whole default pipeline. Seed 16 at 1,000 nodes
// once left a view outside the kernel that both made and read it: a cycle in emit().
TEST(RandomGraphPasses, TheDefaultPipelineRunsOnLargeGraphs) {
  for (uint64_t seed : {16, 17, 18}) {
    ir::RandomGraphOptions o;
    o.seed = seed;
    o.nodes = 1000;
    auto g = ir::randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    PassManager pm;
    ASSERT_FALSE(pm.addPipeline(defaultPipeline()).failed());
    Status s = pm.run(*g);
    EXPECT_FALSE(s.failed()) << "seed " << seed << ": " << s.message();
  }
}

} // namespace
} // namespace kiln::passes
