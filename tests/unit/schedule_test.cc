// Tests for barrier placement, the schedule checker (with mutations it must catch) and
// memory planning.
#include <gtest/gtest.h>

#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/random_graph.h"
#include "passes/memory_plan.h"
#include "passes/pass_manager.h"
#include "passes/schedule.h"
#include "tests/unit/examples.h"

namespace kiln::passes {
namespace {

struct Planned {
  KernelProgram prog;
  Schedule sched;
  MemoryPlan mem;
};

Planned plan(const std::string &text, const char *pipeline) {
  auto g = ir::parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  PassManager pm;
  EXPECT_FALSE(pm.addPipeline(pipeline).failed());
  EXPECT_FALSE(pm.run(*g).failed());
  const DeviceProfile &p = deviceProfiles()[0];
  auto prog = buildKernelProgram(*g, p);
  EXPECT_TRUE(prog) << prog.message();
  Planned out{*prog, {}, planMemory(*prog)};
  addArenaHazards(out.prog, out.mem);
  out.sched = placeBarriers(out.prog, p);
  return out;
}

const char *kIndependent =
    R"(graph @eight(%x: f32[16, 64]) -> (f32[16], f32[16], f32[16], f32[16], f32[16], f32[16], f32[16], f32[16]) {
  %a = reduce_sum %x {axes = [1]} : f32[16]
  %b = reduce_max %x {axes = [1]} : f32[16]
  %c = reduce_min %x {axes = [1]} : f32[16]
  %d = reduce_mean %x {axes = [1]} : f32[16]
  %e0 = exp %x : f32[16, 64]
  %e = reduce_sum %e0 {axes = [1]} : f32[16]
  %f0 = abs %x : f32[16, 64]
  %f = reduce_max %f0 {axes = [1]} : f32[16]
  %g0 = neg %x : f32[16, 64]
  %g = reduce_min %g0 {axes = [1]} : f32[16]
  %h0 = tanh %x : f32[16, 64]
  %h = reduce_mean %h0 {axes = [1]} : f32[16]
  return %a, %b, %c, %d, %e, %f, %g, %h
})";

const char *kBranches =
    R"(graph @branches(%x: f32[64, 64], %c: f32[8, 64]) -> (f32[64, 64], f32[8, 64]) {
  %a = exp %x : f32[64, 64]
  %b = softmax %a : f32[64, 64]
  %m = matmul %a, %x : f32[64, 64]
  %r = reduce_sum %m {axes = [0], keepdims = true} : f32[1, 64]
  %u = insert_slice %c, %r {offsets = [3, 0]} : f32[8, 64]
  %s = add %b, %m : f32[64, 64]
  %t = tanh %s : f32[64, 64]
  %v = mul %t, %b : f32[64, 64]
  return %v, %u
})";

std::vector<std::string> cases() {
  return {kIndependent, kBranches, testing::readExample("llama_decoder.kir"),
          testing::readExample("softmax_scale_mask.kir"), testing::readExample("rmsnorm_mul.kir")};
}

TEST(Schedule, EveryFormPassesTheChecker) {
  for (const std::string &text : cases())
    for (const char *pipeline : {"canonicalize", "canonicalize,fusion"}) {
      Planned p = plan(text, pipeline);
      EXPECT_FALSE(checkQueue(p.prog, p.sched.queue).failed()) << pipeline;
      EXPECT_FALSE(checkGraph(p.prog, p.sched.graph).failed()) << pipeline;
      Status s = checkStreams(p.prog, p.sched.streams);
      EXPECT_FALSE(s.failed()) << s.message();
      s = checkMemoryPlan(p.prog, p.mem);
      EXPECT_FALSE(s.failed()) << s.message();
    }
}

TEST(Schedule, CheckerCatchesEveryRemovedBarrierEdgeAndEvent) {
  int mutations = 0;
  for (const std::string &text : cases()) {
    Planned p = plan(text, "canonicalize,fusion");
    for (size_t i = 0; i < p.sched.queue.barriers.size(); ++i, ++mutations) {
      QueueForm q = p.sched.queue;
      q.barriers.erase(q.barriers.begin() + static_cast<std::ptrdiff_t>(i));
      EXPECT_TRUE(checkQueue(p.prog, q).failed()) << "barrier " << i << " removed";
    }
    for (size_t i = 0; i < p.sched.graph.edges.size(); ++i, ++mutations) {
      GraphForm f = p.sched.graph;
      f.edges.erase(f.edges.begin() + static_cast<std::ptrdiff_t>(i));
      EXPECT_TRUE(checkGraph(p.prog, f).failed()) << "edge " << i << " removed";
    }
    for (size_t i = 0; i < p.sched.streams.events.size(); ++i, ++mutations) {
      StreamForm s = p.sched.streams;
      s.events.erase(s.events.begin() + static_cast<std::ptrdiff_t>(i));
      EXPECT_TRUE(checkStreams(p.prog, s).failed()) << "event " << i << " removed";
    }
  }
  EXPECT_GT(mutations, 15);
}

TEST(Schedule, CheckerCatchesABarrierThatGuardsTheWrongBytes) {
  int mutations = 0;
  for (const std::string &text : cases()) {
    Planned p = plan(text, "canonicalize,fusion");
    for (size_t i = 0; i < p.sched.queue.barriers.size(); ++i, ++mutations) {
      QueueForm q = p.sched.queue;
      for (Access &a : q.barriers[i].guards) // the same buffers, bytes past the end
        a.range = {a.range.end + (1 << 20), a.range.end + (2 << 20)};
      EXPECT_TRUE(checkQueue(p.prog, q).failed()) << "barrier " << i << " moved";
    }
  }
  EXPECT_GT(mutations, 5);
}

TEST(Schedule, BarrierGuardsAreSortedAndDisjoint) {
  for (const std::string &text : cases())
    for (const Barrier &b : plan(text, "canonicalize,fusion").sched.queue.barriers)
      for (size_t i = 1; i < b.guards.size(); ++i) {
        const Access &x = b.guards[i - 1], &y = b.guards[i];
        EXPECT_TRUE(x.buffer < y.buffer || (x.buffer == y.buffer && x.range.end < y.range.begin));
      }
}

TEST(Schedule, CheckerCatchesAKernelMovedAheadOfItsProducer) {
  Planned p = plan(kBranches, "canonicalize");
  QueueForm q = p.sched.queue;
  std::swap(q.order.front(), q.order.back());
  EXPECT_TRUE(checkQueue(p.prog, q).failed());
}

TEST(Schedule, IndependentReductionsShareOneWave) {
  Planned p = plan(kIndependent, "canonicalize,fusion");
  EXPECT_EQ(p.prog.kernels.size(), 8u);
  EXPECT_EQ(p.sched.waves, 1);
  EXPECT_TRUE(p.sched.queue.barriers.empty());
  EXPECT_TRUE(p.sched.graph.edges.empty());
  EXPECT_EQ(p.sched.streams.streams.size(), 8u);
  EXPECT_TRUE(p.sched.streams.events.empty());
}

TEST(Schedule, StreamsAreCappedAtEightAndStillChecked) {
  // Twenty independent chains, each of two kernels (one input each, so nothing merges).
  std::string inputs, results, body;
  for (int i = 0; i < 20; ++i) {
    std::string x = "%x" + std::to_string(i);
    inputs += (i ? ", " : "") + x + ": f32[16, 64]";
    results += i ? ", f32[16]" : "f32[16]";
    body += "  %e" + std::to_string(i) + " = mul " + x + ", " + x + " : f32[16, 64]\n";
    body += "  %r" + std::to_string(i) + " = reduce_sum %e" + std::to_string(i) +
            " {axes = [1]} : f32[16]\n";
  }
  std::string text = "graph @wide(" + inputs + ") -> (" + results + ") {\n" + body + "  return";
  for (int i = 0; i < 20; ++i)
    text += (i ? ", %r" : " %r") + std::to_string(i);
  text += "\n}";
  Planned p = plan(text, "canonicalize");
  EXPECT_EQ(p.sched.streams.streams.size(), 8u);
  Status s = checkStreams(p.prog, p.sched.streams);
  EXPECT_FALSE(s.failed()) << s.message();
}

TEST(Schedule, AChainIsOneStreamWithNoEvents) {
  Planned p = plan(R"(graph @chain(%x: f32[32, 32]) -> (f32[32, 32]) {
  %a = softmax %x : f32[32, 32]
  %b = matmul %a, %x : f32[32, 32]
  %c = rms_norm %b : f32[32, 32]
  return %c
})",
                   "canonicalize,fusion");
  EXPECT_EQ(p.sched.streams.streams.size(), 1u);
  EXPECT_TRUE(p.sched.streams.events.empty());
  EXPECT_EQ(p.sched.queue.barriers.size(), 2u);
}

// Property: over many generated graphs, fused and not, every schedule form and the
// memory plan pass the checker, and removing any barrier, edge or event is caught.
TEST(Schedule, RandomGraphsPassTheCheckerAndEveryMutationIsCaught) {
  int graphs = 0, mutations = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    ir::RandomGraphOptions o;
    o.seed = seed;
    o.nodes = 10 + static_cast<int>(seed * 7 % 110);
    auto g = ir::randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    std::string text = ir::printGraph(*g);
    for (const char *pipeline : {"canonicalize", "canonicalize,fusion"}) {
      Planned p = plan(text, pipeline);
      ++graphs;
      ASSERT_FALSE(checkQueue(p.prog, p.sched.queue).failed()) << "seed " << seed;
      ASSERT_FALSE(checkGraph(p.prog, p.sched.graph).failed()) << "seed " << seed;
      ASSERT_FALSE(checkStreams(p.prog, p.sched.streams).failed()) << "seed " << seed;
      Status m = checkMemoryPlan(p.prog, p.mem);
      ASSERT_FALSE(m.failed()) << "seed " << seed << ": " << m.message();
      EXPECT_GE(p.mem.arenaBytes, p.mem.lowerBoundBytes);
      // One mutation of each kind per graph, at a seeded position.
      if (!p.sched.queue.barriers.empty()) {
        QueueForm q = p.sched.queue;
        q.barriers.erase(q.barriers.begin() +
                         static_cast<std::ptrdiff_t>(seed % q.barriers.size()));
        EXPECT_TRUE(checkQueue(p.prog, q).failed()) << "seed " << seed;
        ++mutations;
      }
      if (!p.sched.graph.edges.empty()) {
        GraphForm f = p.sched.graph;
        f.edges.erase(f.edges.begin() + static_cast<std::ptrdiff_t>(seed % f.edges.size()));
        EXPECT_TRUE(checkGraph(p.prog, f).failed()) << "seed " << seed;
        ++mutations;
      }
      if (!p.sched.streams.events.empty()) {
        StreamForm st = p.sched.streams;
        st.events.erase(st.events.begin() + static_cast<std::ptrdiff_t>(seed % st.events.size()));
        EXPECT_TRUE(checkStreams(p.prog, st).failed()) << "seed " << seed;
        ++mutations;
      }
    }
  }
  EXPECT_EQ(graphs, 120);
  EXPECT_GT(mutations, 150);
}

TEST(MemoryPlan, ConcurrentBuffersNeverShareBytesAndTheCheckerSeesIt) {
  Planned p = plan(kBranches, "canonicalize");
  ASSERT_GE(p.mem.buffers.size(), 2u);
  EXPECT_GE(p.mem.arenaBytes, p.mem.lowerBoundBytes);
  // Put every buffer at offset 0: some pair may run at the same time, which the
  // checker must report.
  MemoryPlan broken = p.mem;
  for (ArenaBuffer &b : broken.buffers)
    b.offset = 0;
  Status s = checkMemoryPlan(p.prog, broken);
  ASSERT_TRUE(s.failed());
  EXPECT_NE(s.message().find("share arena bytes"), std::string::npos) << s.message();
}

TEST(MemoryPlan, DecoderArenaIsWithinTenPercentOfTheLowerBound) {
  Planned p = plan(testing::readExample("llama_decoder.kir"), "canonicalize,fusion");
  ASSERT_GT(p.mem.lowerBoundBytes, 0);
  EXPECT_LE(static_cast<double>(p.mem.arenaBytes),
            1.1 * static_cast<double>(p.mem.lowerBoundBytes));
}

// Sizes a runtime gives (here twice the graph's: f16 values held as f32) replace the
// graph's, and the plan stays sound with them.
TEST(MemoryPlan, BytesFromTheRuntimeReplaceTheGraphs) {
  auto g = ir::parseGraph(testing::readExample("llama_decoder.kir"));
  ASSERT_TRUE(g) << g.message();
  PassManager pm;
  ASSERT_FALSE(pm.addPipeline("canonicalize,fusion").failed());
  ASSERT_FALSE(pm.run(*g).failed());
  auto prog = buildKernelProgram(*g, deviceProfiles()[0]);
  ASSERT_TRUE(prog) << prog.message();
  MemoryPlan own = planMemory(*prog);
  std::vector<int64_t> bytes(g->nodes.size());
  for (size_t id = 0; id < bytes.size(); ++id)
    bytes[id] = 2 * prog->layouts[id].range.end;
  MemoryPlan doubled = planMemory(*prog, bytes);
  ASSERT_EQ(doubled.buffers.size(), own.buffers.size());
  for (size_t i = 0; i < own.buffers.size(); ++i)
    EXPECT_EQ(doubled.buffers[i].bytes, 2 * own.buffers[i].bytes) << i;
  EXPECT_EQ(doubled.lowerBoundBytes, 2 * own.lowerBoundBytes);
  EXPECT_GE(doubled.arenaBytes, doubled.lowerBoundBytes);
  EXPECT_FALSE(checkMemoryPlan(*prog, doubled).failed());
}

} // namespace
} // namespace kiln::passes
