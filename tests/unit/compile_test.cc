// End-to-end tests of the walking skeleton: .kir -> passes -> one fused kernel -> SPIR-V
// (spirv-val, then run on Vulkan) and PTX (ptxas), checked against the reference.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "compiler/compile.h"
#include "compiler/lower.h"
#include "compiler/nvptx/emit_nvptx.h"
#include "compiler/spirv/emit_spirv.h"
#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/random_graph.h"
#include "passes/module.h"
#include "passes/pass_manager.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/device.h"
#include "runtime/vulkan/vulkan_device.h"
#include "tests/unit/examples.h"

namespace kiln::compiler {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using kiln::testing::readExample;

ir::Graph prepare(const std::string &text) {
  auto g = ir::parseGraph(text);
  EXPECT_TRUE(g) << g.message();
  if (!g)
    return {};
  passes::PassManager pm;
  EXPECT_FALSE(pm.addPipeline(passes::defaultPipeline()).failed());
  EXPECT_FALSE(pm.run(*g).failed());
  return *g;
}

// A tool from PATH or a known folder; empty when absent.
std::string findTool(const std::string &name, const std::string &fallbackDir) {
  for (const std::string &dir : {std::string("/usr/bin"), fallbackDir})
    if (std::filesystem::exists(dir + "/" + name))
      return dir + "/" + name;
  return "";
}

// The architecture to assemble PTX emitted for `sm` for: sm_90a where the PTX asks for it
// (warpgroup products), else `sm`.
std::string ptxasArch(const std::string &ptx, const std::string &sm) {
  return ptx.find(".target sm_90a") != std::string::npos ? "sm_90a" : sm;
}

std::string tempFile(const std::string &name, const std::string &data) {
  std::string path =
      (std::filesystem::temp_directory_path() / ("kiln_" + std::to_string(::getpid()) + "_" + name))
          .string();
  std::ofstream(path, std::ios::binary)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
  return path;
}

// ptxas's exit status for `ptx`, emitted for `sm` (kernel `name`).
int assemble(const std::string &ptxas, const std::string &sm, const std::string &name,
             const std::string &ptx) {
  std::string path = tempFile(name + "." + sm + ".ptx", ptx);
  std::string cmd = ptxas + " -arch=" + ptxasArch(ptx, sm) + " " + path + " -o " + path + ".cubin";
  int status = std::system(cmd.c_str());
  std::filesystem::remove(path);
  std::filesystem::remove(path + ".cubin");
  return status;
}

// Options for PTX alone, for `sm`.
CompileOptions ptxFor(const std::string &sm) {
  CompileOptions opts;
  opts.spirv = false;
  opts.ptx = true;
  opts.smArch = sm;
  return opts;
}

TEST(Compile, PointwiseChainBecomesOneKernel) {
  ir::Graph g = prepare(readExample("pointwise_chain.kir"));
  auto lowered = lowerGraph(g);
  ASSERT_TRUE(lowered) << lowered.message();
  EXPECT_EQ(lowered->kernels.size(), 1u);
  EXPECT_EQ(lowered->kernels[0].buffers.size(), 4u); // x, y, b, and the output
}

TEST(Compile, SpirvPassesSpirvVal) {
  ir::Graph g = prepare(readExample("pointwise_chain.kir"));
  auto exe = compileGraph(g, {});
  ASSERT_TRUE(exe) << exe.message();
  const std::vector<uint32_t> &words = exe->kernels[0].spirv;
  Status s = validateSpirv(words);
  EXPECT_FALSE(s.failed()) << s.message();
  std::string val = findTool("spirv-val", "/usr/local/bin");
  if (val.empty())
    GTEST_SKIP() << "SKIPPED: spirv-val not found";
  std::string path = tempFile(
      "chain.spv", std::string(reinterpret_cast<const char *>(words.data()), words.size() * 4));
  EXPECT_EQ(std::system((val + " --target-env vulkan1.1 " + path).c_str()), 0);
  std::filesystem::remove(path);
}

TEST(Compile, PtxPassesPtxasForSm80AndSm90) {
  ir::Graph g = prepare(readExample("pointwise_chain.kir"));
  std::string ptxas = findTool("ptxas", "/usr/local/cuda/bin");
  for (const char *sm : {"sm_80", "sm_90"}) {
    auto exe = compileGraph(g, ptxFor(sm));
    ASSERT_TRUE(exe) << exe.message();
    const std::string &ptx = exe->kernels[0].ptx;
    EXPECT_THAT(ptx, HasSubstr(".entry kiln_pointwise_chain_0"));
    if (!ptxas.empty()) {
      EXPECT_EQ(assemble(ptxas, sm, "pointwise_chain", ptx), 0) << sm;
    }
  }
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found (PTX was emitted but not assembled)";
}

TEST(Compile, QuickPtxKeepsTheDecodersWideLoadsAndPassesPtxas) {
  // The quick emission changes the PTX of the kernels without matrix ops, and keeps
  // each one's 16-byte global loads and stores (the emitter's and the load-store
  // vectorizer's), which set a memory-bound kernel's pace: in both decoders, over
  // [K, N] and [N, K] weights (the latter's wo GEMV reads its A through a permute and
  // a reshape).
  std::string ptxas = findTool("ptxas", "/usr/local/cuda/bin");
  auto count = [](const std::string &ptx, const std::string &what) {
    size_t n = 0;
    for (size_t at = ptx.find(what); at != std::string::npos; at = ptx.find(what, at + 1))
      ++n;
    return n;
  };
  for (const char *file : {"llama_decoder.kir", "../bench/graphs/llama_decoder_nk.kir"}) {
    ir::Graph g = prepare(readExample(file));
    for (const char *sm : {"sm_80", "sm_90"}) {
      CompileOptions opts = ptxFor(sm);
      auto full = compileGraph(g, opts);
      opts.quickPtx = true;
      auto quick = compileGraph(g, opts);
      ASSERT_TRUE(full && quick);
      ASSERT_EQ(full->kernels.size(), quick->kernels.size());
      for (size_t i = 0; i < full->kernels.size(); ++i) {
        const std::string &a = full->kernels[i].ptx, &b = quick->kernels[i].ptx;
        std::string where = std::string(file) + " " + sm + " kernel " + std::to_string(i);
        EXPECT_NE(a, b) << where;
        for (const char *wide : {"ld.global.nc.v4", "st.global.v4"})
          EXPECT_EQ(count(b, wide), count(a, wide)) << where << ": " << wide;
        if (!ptxas.empty()) {
          EXPECT_EQ(assemble(ptxas, sm, quick->kernels[i].name, b), 0) << where;
        }
      }
    }
  }
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found (PTX was emitted but not assembled)";
}

TEST(Compile, OutputIsByteIdenticalRunAfterRun) {
  // Nine kernels, emitted in parallel: each keeps its place and its bytes.
  ir::Graph g = prepare(readExample("llama_decoder.kir"));
  CompileOptions opts;
  opts.ptx = true;
  auto a = compileGraph(g, opts), b = compileGraph(g, opts);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->kernels.size(), b->kernels.size());
  for (size_t i = 0; i < a->kernels.size(); ++i) {
    EXPECT_EQ(a->kernels[i].spirv, b->kernels[i].spirv) << i;
    EXPECT_EQ(a->kernels[i].ptx, b->kernels[i].ptx) << i;
    EXPECT_THAT(a->kernels[i].ptx, HasSubstr(".entry " + a->kernels[i].name + "("));
  }
}

TEST(Compile, KernelsOfTheSameCodeCompileToPtxOnce) {
  // Three sums of rows of one shape and dtype (whatever the names), a sum over an f16
  // input and output and a max: kernels 0, 1 and 3 are one code, and each kernel's PTX is what
  // compiling it alone gives.
  ir::Graph g = prepare(R"(
graph @same(%a: f32[32, 512], %b: f32[32, 512], %c: f16[32, 512], %d: f32[32, 512], %e: f32[32, 512]) -> (f32[32], f32[32], f16[32], f32[32], f32[32]) {
  %ra = reduce_sum %a {axes = [1]} : f32[32]
  %rb = reduce_sum %b {axes = [1]} : f32[32]
  %rc = reduce_sum %c {axes = [1]} : f16[32]
  %rd = reduce_sum %d {axes = [1]} : f32[32]
  %re = reduce_max %e {axes = [1]} : f32[32]
  return %ra, %rb, %rc, %rd, %re
})");
  auto lowered = lowerGraph(g, {});
  ASSERT_TRUE(lowered) << lowered.message();
  ASSERT_EQ(lowered->kernels.size(), 5u);
  EXPECT_EQ(firstOfSameCode(lowered->kernels), (std::vector<size_t>{0, 0, 2, 0, 4}));
  CompileOptions opts;
  opts.spirv = false;
  opts.ptx = true;
  auto exe = compileGraph(g, opts);
  ASSERT_TRUE(exe) << exe.message();
  for (size_t i = 0; i < lowered->kernels.size(); ++i) {
    auto alone = emitPtx(lowered->kernels[i], opts.smArch);
    ASSERT_TRUE(alone) << alone.message();
    EXPECT_EQ(exe->kernels[i].ptx, *alone) << lowered->kernels[i].name;
  }
  // The decoder's kernels are all of different codes (its two norms read an f16 input
  // and an f32 temporary).
  auto decoder = lowerGraph(prepare(readExample("llama_decoder.kir")), {});
  ASSERT_TRUE(decoder) << decoder.message();
  std::vector<size_t> own(decoder->kernels.size());
  std::iota(own.begin(), own.end(), size_t{0});
  EXPECT_EQ(firstOfSameCode(decoder->kernels), own);
}

TEST(Compile, RenamedPtxNamesOnlyTheKernel) {
  std::string ptx = ".entry k_1(\n.param .u64 k_1_param_0\n)\n// k_10 k_1x xk_1 k_1\n";
  EXPECT_EQ(renamePtx(ptx, "k_1", "k_22"),
            ".entry k_22(\n.param .u64 k_22_param_0\n)\n// k_10 k_1x xk_1 k_22\n");
}

TEST(Compile, OpsNoTemplateLowersAreRefusedByName) {
  ir::Graph g = prepare(
      R"(graph @refused(%x: f32[4, 8], %i: i32[4], %c: f32[6, 8]) -> (f32[], i32[4], f32[4, 8]) {
  %s = reduce_sum %x {axes = [0, 1]} : f32[]
  %d = div %i, %i : i32[4]
  %kc = insert_slice %c, %x {offsets = [1, 0]} : f32[6, 8]
  %r = relu %kc : f32[6, 8]
  %rs = slice %r {axis = 0, start = 0, end = 4} : f32[4, 8]
  %k2 = insert_slice %rs, %x {offsets = [0, 0]} : f32[4, 8]
  return %s, %d, %k2
})");
  auto exe = compileGraph(g, {});
  ASSERT_FALSE(exe);
  EXPECT_THAT(exe.message(), HasSubstr("error: graph @refused: no kernel template lowers"));
  for (const char *why : {"reduce_sum over several axes", "integer div",
                          "insert_slice into a value that is not a graph input"})
    EXPECT_THAT(exe.message(), HasSubstr(why));
}

// A concat of constants folds into a dense constant, which no template reads yet: refused,
// not a crash.
TEST(Compile, ADenseConstantIsRefused) {
  ir::Graph g = prepare(
      R"(graph @dense(%x: f32[1, 8]) -> (f32[1, 8]) {
  %a = constant {value = 1.0} : f32[1, 4]
  %b = constant {value = 2.0} : f32[1, 4]
  %c = concat %a, %b {axis = 1} : f32[1, 8]
  %y = add %x, %c : f32[1, 8]
  return %y
})");
  auto exe = compileGraph(g, {});
  ASSERT_FALSE(exe);
  EXPECT_THAT(exe.message(), HasSubstr("no kernel template lowers dense constants"));
}

TEST(Compile, TheDecoderLowersToItsSevenKernelsAndAssembles) {
  ir::Graph g = prepare(readExample("llama_decoder.kir"));
  auto lowered = lowerGraph(g);
  ASSERT_TRUE(lowered) << lowered.message();
  EXPECT_EQ(lowered->kernels.size(), 7u); // the attention is one kernel
  // The caches are written in place: the outputs are the input buffers.
  const runtime::Executable &exe = lowered->exe;
  EXPECT_EQ(exe.outputs[1], exe.inputs[2]);
  EXPECT_EQ(exe.outputs[2], exe.inputs[3]);
  std::string ptxas = findTool("ptxas", "/usr/local/cuda/bin");
  std::string val = findTool("spirv-val", "/usr/local/bin");
  for (const char *sm : {"sm_80", "sm_90"}) {
    CompileOptions opts;
    opts.spirv = std::string(sm) == "sm_90"; // SPIR-V does not depend on the PTX target
    opts.ptx = true;
    opts.smArch = sm;
    auto compiled = compileGraph(g, opts);
    ASSERT_TRUE(compiled) << compiled.message();
    for (const runtime::ExecKernel &k : compiled->kernels) {
      if (opts.spirv) {
        Status s = validateSpirv(k.spirv);
        EXPECT_FALSE(s.failed()) << k.name << ": " << s.message();
      }
      if (opts.spirv && !val.empty()) {
        std::string path =
            tempFile(k.name + ".spv", std::string(reinterpret_cast<const char *>(k.spirv.data()),
                                                  k.spirv.size() * 4));
        EXPECT_EQ(std::system((val + " --target-env vulkan1.1 " + path).c_str()), 0) << k.name;
        std::filesystem::remove(path);
      }
      if (!ptxas.empty()) {
        EXPECT_EQ(assemble(ptxas, sm, k.name, k.ptx), 0) << k.name << " " << sm;
      }
    }
  }
  if (ptxas.empty() || val.empty())
    GTEST_SKIP() << "SKIPPED: " << (ptxas.empty() ? "ptxas" : "spirv-val")
                 << " not found (the in-process SPIR-V validation ran)";
}

// Every pair of kernels that touch a buffer one of them writes has a barrier between
// them, and where the first writes it, one between them that lists it: the executable's
// barriers checked by buffer, apart from the passes' byte ranges they come from.
void expectOrdered(const runtime::Executable &exe) {
  ASSERT_TRUE(exe.barriers.has_value());
  const std::vector<runtime::QueueBarrier> &barriers = *exe.barriers;
  auto touches = [&](size_t k, int buffer, bool writes) {
    const runtime::ExecKernel &kernel = exe.kernels[k];
    for (size_t p = 0; p < kernel.buffers.size(); ++p)
      if (kernel.buffers[p] == buffer && (!writes || kernel.writes.empty() || kernel.writes[p]))
        return true;
    return false;
  };
  for (size_t i = 0; i < exe.kernels.size(); ++i)
    for (size_t j = i + 1; j < exe.kernels.size(); ++j)
      for (int b : exe.kernels[i].buffers) {
        bool firstWrites = touches(i, b, true);
        if (!(firstWrites && touches(j, b, false)) && !touches(j, b, true))
          continue;
        bool between = false, lists = false;
        for (const runtime::QueueBarrier &bar : barriers)
          if (bar.before > static_cast<int>(i) && bar.before <= static_cast<int>(j)) {
            between = true;
            lists = lists || std::count(bar.buffers.begin(), bar.buffers.end(), b) > 0;
          }
        EXPECT_TRUE(between && (lists || !firstWrites))
            << exe.kernels[i].name << " and " << exe.kernels[j].name << " on "
            << exe.buffers[b].name;
      }
}

// The executable's kernels and barriers are the passes' queue form (decision 3): the
// decoder's seven kernels in its order with a barrier per wave, eight independent
// reductions with none, and a returned input's copy after what the others wrote.
TEST(Compile, QueueBarriersComeFromThePassesSchedule) {
  ir::Graph g = prepare(readExample("llama_decoder.kir"));
  CompileOptions none;
  none.spirv = false;
  auto exe = compileGraph(g, none);
  ASSERT_TRUE(exe) << exe.message();
  passes::Module m{g};
  ASSERT_FALSE(m.ensureSchedule().failed());
  ASSERT_EQ(exe->barriers->size(), m.schedule->queue.barriers.size());
  for (size_t i = 0; i < exe->barriers->size(); ++i)
    EXPECT_EQ((*exe->barriers)[i].before, m.schedule->queue.barriers[i].position);
  for (size_t i = 0; i < exe->kernels.size(); ++i)
    EXPECT_EQ(exe->kernels[i].name,
              "kiln_llama_decoder_" + std::to_string(m.schedule->queue.order[i]));
  expectOrdered(*exe);
  // The temporaries share the arena as the passes planned it (in the executable's bytes:
  // f16 values travel as f32), and no two whose kernels share a wave overlap.
  int64_t own = 0;
  std::vector<const runtime::ExecBuffer *> arena;
  for (const runtime::ExecBuffer &b : exe->buffers)
    if (b.arenaOffset >= 0) {
      own += runtime::bufferBytes(b, std::vector<int64_t>{4096});
      arena.push_back(&b);
    }
  EXPECT_EQ(arena.size(), 6u); // h, q, o, x1, g, m
  EXPECT_LT(exe->arenaBytes, own);
  auto waveOf = [&](const std::string &name) { // the first and last kernels that touch it
    std::pair<int, int> span{-1, -1};
    for (size_t k = 0; k < exe->kernels.size(); ++k)
      for (int b : exe->kernels[k].buffers)
        if (exe->buffers[b].name == name) {
          span.first = span.first < 0 ? static_cast<int>(k) : span.first;
          span.second = static_cast<int>(k);
        }
    return span;
  };
  for (const runtime::ExecBuffer *a : arena)
    for (const runtime::ExecBuffer *b : arena) {
      if (a == b)
        continue;
      int64_t aEnd = a->arenaOffset + runtime::bufferBytes(*a, std::vector<int64_t>{4096});
      int64_t bEnd = b->arenaOffset + runtime::bufferBytes(*b, std::vector<int64_t>{4096});
      if (a->arenaOffset < bEnd && b->arenaOffset < aEnd) { // sharing bytes: a chain of waves
        EXPECT_TRUE(waveOf(a->name).second < waveOf(b->name).first ||
                    waveOf(b->name).second < waveOf(a->name).first)
            << a->name << " and " << b->name;
      }
    }

  // The third matmul needs nothing from the first two: it runs beside the first, and
  // one barrier orders the second after the first.
  auto reordered = compileGraph(
      prepare(
          R"(graph @reorder(%x: f32[4, 64], %z: f32[4, 64], %w1: f32[64, 64], %w2: f32[64, 64], %w3: f32[64, 64]) -> (f32[4, 64], f32[4, 64]) {
  %a = matmul %x, %w1 : f32[4, 64]
  %b = matmul %a, %w2 : f32[4, 64]
  %c = matmul %z, %w3 : f32[4, 64]
  return %b, %c
})"),
      none);
  ASSERT_TRUE(reordered) << reordered.message();
  std::vector<std::string> names;
  for (const runtime::ExecKernel &k : reordered->kernels)
    names.push_back(k.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"kiln_reorder_0", "kiln_reorder_2", "kiln_reorder_1"}));
  ASSERT_EQ(reordered->barriers->size(), 1u);
  EXPECT_EQ((*reordered->barriers)[0].before, 2);
  EXPECT_EQ(reordered->buffers[(*reordered->barriers)[0].buffers.at(0)].name, "a");
  expectOrdered(*reordered);

  auto independent =
      compileGraph(prepare(readExample("../bench/graphs/independent_reductions.kir")), none);
  ASSERT_TRUE(independent) << independent.message();
  EXPECT_EQ(independent->kernels.size(), 8u);
  EXPECT_TRUE(independent->barriers->empty());

  auto copied =
      compileGraph(prepare(R"(graph @copy(%x: f32[64], %y: f32[64]) -> (f32[64], f32[64]) {
  %a = exp %x : f32[64]
  %b = add %a, %y : f32[64]
  return %b, %x
})"),
                   none);
  ASSERT_TRUE(copied) << copied.message();
  ASSERT_EQ(copied->kernels.size(), 2u);
  ASSERT_EQ(copied->barriers->size(), 1u);
  EXPECT_EQ((*copied->barriers)[0].before, 1);
  expectOrdered(*copied);
}

// f16 matmuls of more rows than a GEMV's take tensor cores where the options ask for
// matrix units (PTX), with the product's B layout following the weights' contiguous axis;
// f32 and bf16 matmuls, GEMVs and a half-mode rope's matmul keep the SIMT tiles, and
// SPIR-V refuses a kernel lowered for matrix units.
TEST(Compile, F16MatmulsOfManyRowsTakeTensorCoresWhereAsked) {
  ir::Graph g = prepare(
      R"(graph @tc(%a: f16[130, 72], %b: f16[72, 200], %a2: f16[130, 72], %bt: f16[200, 72], %x: f32[40, 16], %w: f32[16, 8], %h: bf16[40, 16], %hw: bf16[16, 8], %v: f16[2, 72], %a3: f16[130, 72], %wq: f16[72, 64], %p: i32[130, 1], %xg: f16[130, 72], %x3: f16[130, 72], %b2: f16[72, 200], %b3: f16[72, 200]) -> (f16[130, 200], f16[130, 200], f32[40, 8], bf16[40, 8], f16[2, 200], f16[130, 1, 64], f16[130, 200], f16[130, 200]) {
  %y = matmul %a, %b : f16[130, 200]
  %yt = matmul %a2, %bt {transpose_b = true} : f16[130, 200]
  %f = matmul %x, %w : f32[40, 8]
  %hh = matmul %h, %hw : bf16[40, 8]
  %g = matmul %v, %b : f16[2, 200]
  %q = matmul %a3, %wq : f16[130, 64]
  %q3 = reshape %q : f16[130, 1, 64]
  %r = rope %q3, %p {mode = half} : f16[130, 1, 64]
  %gate = matmul %xg, %b : f16[130, 200]
  %up = matmul %xg, %b2 : f16[130, 200]
  %act = silu %gate : f16[130, 200]
  %m = mul %act, %up : f16[130, 200]
  %m0 = matmul %x3, %b : f16[130, 200]
  %m1 = matmul %x3, %b2 : f16[130, 200]
  %m2 = matmul %x3, %b3 : f16[130, 200]
  %m01 = mul %m0, %m1 : f16[130, 200]
  %m3 = add %m01, %m2 : f16[130, 200]
  return %y, %yt, %f, %hh, %g, %r, %m, %m3
})");
  auto matrixKernels = [&](bool units) {
    auto lowered = lowerGraph(g, {units});
    EXPECT_TRUE(lowered) << lowered.message();
    std::vector<std::string> names;
    for (const Kernel &k : lowered ? lowered->kernels : std::vector<Kernel>{})
      if (printKernel(k).find("mat_mul_add") != std::string::npos)
        names.push_back(k.name);
    return names;
  };
  EXPECT_TRUE(matrixKernels(false).empty());
  // Two f16 matmuls, and gate and up, which one workgroup computes together; three
  // siblings that a stored value mixes would take too many registers.
  std::vector<std::string> names = matrixKernels(true);
  EXPECT_EQ(names.size(), 3u) << ::testing::PrintToString(names);
  // Siblings whose Bs lie along different axes: the tile reads both by the first one's
  // rows, so the other B cannot come by 16-byte copies of its rows (on the GPU that was
  // a misaligned address) and goes through registers.
  auto siblings = lowerGraph(
      prepare(
          R"(graph @sib(%a: f16[130, 72], %b: f16[72, 200], %bt: f16[200, 72]) -> (f16[130, 200], f16[130, 200]) {
  %y = matmul %a, %b : f16[130, 200]
  %yt = matmul %a, %bt {transpose_b = true} : f16[130, 200]
  return %y, %yt
})"),
      {true});
  ASSERT_TRUE(siblings) << siblings.message();
  ASSERT_EQ(siblings->kernels.size(), 1u);
  std::string text = printKernel(siblings->kernels[0]);
  ASSERT_NE(text.find("buf4 \"bt\""), std::string::npos) << text;
  std::istringstream lines(text);
  int copies = 0;
  for (std::string line; std::getline(lines, line);)
    if (line.find("copy_async") != std::string::npos) {
      ++copies;
      EXPECT_EQ(line.find("buf4["), std::string::npos) << line;
    }
  EXPECT_GT(copies, 0) << text;
  EXPECT_NE(text.find("load f32 buf4["), std::string::npos) << text;
  std::string ptxas = findTool("ptxas", "/usr/local/cuda/bin");
  for (const char *sm : {"sm_80", "sm_90"}) {
    CompileOptions opts;
    opts.spirv = false;
    opts.ptx = true;
    opts.matrixUnits = true;
    opts.warpgroupMatrix = true; // taken on sm_90 alone
    opts.smArch = sm;
    auto exe = compileGraph(g, opts);
    ASSERT_TRUE(exe) << exe.message();
    int rowRow = 0, rowCol = 0, wgN = 0, wgK = 0;
    for (const runtime::ExecKernel &k : exe->kernels) {
      rowRow += k.ptx.find("wmma.mma.sync.aligned.row.row.m16n16k16") != std::string::npos;
      rowCol += k.ptx.find("wmma.mma.sync.aligned.row.col.m16n16k16") != std::string::npos;
      bool wg =
          k.ptx.find("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16") != std::string::npos;
      wgN += wg && k.ptx.find(", p, 1, 1, 0, 1;") != std::string::npos;
      wgK += wg && k.ptx.find(", p, 1, 1, 0, 0;") != std::string::npos;
      if (!ptxas.empty()) {
        EXPECT_EQ(assemble(ptxas, sm, k.name, k.ptx), 0) << k.name << " " << sm;
      }
    }
    // On sm_90 the kernels whose operands all come by copies (all three here) take
    // warpgroup products, B's layout passed as wgmma's transposition of B.
    bool warpgroups = std::string(sm) == "sm_90";
    EXPECT_EQ(rowRow, warpgroups ? 0 : 2) << "B [K, N] is read by rows of k (y, gate and up)";
    EXPECT_EQ(rowCol, warpgroups ? 0 : 1) << "B [N, K] is read by rows of n";
    EXPECT_EQ(wgN, warpgroups ? 2 : 0) << "B [K, N] is MN-major (y, gate and up)";
    EXPECT_EQ(wgK, warpgroups ? 1 : 0) << "B [N, K] is K-major";
  }
  CompileOptions both;
  both.ptx = true;
  both.matrixUnits = true;
  auto refused = compileGraph(g, both);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.message(),
              HasSubstr("which SPIR-V does not emit yet (lower without matrix units)"));
  if (ptxas.empty())
    GTEST_SKIP() << "SKIPPED: ptxas not found (PTX was emitted but not assembled)";
}

TEST(Compile, GemvTilesFollowTheWeightsContiguousAxis) {
  // Weights [K, N]: invocations take 8 consecutive f16 columns. Weights [N, K]
  // (transpose_b): they take 8 consecutive k of one column. Many rows: register tiles.
  auto grid = [](const std::string &text) {
    auto lowered = lowerGraph(prepare(text));
    EXPECT_TRUE(lowered) << lowered.message();
    return lowered ? printKernel(lowered->kernels[0]) : std::string();
  };
  std::string kn = grid(R"(graph @kn(%x: f16[1, 512], %w: f16[512, 1024]) -> (f16[1, 1024]) {
  %y = matmul %x, %w : f16[1, 1024]
  return %y
})");
  std::string nk = grid(R"(graph @nk(%x: f16[1, 512], %w: f16[1024, 512]) -> (f16[1, 1024]) {
  %y = matmul %x, %w {transpose_b = true} : f16[1, 1024]
  return %y
})");
  EXPECT_THAT(kn, HasSubstr("barrier"));
  EXPECT_THAT(nk, HasSubstr("barrier"));
  EXPECT_NE(kn, nk);
}

// A GEMV over weights [K, N] whose tiles are too few splits K across workgroups: the
// kernel writes the splits' sums to a temporary and counts them in a Zeroed buffer (one
// count a tile). Weights [N, K], or enough tiles (N = 2^18: 1024 tiles of 256 columns),
// or a K of one step keep a workgroup per tile.
TEST(Compile, GemvsOfFewTilesSplitKAcrossWorkgroups) {
  using runtime::BufferRole;
  // y = x w for weights `w` ("K, N", or "N, K" with transpose_b) and N columns.
  auto lower = [](const std::string &k, const std::string &w, const std::string &n,
                  bool transposed) {
    std::string text = "graph @g(%x: f16[1, " + k + "], %w: f16[" + w + "]) -> (f16[1, " + n +
                       "]) {\n  %y = matmul %x, %w" + (transposed ? " {transpose_b = true}" : "") +
                       " : f16[1, " + n + "]\n  return %y\n}";
    auto l = lowerGraph(prepare(text));
    EXPECT_TRUE(l) << l.message() << "\n" << text;
    return l;
  };
  auto roles = [](const LoweredGraph &l) {
    std::vector<BufferRole> r;
    for (int b : l.exe.kernels[0].buffers)
      r.push_back(l.exe.buffers[b].role);
    return r;
  };
  auto split = lower("4096", "4096, 11008", "11008", false);
  ASSERT_TRUE(split);
  ASSERT_EQ(split->kernels.size(), 1u);
  EXPECT_THAT(roles(*split),
              ::testing::ElementsAre(BufferRole::Output, BufferRole::Temp, BufferRole::Zeroed,
                                     BufferRole::Input, BufferRole::Input));
  // 43 tiles of 256 columns, in 16 splits of 256 k.
  const std::vector<int> &buffers = split->exe.kernels[0].buffers;
  EXPECT_EQ(split->exe.buffers[buffers[1]].type.shape[0].offset, 43 * 16 * 256);
  EXPECT_EQ(split->exe.buffers[buffers[2]].type.shape[0].offset, 43);
  std::string text = printKernel(split->kernels[0]);
  EXPECT_THAT(text, HasSubstr("atomic_add"));
  EXPECT_THAT(text, HasSubstr("fence"));
  auto nk = lower("4096", "11008, 4096", "11008", true);
  auto wide = lower("4096", "4096, 262144", "262144", false);
  auto shortK = lower("128", "128, 512", "512", false);
  for (auto *l : {&nk, &wide, &shortK}) {
    ASSERT_TRUE(*l);
    EXPECT_THAT(roles(**l), Not(::testing::Contains(BufferRole::Zeroed)));
    EXPECT_THAT(printKernel((*l)->kernels[0]), Not(HasSubstr("atomic_add")));
  }
}

TEST(Compile, RowKernelsKeepShortRowsInRegistersAndLoopOverLongOnes) {
  // rms_norm over 4096: 256 invocations per row, 16 elements each in registers.
  ir::Graph g = prepare(readExample("rmsnorm_mul.kir"));
  auto lowered = lowerGraph(g);
  ASSERT_TRUE(lowered) << lowered.message();
  ASSERT_EQ(lowered->kernels.size(), 1u);
  const runtime::ExecKernel &k = lowered->exe.kernels[0];
  ASSERT_EQ(k.grid.size(), 2u); // rows (t), then the invocations of a row
  EXPECT_EQ(k.grid[1], ir::Dim{256});
  // Loads inside loops: registers hold the row when there are none.
  auto loadsInLoops = [](const Kernel &kernel) {
    int depth = 0, n = 0;
    for (const KInst &in : kernel.body) {
      depth += in.op == KOp::LoopBegin ? 1 : in.op == KOp::LoopEnd ? -1 : 0;
      n += depth > 0 && in.op == KOp::Load;
    }
    return n;
  };
  std::string text = printKernel(lowered->kernels[0]);
  EXPECT_THAT(text, HasSubstr("shuffle_xor"));
  EXPECT_THAT(text, HasSubstr("barrier")); // rows wider than a subgroup
  EXPECT_EQ(loadsInLoops(lowered->kernels[0]), 0) << text;
  // softmax over 512: 32 invocations per row (16 elements each), 8 rows per workgroup.
  lowered = lowerGraph(prepare(readExample("softmax_scale_mask.kir")));
  ASSERT_TRUE(lowered) << lowered.message();
  EXPECT_EQ(lowered->exe.kernels[0].grid.back(), ir::Dim{32});
  EXPECT_EQ(loadsInLoops(lowered->kernels[0]), 0);
  // A row of symbolic length is walked in loops.
  lowered = lowerGraph(prepare(R"(graph @g(%x: f32[4, n]) -> (f32[4]) {
  dim n in [1, 100000]
  %s = reduce_sum %x {axes = [1]} : f32[4]
  return %s
})"));
  ASSERT_TRUE(lowered) << lowered.message();
  EXPECT_EQ(lowered->exe.kernels[0].grid.back(), ir::Dim{256});
  EXPECT_GT(loadsInLoops(lowered->kernels[0]), 0) << printKernel(lowered->kernels[0]);
}

// Operands shared along a chain (b_i = b_{i-1} + b_{i-1}, 64 deep) are walked once:
// lowering used to revisit them per path, 2^depth times, and a 24-deep chain took a
// minute. The chain ends in a row kernel's epilogue, beside the reduction, and in a
// pointwise kernel of its own.
TEST(Compile, ChainsOfSharedOperandsLowerInLinearWork) {
  std::string text = "graph @g(%x: f32[4, 64], %y: f32[4]) -> (f32[4], f32[4]) {\n"
                     "  %r = reduce_sum %x {axes = [1]} : f32[4]\n"
                     "  %b0 = exp %y : f32[4]\n";
  for (int i = 1; i <= 64; ++i)
    text += "  %b" + std::to_string(i) + " = max %b" + std::to_string(i - 1) + ", %b" +
            std::to_string(i - 1) + " : f32[4]\n";
  text += "  %out = add %b64, %r : f32[4]\n  %c = neg %b64 : f32[4]\n  return %out, %c\n}\n";
  auto lowered = lowerGraph(prepare(text));
  ASSERT_TRUE(lowered) << lowered.message();
  std::string all;
  for (const Kernel &k : lowered->kernels)
    all += printKernel(k);
  EXPECT_NE(all.find("shuffle_xor"), std::string::npos) << all; // the row kernel is there
  EXPECT_NE(all.find("fneg"), std::string::npos) << all;
}

// Opens the backend's device and the options that compile for it; skips the test (or
// fails it, where CI requires Vulkan) when there is none.
struct Target {
  std::unique_ptr<runtime::Device> device;
  CompileOptions opts;
};

std::optional<Target> openTarget(const std::string &backend, std::string &why) {
  Target t;
  if (backend == "cuda") {
    auto list = runtime::listCudaDevices();
    if (!list || list->empty()) {
      why = list ? "the driver lists no device" : list.message();
      return std::nullopt;
    }
    t.opts.spirv = false;
    t.opts.ptx = true;
    t.opts.matrixUnits = true;
    t.opts.smArch = (*list)[0].arch;
    auto d = runtime::openCudaDevice(0);
    if (!d) {
      why = d.message();
      return std::nullopt;
    }
    t.device = std::move(*d);
    return t;
  }
  auto d = runtime::openVulkanDevice(-1);
  if (!d) {
    why = d.message();
    return std::nullopt;
  }
  t.device = std::move(*d);
  return t;
}

// End-to-end tests, once per backend: compile, run at each binding of dims, compare
// every output with the reference interpreter.
class EndToEnd : public ::testing::TestWithParam<std::string> {
protected:
  // The backend's target, or none (the test is then skipped, or failed where CI
  // requires Vulkan).
  std::optional<Target> open() {
    std::string why;
    std::optional<Target> target = openTarget(GetParam(), why);
    if (!target && GetParam() == "vulkan" && std::getenv("KILN_REQUIRE_VULKAN"))
      ADD_FAILURE() << "KILN_REQUIRE_VULKAN is set but there is no Vulkan device: " << why;
    else if (!target)
      std::printf("SKIPPED: no %s device: %s\n", GetParam().c_str(), why.c_str());
    return target;
  }
  void run(const std::string &text, const std::vector<std::vector<int64_t>> &bindings) {
    std::optional<Target> target = open();
    if (!target)
      GTEST_SKIP();
    ir::Graph ref = prepare(text);
    auto exe = compileGraph(ref, target->opts);
    ASSERT_TRUE(exe) << exe.message();
    runAndCompare(*target, ref, *exe, bindings, "");
    // On CUDA the quick PTX (opt-in) runs too.
    if (target->opts.ptx) {
      CompileOptions quick = target->opts;
      quick.quickPtx = true;
      auto q = compileGraph(ref, quick);
      ASSERT_TRUE(q) << q.message();
      runAndCompare(*target, ref, *q, bindings, " (quick PTX)");
    }
    // On sm_90 the warpgroup tiles (opt-in) run too, where the graph takes any.
    if (!target->opts.matrixUnits || target->opts.smArch != "sm_90")
      return;
    CompileOptions wgmma = target->opts;
    wgmma.warpgroupMatrix = true;
    auto wg = compileGraph(ref, wgmma);
    ASSERT_TRUE(wg) << wg.message();
    if (std::any_of(wg->kernels.begin(), wg->kernels.end(), [](const runtime::ExecKernel &k) {
          return k.ptx.find("wgmma.mma_async") != std::string::npos;
        }))
      runAndCompare(*target, ref, *wg, bindings, " (wgmma)");
  }
  // Whether both outputs are zero to within f32 rounding at unit scale (RMS below 1e-6):
  // NMSE relative to a reference that cancelled to ~0 in float64 (the mean of a
  // layer_norm's output, say) says nothing about an f32 result.
  static bool nearZero(const ir::HostTensor &got, const ir::HostTensor &want) {
    double g = 0, w = 0;
    for (size_t i = 0; i < want.data.size(); ++i) {
      g += got.data[i] * got.data[i];
      w += want.data[i] * want.data[i];
    }
    double n = static_cast<double>(std::max<size_t>(want.data.size(), 1));
    return std::sqrt(g / n) < 1e-6 && std::sqrt(w / n) < 1e-6;
  }

  // Whether integer output `id` is computed from floats through a cast (f32 and float64
  // values a hair apart, such as an f32 tanh that rounds to exactly 1, can truncate to
  // neighbouring integers).
  static bool truncatesFloats(const ir::Graph &g, int id) {
    const ir::Node &n = g.nodes[id];
    if (ir::isFloat(n.type.dtype))
      return false;
    if (n.op == ir::Op::Cast && ir::isFloat(g.typeOf(n.operands[0]).dtype))
      return true;
    for (int o : n.operands)
      if (truncatesFloats(g, o))
        return true;
    return false;
  }
  // Whether every element is within one of the reference.
  static bool withinOne(const ir::HostTensor &got, const ir::HostTensor &want) {
    for (size_t i = 0; i < want.data.size(); ++i)
      if (!(std::abs(got.data[i] - want.data[i]) <= 1))
        return false;
    return true;
  }

  // Runs `exe` (compiled from `ref`) at each binding with seeded inputs and compares
  // every output with the reference (ir::outputNmseLimit); `what` names the graph in
  // failures. `lenient` (generated graphs, whose values the generator keeps near unit
  // scale): accept float outputs that are near zero on both sides, and integer outputs
  // truncated from floats that are within one of the reference.
  void runAndCompare(Target &target, const ir::Graph &ref, const runtime::Executable &exe,
                     const std::vector<std::vector<int64_t>> &bindings, const std::string &what,
                     bool lenient = false) {
    auto plan = target.device->load(exe);
    ASSERT_TRUE(plan) << what << plan.message();
    for (const std::vector<int64_t> &dims : bindings) {
      std::vector<ir::HostTensor> in = ir::randomInputs(ref, dims, 100);
      std::vector<runtime::Bytes> bytes;
      for (const ir::HostTensor &t : in)
        bytes.push_back(ir::toBytes(t));
      std::vector<runtime::Bytes> outBytes;
      Status s = (*plan)->run(dims, bytes, outBytes, nullptr);
      ASSERT_FALSE(s.failed()) << what << s.message();
      auto want = ir::interpret(ref, dims, in);
      ASSERT_TRUE(want) << what << want.message();
      ASSERT_EQ(outBytes.size(), want->size());
      for (size_t i = 0; i < want->size(); ++i) {
        const ir::HostTensor &w = (*want)[i], got = ir::fromBytes(w.dtype, w.shape, outBytes[i]);
        ir::Comparison c = ir::compare(got, w);
        EXPECT_EQ(c.specialMismatches, 0)
            << what << "output " << i << " first at " << c.firstMismatch;
        double limit = ir::outputNmseLimit(ref, ref.outputs[i]);
        if (c.nmse > limit && lenient &&
            (nearZero(got, w) || (truncatesFloats(ref, ref.outputs[i]) && withinOne(got, w))))
          continue;
        EXPECT_LE(c.nmse, limit) << what << "output " << i;
      }
    }
  }
};

TEST_P(EndToEnd, PointwiseChainMatchesTheReferenceAtSeveralDims) {
  run(readExample("pointwise_chain.kir"), {{1}, {37}, {256}});
}

TEST_P(EndToEnd, MixedDtypesBroadcastsAndSpecialValuesMatch) {
  // log and sqrt of negative inputs give NaN; recip of tiny values overflows f16.
  run(
      R"(graph @mixed(%a: f16[r, 1, 8], %b: f32[3, 8], %i: i32[r, 3, 8], %s: bf16[8]) -> (f16[r, 3, 8], f32[r, 3, 8], i32[r, 3, 8], bf16[r, 3, 8]) {
  dim r in [1, 5]
  %a32 = cast %a : f32[r, 1, 8]
  %l = log %a32 : f32[r, 1, 8]
  %q = sqrt %b : f32[3, 8]
  %m = max %l, %q : f32[r, 3, 8]
  %g = gelu %m : f32[r, 3, 8]
  %e = erf %b : f32[3, 8]
  %p = pow %a32, %e : f32[r, 3, 8]
  %h = cast %p : f16[r, 3, 8]
  %z = constant {value = 5} : i32[]
  %c = cast %i : bool[r, 3, 8]
  %n = neg %i : i32[r, 3, 8]
  %k = select %c, %n, %z : i32[r, 3, 8]
  %if = cast %k : f32[r, 3, 8]
  %sf = cast %s : f32[8]
  %t = mul %if, %sf : f32[r, 3, 8]
  %tb = cast %t : bf16[r, 3, 8]
  return %h, %g, %k, %tb
})",
      {{1}, {4}});
}

TEST_P(EndToEnd, RmsNormTimesWeightMatches) { run(readExample("rmsnorm_mul.kir"), {{1}, {3}}); }

TEST_P(EndToEnd, ReductionsWithEpiloguesMatch) {
  // Rows shorter than a workgroup, longer and not a multiple of it; a reduction over the
  // leading axis; keepdims; mean; epilogues that read another input.
  run(
      R"(graph @reductions(%x: f32[r, 600], %y: f16[5, 3], %b: f32[r]) -> (f32[r], f32[r, 1], f16[3], f32[r], f32[5]) {
  dim r in [1, 9]
  %s = reduce_sum %x {axes = [1]} : f32[r]
  %sb = add %s, %b : f32[r]
  %m = reduce_max %x {axes = [-1], keepdims = true} : f32[r, 1]
  %n = reduce_min %y {axes = [0]} : f16[3]
  %e = exp %x : f32[r, 600]
  %mean = reduce_mean %e {axes = [1]} : f32[r]
  %l = log %mean : f32[r]
  %yf = cast %y : f32[5, 3]
  %ys = reduce_sum %yf {axes = [1]} : f32[5]
  return %sb, %m, %n, %l, %ys
})",
      {{1}, {7}});
}

TEST_P(EndToEnd, PointwiseTailsMatch) {
  // Four elements per invocation: sizes that leave 1, 2 and 3 over, and fewer than four.
  run(R"(graph @tail(%a: f32[n], %b: f16[n], %c: f32[3, n]) -> (f32[n], f16[3, n]) {
  dim n in [1, 2000]
  %bf = cast %b : f32[n]
  %s = add %a, %bf : f32[n]
  %e = exp %s : f32[n]
  %m = mul %c, %e : f32[3, n]
  %h = cast %m : f16[3, n]
  return %e, %h
})",
      {{1}, {2}, {3}, {5}, {6}, {1999}});
}

TEST_P(EndToEnd, LongAndSymbolicRowsMatch) {
  // Rows too long for registers (9000 > 32 x 256) and of symbolic length are walked in
  // loops; a row of one element has one invocation.
  run(R"(graph @long(%x: f32[3, 9000], %y: f16[2, n], %z: f32[7, 1]) -> (f32[3, 9000], f32[2], f32[7, 1]) {
  dim n in [1, 5000]
  %p = softmax %x : f32[3, 9000]
  %yf = cast %y : f32[2, n]
  %m = reduce_max %yf {axes = [1]} : f32[2]
  %r = rms_norm %z : f32[7, 1]
  return %p, %m, %r
})",
      {{1}, {300}, {5000}});
}

TEST_P(EndToEnd, NormalizationsMatch) {
  run(
      R"(graph @norms(%x: f32[4, 1000], %g: f32[1000], %s: f16[2, 3, 40], %mask: f16[3, 40]) -> (f32[4, 1000], f16[2, 3, 40], bf16[4, 1000]) {
  %ln = layer_norm %x {eps = 0.001} : f32[4, 1000]
  %lg = mul %ln, %g : f32[4, 1000]
  %scale = constant {value = 0.5} : f16[]
  %a = mul %s, %scale : f16[2, 3, 40]
  %c = add %a, %mask : f16[2, 3, 40]
  %p = softmax %c : f16[2, 3, 40]
  %t = tanh %x : f32[4, 1000]
  %r = rms_norm %t : f32[4, 1000]
  %rb = cast %r : bf16[4, 1000]
  return %lg, %p, %rb
})",
      {{}});
}

TEST_P(EndToEnd, KernelsPassValuesThroughTemporariesAndViews) {
  // softmax over a permuted input; a row max subtracted in a second kernel; a slice and a
  // reshape read across kernels; an input and a view returned as they are; one value
  // returned twice.
  run(
      R"(graph @multi(%x: f32[6, 50]) -> (f32[50, 6], f32[6, 50], f32[2, 50], f32[300], f32[6, 50], f32[6, 50]) {
  %t = permute %x {perm = [1, 0]} : f32[50, 6]
  %p = softmax %t : f32[50, 6]
  %m = reduce_max %x {axes = [1], keepdims = true} : f32[6, 1]
  %mb = broadcast %m : f32[6, 50]
  %d = sub %x, %mb : f32[6, 50]
  %sl = slice %d {axis = 0, start = 2, end = 4} : f32[2, 50]
  %e = exp %sl : f32[2, 50]
  %f = reshape %x : f32[300]
  return %p, %d, %e, %f, %x, %d
})",
      {{}});
}

TEST_P(EndToEnd, MatmulsMatch) {
  // GEMV shapes along either contiguous axis (transpose_b), K and N not multiples of the
  // tile, a few rows; batched with a broadcast batch dim and transpose_a; many rows
  // (register tiles) with symbolic M, K and N; bf16; an epilogue. Where K is not a
  // multiple of what an invocation reads per step, the elements past the end exist in
  // memory (the next row, a sliced-off tail), so reading them unmasked would show.
  run(
      R"(graph @mm(%x: f16[2, 300], %w: f16[300, 70], %wt: f16[70, 300], %x3: f32[3, 40], %w3: f32[48, 33], %a: f16[4, 1, 64], %b: f16[64, 9], %at: f32[2, 20, 5], %bt: f32[2, 7, 20], %p: f32[m, k], %q: f32[k, n], %h: bf16[2, 96], %hw: bf16[96, 200], %r: f32[70]) -> (f16[2, 70], f16[2, 70], f32[3, 33], f16[4, 1, 9], f32[2, 5, 7], f32[m, n], bf16[2, 200]) {
  dim m in [1, 80]
  dim k in [1, 50]
  dim n in [1, 90]
  %y = matmul %x, %w : f16[2, 70]
  %yt = matmul %x, %wt {transpose_b = true} : f16[2, 70]
  %rh = cast %r : f16[70]
  %ys = add %yt, %rh : f16[2, 70]
  %w3s = slice %w3 {axis = 0, start = 0, end = 40} : f32[40, 33]
  %y3 = matmul %x3, %w3s : f32[3, 33]
  %ab = matmul %a, %b : f16[4, 1, 9]
  %t = matmul %at, %bt {transpose_a = true, transpose_b = true} : f32[2, 5, 7]
  %pq = matmul %p, %q : f32[m, n]
  %e = exp %pq : f32[m, n]
  %hh = matmul %h, %hw : bf16[2, 200]
  return %y, %ys, %y3, %ab, %t, %e, %hh
})",
      {{1, 1, 1}, {80, 50, 90}, {17, 3, 64}});
}

TEST_P(EndToEnd, GemvsThatSplitKMatch) {
  // GEMVs over weights [K, N] that split K across workgroups (each over 20M weights, for
  // 640 workgroups of two steps or more): K not a multiple of the split (the last one short),
  // N not a multiple of the tile, a few f32 rows with an epilogue (tiles of one slice of
  // K), siblings with workgroups of their own and of different widths, gate and up (one
  // workgroup sums both), bf16, and a half-mode rope over 128-column tiles. Two runs of
  // one plan: the first leaves the tiles' counts at zero for the second.
  run(R"(graph @split(%x: f16[1, 10000], %w: f16[10000, 2100], %x3: f32[3, 4096], %w3: f32[4096, 640], %b3: f32[640], %xq: f16[1, 16384], %wq: f16[16384, 1024], %wk: f16[16384, 256], %xg: f16[1, 8192], %wg: f16[8192, 1280], %wu: f16[8192, 1280], %h: bf16[2, 4096], %hw: bf16[4096, 2600], %xr: f16[1, 8192], %wr: f16[8192, 2560], %pos: i32[1]) -> (f16[1, 2100], f32[3, 640], f16[1, 1024], f16[1, 256], f16[1, 1280], bf16[2, 2600], f16[1, 20, 128]) {
  %y = matmul %x, %w : f16[1, 2100]
  %m3 = matmul %x3, %w3 : f32[3, 640]
  %y3 = add %m3, %b3 : f32[3, 640]
  %q = matmul %xq, %wq : f16[1, 1024]
  %k = matmul %xq, %wk : f16[1, 256]
  %g = matmul %xg, %wg : f16[1, 1280]
  %u = matmul %xg, %wu : f16[1, 1280]
  %s = silu %g : f16[1, 1280]
  %gu = mul %s, %u : f16[1, 1280]
  %hh = matmul %h, %hw : bf16[2, 2600]
  %r0 = matmul %xr, %wr : f16[1, 2560]
  %r1 = reshape %r0 : f16[1, 20, 128]
  %r = rope %r1, %pos {mode = half} : f16[1, 20, 128]
  return %y, %y3, %q, %k, %gu, %hh, %r
})",
      {{}, {}});
}

TEST_P(EndToEnd, TensorCoreMatmulsMatch) {
  // The f16 shapes that take tensor cores on CUDA (Vulkan runs them on SIMT tiles): M, N
  // and K off the 128 x 128 x 32 tile (K a multiple of 8, and not: 37), B along either
  // axis, a symbolic M with an epilogue, a batch with B broadcast, transpose_a, sibling
  // matmuls that get workgroups of their own, and gate and up, which a stored value
  // mixes. Up to 8192 rows of u make tiles of 256 columns (B along either axis), N off
  // them.
  run(
      R"(graph @tc(%a: f16[130, 72], %b: f16[72, 200], %bt: f16[200, 72], %x: f16[t, 256], %w: f16[256, 160], %r: f16[t, 160], %p: f16[50, 37], %q: f16[37, 20], %ba: f16[3, 40, 64], %bb: f16[64, 48], %at: f16[64, 40], %wk: f16[256, 64], %wv: f16[256, 64], %xg: f16[t, 256], %wg: f16[200, 256], %wu: f16[200, 256], %xu: f16[u, 72], %we: f16[72, 520], %xv: f16[u, 72], %wet: f16[520, 72]) -> (f16[130, 200], f16[130, 200], f16[t, 160], f16[50, 20], f16[3, 40, 48], f16[40, 48], f16[t, 64], f16[t, 64], f16[t, 200], f16[u, 520], f16[u, 520]) {
  dim t in [1, 300]
  dim u in [1, 8192]
  %y = matmul %a, %b : f16[130, 200]
  %yt = matmul %a, %bt {transpose_b = true} : f16[130, 200]
  %z = matmul %x, %w : f16[t, 160]
  %zs = silu %z : f16[t, 160]
  %zr = add %zs, %r : f16[t, 160]
  %pq = matmul %p, %q : f16[50, 20]
  %bm = matmul %ba, %bb : f16[3, 40, 48]
  %ta = matmul %at, %bb {transpose_a = true} : f16[40, 48]
  %k = matmul %x, %wk : f16[t, 64]
  %v = matmul %x, %wv : f16[t, 64]
  %gate = matmul %xg, %wg {transpose_b = true} : f16[t, 200]
  %up = matmul %xg, %wu {transpose_b = true} : f16[t, 200]
  %act = silu %gate : f16[t, 200]
  %m = mul %act, %up : f16[t, 200]
  %e = matmul %xu, %we : f16[u, 520]
  %et = matmul %xv, %wet {transpose_b = true} : f16[u, 520]
  return %y, %yt, %zr, %pq, %bm, %ta, %k, %v, %m, %e, %et
})",
      {{1, 3}, {129, 300}, {300, 129}});
}

TEST_P(EndToEnd, TensorCoreMatmulsThatSplitKMatch) {
  // Tensor-core tiles too few to fill a GPU, over long K, split K across workgroups (on
  // CUDA; Vulkan runs SIMT tiles): a symbolic M whose grid counts spare workgroups, K
  // off the step (3000) with an epilogue; B along K with K not a multiple of 8 (carried
  // in registers); siblings with workgroups of their own and of different widths; gate
  // and up in one workgroup; a batch. Three runs of one plan: each leaves the tiles'
  // counts at zero for the next.
  run(
      R"(graph @tcsplit(%a: f16[t, 3000], %w: f16[3000, 200], %r: f16[t, 200], %wt: f16[136, 4100], %x: f16[t, 4100], %xq: f16[t, 2048], %wq: f16[2048, 128], %wk: f16[2048, 64], %xg: f16[t, 2048], %wg: f16[2048, 72], %wu: f16[2048, 72], %ba: f16[2, 40, 1024], %bb: f16[1024, 48]) -> (f16[t, 200], f16[t, 136], f16[t, 128], f16[t, 64], f16[t, 72], f16[2, 40, 48]) {
  dim t in [1, 300]
  %y = matmul %a, %w : f16[t, 200]
  %ys = silu %y : f16[t, 200]
  %yr = add %ys, %r : f16[t, 200]
  %yt = matmul %x, %wt {transpose_b = true} : f16[t, 136]
  %q = matmul %xq, %wq : f16[t, 128]
  %k = matmul %xq, %wk : f16[t, 64]
  %gate = matmul %xg, %wg : f16[t, 72]
  %up = matmul %xg, %wu : f16[t, 72]
  %act = silu %gate : f16[t, 72]
  %m = mul %act, %up : f16[t, 72]
  %bm = matmul %ba, %bb : f16[2, 40, 48]
  return %yr, %yt, %q, %k, %m, %bm
})",
      {{1}, {300}, {129}});
}

TEST_P(EndToEnd, TensorCoreFactorsThroughViewsMatch) {
  // Factors read through views (tests/lit/tensor-cores-views.kir): on CUDA, by copies
  // from the buffer under a slice at 8, a head split over a broadcast B, and a permute
  // read with transpose_a (beside a carried f32 B); through registers from a slice at 4.
  run(R"(graph @tcv(%x: f16[t, 256], param %w: f16[128, 96], %y: f16[t, 128], param %wb: f16[32, 48], %z: f16[64, 40], %e: f16[40, 72]) -> (f16[t, 96], f16[t, 96], f16[4, t, 48], f16[64, 72], f16[40]) {
  dim t in [1, 300]
  %xa = slice %x {axis = 1, start = 8, end = 136} : f16[t, 128]
  %ya = matmul %xa, %w : f16[t, 96]
  %xu = slice %x {axis = 1, start = 4, end = 132} : f16[t, 128]
  %yu = matmul %xu, %w : f16[t, 96]
  %y1 = reshape %y : f16[t, 4, 32]
  %yh = permute %y1 {perm = [1, 0, 2]} : f16[4, t, 32]
  %bb = broadcast %wb : f16[4, 32, 48]
  %yb = matmul %yh, %bb : f16[4, t, 48]
  %en = neg %e : f16[40, 72]
  %zt = permute %z {perm = [1, 0]} : f16[40, 64]
  %zm = matmul %zt, %en {transpose_a = true} : f16[64, 72]
  %em = reduce_max %en {axes = [1]} : f16[40]
  return %ya, %yu, %yb, %zm, %em
})",
      {{1}, {129}, {300}});
}

TEST_P(EndToEnd, SiblingMatmulsShareAKernel) {
  // Gate and up meet in silu(gate) * up; sibling matmuls of different widths (grouped
  // query heads) share a kernel.
  run(R"(graph @siblings(%x: f16[1, 128], %wg: f16[128, 352], %wu: f16[128, 352], %wq: f16[128, 128], %wk: f16[128, 32]) -> (f16[1, 352], f16[1, 128], f16[1, 32]) {
  %g = matmul %x, %wg : f16[1, 352]
  %u = matmul %x, %wu : f16[1, 352]
  %s = silu %g : f16[1, 352]
  %m = mul %s, %u : f16[1, 352]
  %q = matmul %x, %wq : f16[1, 128]
  %k = matmul %x, %wk : f16[1, 32]
  return %m, %q, %k
})",
      {{}});
}

TEST_P(EndToEnd, RopeGatherConcatAndInsertSliceMatch) {
  // rope in both modes, alone and in a matmul's epilogue; an embedding lookup; a concat
  // with a symbolic part; a KV-cache write at a symbolic offset, in place.
  run(
      R"(graph @misc(%x: f32[3, 4, 16], %pos: i32[4], %pos3: i32[3], %h: f16[2, 32], %w: f16[32, 64], %p2: i32[2, 1], %table: f16[16, 24], %ids: i32[5], %a: f32[2, n, 3], %b: f32[2, 4, 3], %cache: f16[8, 2, 32], %new: f16[1, 2, 32]) -> (f32[3, 4, 16], f32[3, 4, 16], f16[2, 4, 16], f16[5, 24], f32[2, n+4, 3], f16[8, 2, 32]) {
  dim n in [1, 7]
  %ri = rope %x, %pos {mode = interleaved} : f32[3, 4, 16]
  %pb = reshape %pos3 : i32[3, 1]
  %rh = rope %x, %pb {mode = half, theta = 500} : f32[3, 4, 16]
  %m = matmul %h, %w : f16[2, 64]
  %m3 = reshape %m : f16[2, 4, 16]
  %mr = rope %m3, %p2 {mode = half} : f16[2, 4, 16]
  %g = gather %table, %ids : f16[5, 24]
  %c = concat %a, %b {axis = 1} : f32[2, n+4, 3]
  %kc = insert_slice %cache, %new {offsets = [n, 0, 0]} : f16[8, 2, 32]
  return %ri, %rh, %mr, %g, %c, %kc
})",
      {{1}, {7}});
}

TEST_P(EndToEnd, ARopeWhoseRowsCrossAMatmulsRowsRunsInAKernelOfItsOwn) {
  // Rope rows of 16 over matmul rows of 24: no tile holds every pair, so fusion keeps
  // the rope out of the matmul's kernel (it used to be refused there).
  run(R"(graph @straddle(%x: f32[2, 8], %w: f32[8, 24], %p: i32[3]) -> (f32[3, 16]) {
  %m = matmul %x, %w : f32[2, 24]
  %r = reshape %m : f32[3, 16]
  %y = rope %r, %p {mode = half} : f32[3, 16]
  return %y
})",
      {{}});
}

// `text` with each `from` replaced by its `to`, in order, every occurrence.
std::string shrunk(std::string text,
                   const std::vector<std::pair<std::string, std::string>> &replacements) {
  for (const auto &[from, to] : replacements)
    for (size_t at; (at = text.find(from)) != std::string::npos;)
      text.replace(at, from.size(), to);
  return text;
}

TEST_P(EndToEnd, ASmallDecoderLayerMatches) {
  // The shape of examples/llama_decoder.kir, and of its [N, K] form (whose wo GEMV reads
  // its A through a permute and a reshape, an unrolled step's neighbours from one base),
  // with 2 heads of 64 and an FFN of 344, at the first, a middle and the last KV length.
  for (const char *file : {"llama_decoder.kir", "../bench/graphs/llama_decoder_nk.kir"}) {
    SCOPED_TRACE(file);
    std::string text = shrunk(readExample(file), {{"dim kv in [1, 4096]", "dim kv in [1, 64]"},
                                                  {"4096, 32, 128", "64, 2, 64"},
                                                  {"32, 128", "2, 64"},
                                                  {"32, 1, 128", "2, 1, 64"},
                                                  {"32, 128, kv", "2, 64, kv"},
                                                  {"32, kv, 128", "2, kv, 64"},
                                                  {"32, 1, kv", "2, 1, kv"},
                                                  {"11008", "344"},
                                                  {"4096", "128"},
                                                  {"0.08838834764831845", "0.125"}});
    run(text, {{1}, {17}, {64}});
  }
}

// Decode attention in one kernel (the flash-decoding template): grouped-query heads
// through broadcast batch dims, a head of 80 (lanes past it masked), a mask, keys within,
// at and past a chunk of 64, and both layouts of K and V.
TEST_P(EndToEnd, DecodeAttentionMatches) {
  auto oneKernel = [](const std::string &text) {
    auto lowered = lowerGraph(prepare(text));
    return lowered && lowered->kernels.size() == 1;
  };
  std::string gqa =
      R"(graph @gqa(%q: f16[2, 2, 1, 80], %k: f16[2, 1, kv, 80], %v: f16[2, 1, kv, 80], %mask: f16[1, 1, 1, kv]) -> (f16[2, 2, 1, 80]) {
  dim kv in [1, 300]
  %s = matmul %q, %k {transpose_b = true} : f16[2, 2, 1, kv]
  %c = constant {value = 0.125} : f16[]
  %ss = mul %s, %c : f16[2, 2, 1, kv]
  %sm = add %ss, %mask : f16[2, 2, 1, kv]
  %p = softmax %sm : f16[2, 2, 1, kv]
  %o = matmul %p, %v : f16[2, 2, 1, 80]
  return %o
})";
  EXPECT_TRUE(oneKernel(gqa));
  run(gqa, {{1}, {63}, {64}, {65}, {300}});
  std::string bf16 =
      R"(graph @bf(%q: bf16[8, 1, 128], %k: bf16[8, kv, 128], %v: bf16[8, 128, kv]) -> (bf16[8, 1, 128]) {
  dim kv in [1, 700]
  %s = matmul %q, %k {transpose_b = true} : bf16[8, 1, kv]
  %c = constant {value = 0.125} : bf16[]
  %ss = mul %s, %c : bf16[8, 1, kv]
  %p = softmax %ss : bf16[8, 1, kv]
  %o = matmul %p, %v {transpose_b = true} : bf16[8, 1, 128]
  return %o
})";
  EXPECT_TRUE(oneKernel(bf16));
  run(bf16, {{1}, {129}, {700}});
}

// A chunk of keys masked everywhere (-inf) adds nothing; a head masked everywhere gives
// NaN, as the reference's softmax does; the epilogue scales the output.
TEST_P(EndToEnd, DecodeAttentionOverMaskedKeysMatches) {
  std::string text =
      R"(graph @masked(%q: f32[4, 1, 32], %k: f32[4, 32, 192], %v: f32[4, 192, 32], %x: f32[1, 1, 64], %h: f32[1, 1, 1]) -> (f32[4, 1, 32]) {
  %zero = constant {value = 0.0} : f32[]
  %ninf = constant {value = -inf} : f32[]
  %s = matmul %q, %k : f32[4, 1, 192]
  %z = mul %x, %zero : f32[1, 1, 64]
  %n = add %z, %ninf : f32[1, 1, 64]
  %keys = concat %z, %n, %z {axis = 2} : f32[1, 1, 192]
  %zh0 = mul %h, %zero : f32[1, 1, 1]
  %zh = broadcast %zh0 : f32[3, 1, 1]
  %nh = add %zh0, %ninf : f32[1, 1, 1]
  %heads = concat %zh, %nh {axis = 0} : f32[4, 1, 1]
  %a = add %s, %keys : f32[4, 1, 192]
  %b = add %a, %heads : f32[4, 1, 192]
  %p = softmax %b : f32[4, 1, 192]
  %o = matmul %p, %v : f32[4, 1, 32]
  %two = constant {value = 2.0} : f32[]
  %y = mul %o, %two : f32[4, 1, 32]
  return %y
})";
  ir::Graph g = prepare(text);
  auto lowered = lowerGraph(g);
  ASSERT_TRUE(lowered) << lowered.message();
  // The masks' kernels, then the attention with its epilogue, its partial sums its own.
  const Kernel &last = lowered->kernels.back();
  EXPECT_TRUE(std::any_of(last.buffers.begin(), last.buffers.end(),
                          [](const KBuffer &b) { return b.name == "o_partials"; }));
  EXPECT_TRUE(std::any_of(last.buffers.begin(), last.buffers.end(),
                          [](const KBuffer &b) { return b.name == "y"; }));
  std::vector<int64_t> none;
  auto want = ir::interpret(g, none, ir::randomInputs(g, none, 100));
  ASSERT_TRUE(want) << want.message();
  EXPECT_TRUE(std::isnan((*want)[0].data.back())) << "the last head is masked everywhere";
  EXPECT_FALSE(std::isnan((*want)[0].data.front()));
  run(text, {{}});
}

TEST_P(EndToEnd, ASmallPrefillLayerMatches) {
  // The shape of bench/graphs/llama_prefill_nk.kir with 4 heads of 32 and an FFN of 352:
  // on CUDA every matmul but gate and up takes tensor cores, the attention's through
  // permuted views, with K past the tile's (t = 140 rows of p times V).
  std::string text = readExample("../bench/graphs/llama_prefill_nk.kir");
  ASSERT_FALSE(text.empty());
  text = shrunk(text, {{"dim t in [1, 512]", "dim t in [1, 160]"},
                       {"t, 32, 128", "t, 4, 32"},
                       {"32, t, 128", "4, t, 32"},
                       {"32, 128, t", "4, 32, t"},
                       {"32, t, t", "4, t, t"},
                       {"11008", "352"},
                       {"4096", "128"},
                       {"0.08838834764831845", "0.17677669529663687"}});
  run(text, {{1}, {33}, {140}});
}

// One small graph per op of the op table (and per mode of rope), in dtype `t`; empty for
// sources, which every graph has.
std::vector<std::string> opGraphs(const ir::OpInfo &op, const std::string &t) {
  std::string name(op.name), x = "%x: " + t + "[3, 37]";
  auto graph = [&](const std::string &args, const std::string &result, const std::string &body) {
    return "graph @" + name + "(" + args + ") -> (" + result + ") {\n" + body + "  return %y\n}\n";
  };
  switch (op.category) {
  case ir::Category::Source:
    return {};
  case ir::Category::Unary:
    return {graph(x, t + "[3, 37]", "  %y = " + name + " %x : " + t + "[3, 37]\n")};
  case ir::Category::Binary:
    return {graph(x + ", %b: " + t + "[37]", t + "[3, 37]",
                  "  %y = " + name + " %x, %b : " + t + "[3, 37]\n")};
  case ir::Category::Select:
    return {graph(x + ", %b: " + t + "[37], %i: i32[3, 1]", t + "[3, 37]",
                  "  %c = cast %i : bool[3, 1]\n  %y = select %c, %x, %b : " + t + "[3, 37]\n")};
  case ir::Category::Cast: {
    std::vector<std::string> out;
    for (const char *to : {"f32", "f16", "bf16", "i32"})
      out.push_back(graph(x, std::string(to) + "[3, 37]",
                          "  %y = cast %x : " + std::string(to) + "[3, 37]\n"));
    return out;
  }
  case ir::Category::Reduce:
    return {graph(x, t + "[3]", "  %y = " + name + " %x {axes = [1]} : " + t + "[3]\n"),
            graph(x, t + "[1, 37]",
                  "  %y = " + name + " %x {axes = [0], keepdims = true} : " + t + "[1, 37]\n")};
  case ir::Category::Normalize:
    return {graph(x, t + "[3, 37]", "  %y = " + name + " %x : " + t + "[3, 37]\n")};
  case ir::Category::Rope: {
    std::vector<std::string> out;
    for (const char *mode : {"interleaved", "half"})
      out.push_back(
          graph("%x: " + t + "[3, 2, 16], %p: i32[3, 1]", t + "[3, 2, 16]",
                "  %y = rope %x, %p {mode = " + std::string(mode) + "} : " + t + "[3, 2, 16]\n"));
    return out;
  }
  case ir::Category::Contraction:
    return {graph(x + ", %b: " + t + "[37, 5]", t + "[3, 5]",
                  "  %y = matmul %x, %b : " + t + "[3, 5]\n"),
            graph("%a: " + t + "[40, 37], %b: " + t + "[9, 37]", t + "[40, 9]",
                  "  %y = matmul %a, %b {transpose_b = true} : " + t + "[40, 9]\n")};
  case ir::Category::Gather:
    return {graph("%table: " + t + "[8, 6], %i: i32[4]", t + "[4, 6]",
                  "  %y = gather %table, %i : " + t + "[4, 6]\n")};
  case ir::Category::Concat:
    return {graph(x + ", %b: " + t + "[3, 5]", t + "[3, 42]",
                  "  %y = concat %x, %b {axis = 1} : " + t + "[3, 42]\n")};
  case ir::Category::Layout: {
    std::string body =
        op.op == ir::Op::Slice       ? "slice %x {axis = 1, start = 4, end = 30} : " + t + "[3, 26]"
        : op.op == ir::Op::Reshape   ? "reshape %x : " + t + "[111]"
        : op.op == ir::Op::Permute   ? "permute %x {perm = [1, 0]} : " + t + "[37, 3]"
        : op.op == ir::Op::Broadcast ? "broadcast %x : " + t + "[2, 3, 37]"
                                     : "view %x {offset = 2, strides = [37, 2]} : " + t + "[2, 17]";
    std::string type = body.substr(body.rfind(": ") + 2);
    return {graph(x, type, "  %v = " + body + "\n  %y = neg %v : " + type + "\n")};
  }
  case ir::Category::Update:
    return {graph("%c: " + t + "[6, 37], %x: " + t + "[2, 37]", t + "[6, 37]",
                  "  %y = insert_slice %c, %x {offsets = [3, 0]} : " + t + "[6, 37]\n")};
  }
  return {};
}

TEST_P(EndToEnd, EveryOpInEveryFloatDtypeMatches) {
  std::optional<Target> target = open();
  if (!target)
    GTEST_SKIP();
  int graphs = 0;
  for (const ir::OpInfo &op : ir::allOps())
    for (const char *t : {"f32", "f16", "bf16"})
      for (const std::string &text : opGraphs(op, t)) {
        ir::Graph ref = prepare(text);
        auto exe = compileGraph(ref, target->opts);
        ASSERT_TRUE(exe) << exe.message() << "\n" << text;
        runAndCompare(*target, ref, *exe, {{}}, std::string(op.name) + " " + t + ": ");
        if (::testing::Test::HasFailure()) {
          ADD_FAILURE() << text;
          return;
        }
        ++graphs;
      }
  std::printf("%d graphs of single ops matched the reference\n", graphs);
  EXPECT_GT(graphs, 150);
}

// Without a GPU the CUDA backend says why, in one line, instead of crashing.
TEST(Cuda, AMissingDriverIsAClearError) {
  auto device = runtime::openCudaDevice(-1);
  if (device)
    GTEST_SKIP() << "SKIPPED: a CUDA device is present: " << (*device)->describe();
  EXPECT_THAT(device.message(), ::testing::StartsWith("cuda: "));
  EXPECT_THAT(device.message(),
              ::testing::AnyOf(HasSubstr("libcuda.so.1"), HasSubstr("without CUDA headers"),
                               HasSubstr("no device")));
}

// The differential suite: generated graphs of the ops the templates lower (pointwise,
// reductions, normalizations, views, symbolic dims, several kernels), each at the
// smallest and largest dims, against the reference.
TEST_P(EndToEnd, GeneratedGraphsMatch) {
  std::optional<Target> target = open();
  if (!target)
    GTEST_SKIP();
  int compiled = 0, graphs = 0;
  std::map<std::string, int> refused;
  for (uint64_t seed = 1; seed <= 200; ++seed, ++graphs) {
    ir::RandomGraphOptions o;
    o.seed = seed;
    o.nodes = 8 + static_cast<int>(seed * 13 % 40);
    o.loweredOpsOnly = true;
    auto g = ir::randomGraph(o);
    ASSERT_TRUE(g) << g.message();
    ir::Graph ref = prepare(ir::printGraph(*g));
    auto exe = compileGraph(ref, target->opts);
    if (!exe) {
      // Refusals are counted by reason and must stay rare; anything else fails.
      ASSERT_THAT(exe.message(), HasSubstr("no kernel template lowers")) << "seed " << seed;
      ++refused[exe.message().substr(exe.message().find("lowers") + 7)];
      continue;
    }
    std::vector<int64_t> lo, hi;
    for (const ir::SymDim &d : ref.dims) {
      lo.push_back(d.lo);
      hi.push_back(d.hi);
    }
    runAndCompare(*target, ref, *exe, {lo, hi}, "seed " + std::to_string(seed) + ": ", true);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "seed " << seed << ":\n" << ir::printGraph(ref);
      break;
    }
    ++compiled;
  }
  for (const auto &[why, n] : refused)
    std::printf("refused %d: %s\n", n, why.c_str());
  std::printf("%d of %d generated graphs compiled and matched the reference\n", compiled, graphs);
  EXPECT_GE(compiled, graphs * 3 / 4);
}

INSTANTIATE_TEST_SUITE_P(Backends, EndToEnd, ::testing::Values("vulkan", "cuda"),
                         [](const auto &info) { return info.param; });

} // namespace
} // namespace kiln::compiler
