// kiln-opt: reads a .kir graph, runs passes, and emits IR, Graphviz, kernel IR or code.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <set>

#include "compiler/compile.h"
#include "compiler/kernel_ir.h"
#include "compiler/lower.h"
#include "compiler/msl/emit_msl.h"
#include "compiler/nvptx/emit_nvptx.h"
#include "compiler/spirv/emit_spirv.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "passes/cost_model.h"
#include "passes/dependence.h"
#include "passes/memory_plan.h"
#include "passes/module.h"
#include "passes/pass_manager.h"
#include "passes/report.h"
#include "passes/schedule.h"
#include "tools/tool_common.h"

using namespace kiln;

namespace {

constexpr const char *kUsage = R"(usage: kiln-opt FILE.kir|- [options]

Reads a graph, runs a pass pipeline on it and writes what --emit asks for.

options:
  --passes=A,B,...         passes to run, in order (default: the default pipeline;
                           --passes= runs none)
  --list-passes            print every pass with a one-line summary and exit
  --print-ir-after-all     print the graph after every pass (to stderr)
  --print-ir-after=NAME    print the graph after pass NAME (repeatable)
  --print-ir-after-change  print the graph after each pass that changed it
  --time-passes            print the time each pass took, and for code, the time of
                           lowering, of emission and of each kernel's emission (to
                           stderr)
  --no-verify-each         do not run the verifier after every pass
  --emit=KIND              ir (default), dot, deps, schedule, stats, trace, kernel-ir,
                           ptx, spirv, spirv-asm, msl
                           kernel-ir, ptx, spirv, spirv-asm, msl: every kernel of
                             the graph, one after another (msl: Metal, through
                             SPIRV-Cross from the SPIR-V)
                           deps: layouts, hazards, edges, levels and the critical path
                           schedule: kernels, barriers, graph edges, streams and events,
                             predicted times, the critical path and the arena
                           stats: one JSON object of counts and predictions
                           trace: the predicted schedule as a Chrome trace (Perfetto)
                           dot: Graphviz; after fusion, kernels are clusters with their
                             waves and the schedule's edges
  --profile=NAME           device profile for predicted times: h200 (default), h100,
                           vulkan-gpu, lavapipe
  --sm=ARCH                PTX target for --emit=ptx: sm_80 (default) or sm_90
  --wgmma                  with matrix units and --sm=sm_90, lower the tensor-core
                           tiles whose operands are f16 buffers to warpgroup products
                           (wgmma, emitted for sm_90a) instead of mma.sync
  --quick-ptx              for --emit=ptx: kernels without matrix ops through a short
                           LLVM pipeline and -O0 code generation instead of O3 (3-4 times
                           sooner; their speed on a GPU is not yet known)
  --matrix-units=on|off    lower f16 matmuls of more rows than a GEMV's for tensor
                           cores (the kernel IR's matrix ops, emitted for PTX only);
                           default: on for --emit=ptx, off for the other kinds
  -o FILE                  write the output to FILE (default: stdout)
  -h, --help               print this help
)";

struct Options {
  std::string input;
  std::string pipeline{passes::defaultPipeline()};
  passes::Instrumentation inst;
  std::string emit = "ir";
  std::string matrixUnits;       // on, off, or empty: on for PTX alone
  compiler::CompileOptions code; // smArch (--sm), --wgmma, --quick-ptx
  std::string profile = "h200";
  std::string output;
};

Expected<std::string> emitDependences(const ir::Graph &g, const Options &o) {
  const passes::DeviceProfile *p = passes::findDeviceProfile(o.profile);
  auto layouts = passes::analyzeLayouts(g);
  auto accesses = passes::nodeAccesses(g, layouts);
  if (!accesses)
    return accesses.error();
  auto deps = passes::analyzeDependences(*accesses, passes::nodeMicros(g, *p, passes::costDims(g)));
  return passes::printDependences(g, layouts, deps);
}

double msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// One kernel in the chosen form.
Expected<std::string> emitKernel(const compiler::Kernel &k, const Options &o) {
  if (o.emit == "kernel-ir")
    return compiler::printKernel(k);
  if (o.emit == "ptx") {
    auto ptx = compiler::emitPtx(k, o.code.smArch, o.code.quickPtx);
    if (!ptx)
      return makeError("error: kernel " + k.name + ": " + ptx.message());
    return std::move(*ptx);
  }
  auto words = compiler::emitSpirv(k);
  if (!words)
    return makeError("error: kernel " + k.name + ": " + words.message());
  if (o.emit == "msl") {
    auto msl = compiler::emitMsl(*words, k.name);
    if (!msl)
      return makeError("error: kernel " + k.name + ": " + msl.message());
    return std::move(*msl);
  }
  if (o.emit == "spirv-asm")
    return compiler::disassembleSpirv(*words);
  return std::string(reinterpret_cast<const char *>(words->data()), words->size() * 4);
}

// Emits every kernel of the lowered graph for the chosen target (in parallel),
// concatenated in order, kernels of the same code compiled to PTX once; with
// --time-passes, says how long lowering and emission took, and each kernel's emission
// with its size (to stderr).
Expected<std::string> emitKernels(const ir::Graph &g, const Options &o) {
  auto start = std::chrono::steady_clock::now();
  compiler::CompileOptions target = o.code;
  target.matrixUnits = o.matrixUnits.empty() ? o.emit == "ptx" : o.matrixUnits == "on";
  auto lowered = compiler::lowerGraph(g, compiler::lowerOptionsFor(target));
  if (!lowered)
    return lowered.error();
  double lowerMs = msSince(start);
  start = std::chrono::steady_clock::now();
  const std::vector<compiler::Kernel> &kernels = lowered->kernels;
  std::vector<Expected<std::string>> code(kernels.size(), std::string());
  std::vector<double> kernelMs(kernels.size());
  // PTX: a kernel of the same code as an earlier one takes its PTX, renamed.
  std::vector<size_t> same(kernels.size());
  std::iota(same.begin(), same.end(), size_t{0});
  if (o.emit == "ptx")
    same = compiler::firstOfSameCode(kernels);
  compiler::forEachKernel(kernels.size(), [&](size_t i) {
    if (same[i] != i)
      return;
    auto kernelStart = std::chrono::steady_clock::now();
    code[i] = emitKernel(kernels[i], o);
    kernelMs[i] = msSince(kernelStart);
  });
  std::string out;
  for (size_t i = 0; i < code.size(); ++i) {
    if (!code[same[i]])
      return code[same[i]].error();
    if (same[i] != i)
      code[i] = compiler::renamePtx(*code[same[i]], kernels[same[i]].name, kernels[i].name);
    out += *code[i];
  }
  if (o.inst.timePasses) {
    std::fprintf(stderr,
                 "===-- kiln codegen timing --===\n  %9.3f ms  lowering\n  %9.3f ms  %s (%zu "
                 "kernels)\n",
                 lowerMs, msSince(start), o.emit.c_str(), kernels.size());
    // Kernels emit side by side, one thread per core: the wall time above is about the
    // largest of these or their sum over the cores, whichever is more.
    for (size_t i = 0; i < kernels.size(); ++i)
      std::fprintf(stderr, "  %9.3f ms    %s (%zu instructions%s%s)\n", kernelMs[i],
                   kernels[i].name.c_str(), kernels[i].body.size(),
                   same[i] == i ? "" : ", the code of ",
                   same[i] == i ? "" : kernels[same[i]].name.c_str());
  }
  return out;
}

// Kernels, their schedule in every form and the memory plan (computed here unless the
// pipeline did), each proved by its checker.
Expected<std::string> emitSchedule(passes::Module &m, const Options &o,
                                   std::chrono::steady_clock::time_point start) {
  for (Status s : {m.ensureProgram(), m.ensureMemory(), m.ensureSchedule()})
    if (s.failed())
      return makeError(s.message());
  const passes::KernelProgram &prog = *m.program;
  const passes::Schedule &sched = *m.schedule;
  for (Status s :
       {passes::checkQueue(prog, sched.queue), passes::checkGraph(prog, sched.graph),
        passes::checkStreams(prog, sched.streams), passes::checkMemoryPlan(prog, *m.memory)})
    if (s.failed())
      return makeError("error: kiln bug: the schedule checker failed: " + s.message());
  double ms = msSince(start);
  passes::ScheduleReport r{m.graph, prog, sched, *m.memory, *m.profile};
  if (o.emit == "stats")
    return passes::scheduleStats(r, ms);
  if (o.emit == "trace")
    return passes::scheduleTrace(r);
  if (o.emit == "dot")
    return passes::scheduleDot(r);
  return passes::printSchedule(r);
}

int run(const Options &o) {
  auto start = std::chrono::steady_clock::now();
  auto text = tools::readInput(o.input);
  if (!text)
    return tools::fail(text.message());
  auto graph = ir::parseGraph(*text, o.input == "-" ? "<stdin>" : o.input);
  if (!graph)
    return tools::fail(graph.message());
  passes::Module m;
  m.graph = std::move(*graph);
  m.profile = passes::findDeviceProfile(o.profile);
  passes::PassManager pm(o.inst);
  if (Status s = pm.addPipeline(o.pipeline); s.failed())
    return tools::fail(s.message());
  if (Status s = pm.run(m); s.failed())
    return tools::fail(s.message());

  std::string out;
  if (o.emit == "ir") {
    out = ir::printGraph(m.graph);
  } else if (o.emit == "dot" && m.graph.kernels.empty()) {
    out = ir::printDot(m.graph);
  } else if (o.emit == "schedule" || o.emit == "stats" || o.emit == "trace" || o.emit == "dot") {
    auto report = emitSchedule(m, o, start);
    if (!report)
      return tools::fail(report.message());
    out = std::move(*report);
  } else if (o.emit == "deps") {
    auto deps = emitDependences(m.graph, o);
    if (!deps)
      return tools::fail(deps.message());
    out = std::move(*deps);
  } else {
    auto code = emitKernels(m.graph, o);
    if (!code)
      return tools::fail(code.message());
    out = std::move(*code);
  }
  if (Status s = tools::writeOutput(o.output, out); s.failed())
    return tools::fail(s.message());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  tools::ArgReader args(argc, argv);
  while (args.more()) {
    std::string_view a = args.next();
    std::string_view v;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--list-passes") {
      for (const passes::PassInfo &p : passes::allPasses())
        std::printf("%-16.*s %.*s\n", static_cast<int>(p.name.size()), p.name.data(),
                    static_cast<int>(p.summary.size()), p.summary.data());
      return 0;
    } else if (args.value(a, "--passes", v)) {
      o.pipeline = v;
    } else if (a == "--print-ir-after-all") {
      o.inst.printAfterAll = true;
    } else if (args.value(a, "--print-ir-after", v)) {
      o.inst.printAfter.insert(std::string(v));
    } else if (a == "--print-ir-after-change") {
      o.inst.printAfterChange = true;
    } else if (a == "--time-passes") {
      o.inst.timePasses = true;
    } else if (a == "--no-verify-each") {
      o.inst.verifyEach = false;
    } else if (args.value(a, "--emit", v)) {
      static const std::set<std::string_view> kEmits = {
          "ir",        "dot", "deps",  "schedule",  "stats", "trace",
          "kernel-ir", "ptx", "spirv", "spirv-asm", "msl"};
      if (!kEmits.count(v))
        return tools::usageError("kiln-opt", "unknown --emit kind '" + std::string(v) + "'");
      o.emit = v;
    } else if (args.value(a, "--profile", v)) {
      if (!passes::findDeviceProfile(v))
        return tools::usageError("kiln-opt", "unknown --profile '" + std::string(v) + "'");
      o.profile = v;
    } else if (args.value(a, "--sm", v)) {
      o.code.smArch = v;
    } else if (args.value(a, "--matrix-units", v)) {
      if (v != "on" && v != "off")
        return tools::usageError("kiln-opt",
                                 "--matrix-units takes on or off, not '" + std::string(v) + "'");
      o.matrixUnits = v;
    } else if (tools::codeFlag(a, o.code)) {
    } else if (args.value(a, "-o", v)) {
      o.output = v;
    } else if (a.size() > 1 && a[0] == '-') {
      return tools::usageError("kiln-opt", "unknown option '" + std::string(a) + "'");
    } else if (!o.input.empty()) {
      return tools::usageError("kiln-opt", "more than one input file");
    } else {
      o.input = a;
    }
    if (!args.ok())
      return tools::usageError("kiln-opt", args.error());
  }
  if (o.input.empty())
    return tools::usageError("kiln-opt", "no input file (use - for stdin)");
  return run(o);
}
