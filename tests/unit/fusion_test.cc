// Tests for the fusion pass: kernels are well formed and results do not change.
#include <gtest/gtest.h>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "passes/module.h"
#include "passes/pass_manager.h"
#include "tests/unit/examples.h"

namespace kiln::passes {
namespace {

ir::Graph runPasses(const ir::Graph &in, const char *pipeline) {
  ir::Graph g = in;
  PassManager pm;
  EXPECT_FALSE(pm.addPipeline(pipeline).failed());
  Status s = pm.run(g);
  EXPECT_FALSE(s.failed()) << s.message();
  return g;
}

// The kernel that fusion put node %name in, or -1.
int kernelOf(const ir::Graph &g, const std::string &name) {
  for (const ir::Node &n : g.nodes)
    if (n.name == name)
      return n.kernel;
  ADD_FAILURE() << "no node %" << name;
  return -1;
}

// Fused and unfused graphs give bit-identical results on the reference interpreter;
// returns the fused graph.
ir::Graph expectSameResults(const std::string &text, std::vector<int64_t> dims) {
  auto g = ir::parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  if (!g)
    return {};
  ir::Graph plain = runPasses(*g, "canonicalize");
  ir::Graph fused = runPasses(*g, "canonicalize,fusion");
  EXPECT_FALSE(fused.kernels.empty());
  for (const ir::Node &n : fused.nodes) {
    ir::Category c = ir::opCategory(n.op);
    if (c != ir::Category::Source && c != ir::Category::Layout) {
      EXPECT_GE(n.kernel, 0) << "%" << n.name << " is in no kernel";
    }
  }
  std::vector<ir::HostTensor> in;
  for (size_t i = 0; i < g->inputs.size(); ++i) {
    const ir::TensorType &t = g->typeOf(g->inputs[i]);
    in.push_back(ir::randomTensor(t.dtype, ir::evalShape(t.shape, dims), 40 + i));
  }
  auto a = ir::interpret(plain, dims, in), b = ir::interpret(fused, dims, in);
  EXPECT_TRUE(a) << a.message();
  EXPECT_TRUE(b) << b.message();
  if (a && b) {
    EXPECT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size() && i < b->size(); ++i)
      EXPECT_EQ((*a)[i].data, (*b)[i].data) << "output " << i;
  }
  return fused;
}

TEST(Fusion, ExamplesKeepTheirResults) {
  expectSameResults(testing::readExample("pointwise_chain.kir"), {5});
  expectSameResults(testing::readExample("rmsnorm_mul.kir"), {3});
  expectSameResults(testing::readExample("softmax_scale_mask.kir"), {});
}

TEST(Fusion, BranchesAndInPlaceWritesKeepTheirResults) {
  expectSameResults(
      R"(graph @g(%x: f32[n, 16], %c: f32[8, 16], %w: f32[16, 16]) -> (f32[n, 16], f32[8, 16], f32[n]) {
  dim n in [1, 8]
  %a = exp %x : f32[n, 16]
  %b = matmul %a, %w : f32[n, 16]
  %d = tanh %b : f32[n, 16]
  %e = softmax %a : f32[n, 16]
  %f = add %d, %e : f32[n, 16]
  %r = reduce_max %f {axes = [1]} : f32[n]
  %s = slice %f {axis = 0, start = 0, end = 1} : f32[1, 16]
  %u = insert_slice %c, %s {offsets = [n-1, 0]} : f32[8, 16]
  return %f, %u, %r
})",
      {4});
}

TEST(Fusion, SiblingContractionsShareAKernel) {
  ir::Graph g = expectSameResults(
      R"(graph @g(%x: f32[4, 64], %w1: f32[64, 32], %w2: f32[64, 32]) -> (f32[4, 32], f32[4, 32]) {
  %a = matmul %x, %w1 : f32[4, 32]
  %b = matmul %x, %w2 : f32[4, 32]
  %ra = relu %a : f32[4, 32]
  %rb = tanh %b : f32[4, 32]
  return %ra, %rb
})",
      {});
  EXPECT_EQ(g.kernels.size(), 1u);
  EXPECT_EQ(kernelOf(g, "a"), kernelOf(g, "rb"));
}

// Six f32 sibling contractions: 13 buffers, and 8 KB of shared memory for the A tile
// plus 8 KB per B tile. H200 blocks have 227 KB, so one kernel holds all six; a Vulkan
// GPU's 32 KB holds three.
TEST(Fusion, SiblingsStayWithinTheProfilesSharedMemory) {
  std::string text = "graph @g(%x: f32[4, 64]";
  std::string body, results, values;
  for (int i = 0; i < 6; ++i) {
    std::string n = std::to_string(i);
    text += ", %w" + n + ": f32[64, 32]";
    body += "  %m" + n + " = matmul %x, %w" + n + " : f32[4, 32]\n";
    results += i ? ", f32[4, 32]" : "f32[4, 32]";
    values += i ? ", %m" + n : " %m" + n;
  }
  text += ") -> (" + results + ") {\n" + body + "  return" + values + "\n}";
  auto g = ir::parseGraph(text);
  ASSERT_TRUE(g) << g.message();
  for (auto [profile, kernels] : {std::pair{"h200", 1u}, std::pair{"vulkan-gpu", 2u}}) {
    Module m;
    m.graph = *g;
    m.profile = findDeviceProfile(profile);
    PassManager pm;
    ASSERT_FALSE(pm.addPipeline("canonicalize,fusion").failed());
    ASSERT_FALSE(pm.run(m).failed());
    EXPECT_EQ(m.graph.kernels.size(), kernels) << profile;
    std::vector<int> perKernel(m.graph.kernels.size(), 0);
    for (const ir::Node &n : m.graph.nodes)
      if (n.op == ir::Op::Matmul)
        ++perKernel[n.kernel];
    for (int c : perKernel)
      EXPECT_LE(kernelSharedBytes(c, 4, 0), m.profile->sharedBytes) << profile;
  }
}

TEST(Fusion, RopeAndTheCacheStoreJoinAContractionThroughAReshape) {
  ir::Graph g = expectSameResults(
      R"(graph @g(%x: f32[1, 64], %w: f32[64, 256], %pos: i32[1], %cache: f32[8, 2, 128]) -> (f32[8, 2, 128]) {
  %m = matmul %x, %w : f32[1, 256]
  %r = reshape %m : f32[1, 2, 128]
  %k = rope %r, %pos {mode = half} : f32[1, 2, 128]
  %c = insert_slice %cache, %k {offsets = [3, 0, 0]} : f32[8, 2, 128]
  return %c
})",
      {});
  EXPECT_EQ(g.kernels.size(), 1u);
  EXPECT_EQ(kernelOf(g, "m"), kernelOf(g, "c"));
}

TEST(Fusion, ASiblingThatReadsTheOtherStaysApart) {
  // %b reads %x like %a, but its weights come from %a: one kernel would need %a whole
  // before %b's first dot product.
  ir::Graph g = expectSameResults(
      R"(graph @g(%x: f32[16, 16], %w: f32[16, 16]) -> (f32[16, 16]) {
  %a = matmul %x, %w : f32[16, 16]
  %t = tanh %a : f32[16, 16]
  %b = matmul %x, %t : f32[16, 16]
  return %b
})",
      {});
  EXPECT_NE(kernelOf(g, "a"), kernelOf(g, "b"));
  EXPECT_EQ(kernelOf(g, "a"), kernelOf(g, "t"));
}

// softmax(f(q . K)) . V over one query row is one kernel, f a pointwise chain on the
// scores (here a scale and a mask of another shape); not where a value between the two
// matmuls is used elsewhere, nor for many query rows.
TEST(Fusion, ADecodeAttentionIsOneKernel) {
  // M query rows; %p also returned where `seen`.
  auto attention = [](const std::string &m, bool seen) {
    std::string text =
        R"(graph @g(%q: f16[4, M, 64], %k: f16[4, 64, kv], %v: f16[4, kv, 64], %mask: f16[1, 1, kv]) -> (f16[4, M, 64]EXTRA) {
  dim kv in [1, 100]
  %s = matmul %q, %k : f16[4, M, kv]
  %c = constant {value = 0.125} : f16[]
  %ss = mul %s, %c : f16[4, M, kv]
  %sm = add %ss, %mask : f16[4, M, kv]
  %p = softmax %sm : f16[4, M, kv]
  %o = matmul %p, %v : f16[4, M, 64]
  return %oRETURNED
})";
    auto replace = [&](const std::string &from, const std::string &to) {
      for (size_t at; (at = text.find(from)) != std::string::npos;)
        text.replace(at, from.size(), to);
    };
    replace("EXTRA", seen ? ", f16[4, M, kv]" : "");
    replace("RETURNED", seen ? ", %p" : "");
    replace("M,", m + ",");
    return text;
  };
  ir::Graph one = expectSameResults(attention("1", false), {37});
  EXPECT_EQ(one.kernels.size(), 1u);
  for (const char *name : {"s", "ss", "sm", "p"})
    EXPECT_EQ(kernelOf(one, name), kernelOf(one, "o")) << name;
  ir::Graph seen = expectSameResults(attention("1", true), {37});
  EXPECT_NE(kernelOf(seen, "p"), kernelOf(seen, "o"));
  EXPECT_NE(kernelOf(seen, "s"), kernelOf(seen, "p"));
  ir::Graph prefill = expectSameResults(attention("8", false), {37});
  EXPECT_NE(kernelOf(prefill, "s"), kernelOf(prefill, "o"));

  auto g = ir::parseGraph(testing::readExample("llama_decoder.kir"));
  ASSERT_TRUE(g);
  ir::Graph decoder = runPasses(*g, "canonicalize,fusion");
  EXPECT_EQ(kernelOf(decoder, "s"), kernelOf(decoder, "o"));
  EXPECT_EQ(kernelOf(decoder, "p"), kernelOf(decoder, "o"));
  EXPECT_EQ(decoder.kernels.size(), 7u);
}

TEST(Fusion, ThePipelineRunsTwiceToTheSameGraph) {
  auto g = ir::parseGraph(testing::readExample("llama_decoder.kir"));
  ASSERT_TRUE(g);
  ir::Graph once = runPasses(*g, "canonicalize,fusion");
  ir::Graph twice = runPasses(once, "fusion");
  EXPECT_EQ(once.kernels, twice.kernels);
  EXPECT_LE(once.kernels.size(), 7u);
}

} // namespace
} // namespace kiln::passes
