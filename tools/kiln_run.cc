// kiln-run: compiles a .kir graph, runs it on a device with seeded random inputs, and
// checks it against the reference interpreter.
#include <algorithm>
#include <cstdio>
#include <memory>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "passes/report.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/vulkan/vulkan_device.h"
#include "tools/device_runner.h"
#include "tools/tool_common.h"

using namespace kiln;
using tools::Runner;

namespace {

constexpr const char *kUsage = R"(usage: kiln-run FILE.kir [options]

Compiles a graph, runs it on a device with random inputs from a fixed seed and
prints the time; with --check, compares every output with the reference
interpreter (float64).

options:
  --device=D           auto (default: the best Vulkan device, else ref), ref (the
                       reference interpreter), vulkan[:N], cuda[:N]
  --dims N=V[,N=V...]  bind symbolic dims; each --dims is one run of the same
                       compiled plan (needed when the graph has symbolic dims)
  --check              print each output's NMSE against the reference and one line
                       PASS or FAIL per run; the exit code is 0 only if all passed
  --iters N            run N times per --dims and report the median (default 1)
  --seed S             seed for the random inputs (default 1)
  --stats              print one JSON object last: device; kernels, barriers,
                       submits, rerecords and reinstantiations summed over every
                       run and iteration; median_us of the first --dims run; and
                       runs, each --dims run's dims and median_us
  --wgmma              on a CUDA device of sm_90, warpgroup tensor-core tiles
                       (wgmma) where a matmul's operands allow, instead of mma.sync
  --quick-ptx          on a CUDA device, kernels without matrix ops through a short
                       LLVM pipeline and -O0 code generation instead of O3
  --validate           Vulkan only: run under VK_LAYER_KHRONOS_validation with
                       synchronization validation; any message it reports fails
                       the load or run (as KILN_VK_VALIDATE=1 does)
  --trace FILE         write a Chrome trace (Perfetto, chrome://tracing): the last
                       run's kernels as the device timed them (Vulkan timestamps;
                       other devices time none yet) beside the predicted schedule
  --list-devices       print the devices found, one per line (Vulkan ones with their
                       subgroup size, shared memory and the features kernels may
                       use), and exit
  -h, --help           print this help
)";

struct Options {
  std::string input;
  std::string device = "auto";
  std::vector<std::string> dims;
  bool check = false;
  int iters = 1;
  uint64_t seed = 1;
  bool stats = false;
  std::string trace; // file for --trace, or empty
  bool validate = false;
  compiler::CompileOptions cuda; // --wgmma, --quick-ptx
};

// Bytes of every value of the graph at these dims, in its dtype.
int64_t graphBytes(const ir::Graph &g, const std::vector<int64_t> &dims) {
  int64_t total = 0;
  for (const ir::Node &n : g.nodes)
    total += ir::numElements(ir::evalShape(n.type.shape, dims)) * ir::dtypeBytes(n.type.dtype);
  return total;
}

std::string dimsText(const ir::Graph &g, const std::vector<int64_t> &dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? "," : "") + g.dims[i].name + "=" + std::to_string(dims[i]);
  return s.empty() ? "static" : s;
}

Status writeTrace(std::FILE *f, const std::string &path, const ir::Graph &g,
                  const runtime::Executable &exe,
                  const std::vector<std::pair<double, double>> &spans,
                  const std::string &deviceName);

int run(const Options &o) {
  if (int rc = tools::checkDevice(o.device, "kiln-run"))
    return rc;
  auto text = tools::readInput(o.input);
  if (!text)
    return tools::fail(text.message());
  auto parsed = ir::parseGraph(*text, o.input == "-" ? "<stdin>" : o.input);
  if (!parsed)
    return tools::fail(parsed.message());
  const ir::Graph &ref = *parsed;

  std::vector<std::vector<int64_t>> runs;
  for (const std::string &d : o.dims) {
    auto v = tools::parseDims(ref, d);
    if (!v)
      return tools::fail(v.message());
    runs.push_back(*v);
  }
  if (runs.empty()) {
    if (!ref.dims.empty()) {
      std::string names;
      for (const ir::SymDim &d : ref.dims)
        names += " " + d.name + " in [" + std::to_string(d.lo) + ", " + std::to_string(d.hi) + "]";
      return tools::fail("error: @" + ref.name + " has symbolic dims (" + names.substr(1) +
                         "); bind them with --dims NAME=VALUE");
    }
    runs.push_back({});
  }

  std::unique_ptr<std::FILE, int (*)(std::FILE *)> traceFile(nullptr, std::fclose);
  if (!o.trace.empty()) {
    traceFile.reset(std::fopen(o.trace.c_str(), "w"));
    if (!traceFile)
      return tools::fail("error: --trace: cannot write " + o.trace);
  }

  ir::Graph g = ref;
  if (Status s = tools::runDefaultPipeline(g); s.failed())
    return tools::fail(s.message());

  Runner runner{g};
  runtime::Executable exe;
  std::string deviceName = "ref (reference interpreter)";
  if (Status s = tools::loadOnDevice(o.device, o.validate, o.cuda, g, runner, exe, deviceName);
      s.failed())
    return tools::fail(s.message());
  std::printf("device: %s\n", deviceName.c_str());
  std::fflush(stdout);

  bool allPassed = true;
  std::string runsJson;
  double firstUs = 0;
  for (size_t r = 0; r < runs.size(); ++r) {
    const std::vector<int64_t> &dims = runs[r];
    // Big graphs take seconds on the reference interpreter: say what is going on.
    bool big = graphBytes(ref, dims) > (int64_t{256} << 20);
    auto progress = [&](const char *what) {
      if (big)
        std::fprintf(stderr, "kiln-run: run %zu: %s\n", r, what);
    };
    progress("making random inputs");
    std::vector<ir::HostTensor> in = ir::randomInputs(ref, dims, o.seed);
    progress(runner.plan ? "running on the device" : "running the reference interpreter");
    double us = 0;
    auto outs = runner.run(dims, in, o.iters, us);
    if (!outs)
      return tools::fail(outs.message());
    std::printf("run %zu (%s): %.1f us median of %d\n", r, dimsText(ref, dims).c_str(), us,
                o.iters);
    std::fflush(stdout);
    char item[64];
    std::snprintf(item, sizeof item, ", \"median_us\": %.3f}", us);
    runsJson +=
        std::string(r ? ", " : "") + "{\"dims\": " + passes::jsonString(dimsText(ref, dims)) + item;
    if (r == 0)
      firstUs = us;
    if (!o.check)
      continue;
    // On the reference device the run itself is the reference.
    if (runner.plan)
      progress("running the reference interpreter");
    auto want = runner.plan ? ir::interpret(ref, dims, in) : outs;
    if (!want)
      return tools::fail("error: reference interpreter: " + want.message());
    bool passed = true;
    for (size_t i = 0; i < want->size(); ++i) {
      const ir::Node &n = ref.nodes[ref.outputs[i]];
      ir::Comparison c = ir::compare((*outs)[i], (*want)[i]);
      double limit = ir::outputNmseLimit(ref, ref.outputs[i]);
      bool ok = !c.shapeMismatch && c.specialMismatches == 0 && c.nmse <= limit;
      passed &= ok;
      std::printf("  output %zu %%%s: nmse %.3g (limit %.0e)", i, n.name.c_str(), c.nmse, limit);
      if (c.specialMismatches)
        std::printf(", %lld NaN/Inf mismatches (first at %lld)",
                    static_cast<long long>(c.specialMismatches),
                    static_cast<long long>(c.firstMismatch));
      std::printf("%s\n", ok ? "" : "  <-- exceeds");
    }
    std::printf("%s\n", passed ? "PASS" : "FAIL");
    allPassed &= passed;
  }
  if (o.stats) {
    // No CUDA graphs yet (issue 6), so nothing is ever instantiated again.
    const runtime::RunStats &t = runner.totals;
    std::printf("{\"device\": %s, \"kernels\": %lld, \"barriers\": %lld, \"submits\": %lld, "
                "\"rerecords\": %lld, \"reinstantiations\": 0, \"median_us\": %.3f, "
                "\"runs\": [%s]}\n",
                passes::jsonString(deviceName).c_str(), static_cast<long long>(t.kernels),
                static_cast<long long>(t.barriers), static_cast<long long>(t.submits),
                static_cast<long long>(t.rerecords), firstUs, runsJson.c_str());
  }
  if (traceFile)
    if (Status s = writeTrace(traceFile.get(), o.trace, g, exe, runner.lastSpans, deviceName);
        s.failed())
      return tools::fail(s.message());
  return allPassed ? 0 : 1;
}

// Writes the trace to `f` (opened on `path` before the runs, so that a bad path fails
// before any work).
Status writeTrace(std::FILE *f, const std::string &path, const ir::Graph &g,
                  const runtime::Executable &exe,
                  const std::vector<std::pair<double, double>> &spans,
                  const std::string &deviceName) {
  const passes::DeviceProfile &profile = tools::profileFor(deviceName);
  auto prog = passes::buildKernelProgram(g, profile);
  if (!prog)
    return makeError("error: --trace: " + prog.message());
  passes::Schedule sched = passes::placeBarriers(*prog, profile);
  passes::MemoryPlan none;
  std::string events = passes::scheduleTraceEvents({g, *prog, sched, none, profile}, 0);
  events += passes::traceProcessName(1, "kiln measured: @" + g.name + " on " + deviceName);
  for (size_t k = 0; k < spans.size() && k < exe.kernels.size(); ++k) {
    char times[96];
    std::snprintf(times, sizeof times, "\"ts\": %.3f, \"dur\": %.3f", spans[k].first,
                  std::max(0.0, spans[k].second - spans[k].first));
    events += ",\n  {\"name\": " + passes::jsonString(exe.kernels[k].name) +
              ", \"ph\": \"X\", \"pid\": 1, \"tid\": 0, " + times + "}";
  }
  if (spans.empty())
    std::fprintf(stderr,
                 "kiln-run: --trace: %s timed no kernels; the trace holds the predicted "
                 "schedule alone\n",
                 deviceName.c_str());
  std::string doc = passes::traceDocument(events);
  bool ok = std::fwrite(doc.data(), 1, doc.size(), f) == doc.size() && std::fflush(f) == 0;
  return ok ? Status::ok() : makeError("error: --trace: cannot write " + path);
}

int listDevices() {
  std::printf("ref: the reference interpreter (CPU, float64)\n");
  auto devices = runtime::listVulkanDevices();
  if (!devices)
    std::printf("(no Vulkan: %s)\n", devices.message().c_str());
  else
    for (size_t i = 0; i < devices->size(); ++i)
      std::printf("vulkan:%zu: %s (%s; %s)\n", i, (*devices)[i].name.c_str(),
                  (*devices)[i].type.c_str(), (*devices)[i].capabilities.c_str());
  auto gpus = runtime::listCudaDevices();
  if (!gpus)
    std::printf("(no CUDA: %s)\n", gpus.message().c_str());
  else
    for (size_t i = 0; i < gpus->size(); ++i)
      std::printf("cuda:%zu: %s (%s)\n", i, (*gpus)[i].name.c_str(), (*gpus)[i].arch.c_str());
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
    } else if (a == "--list-devices") {
      return listDevices();
    } else if (args.value(a, "--device", v)) {
      o.device = v;
    } else if (args.value(a, "--dims", v)) {
      o.dims.emplace_back(v);
    } else if (a == "--check") {
      o.check = true;
    } else if (a == "--stats") {
      o.stats = true;
    } else if (a == "--validate") {
      o.validate = true;
    } else if (tools::codeFlag(a, o.cuda)) {
    } else if (args.value(a, "--trace", v)) {
      o.trace = v;
    } else if (args.count(a, "--iters", o.iters)) {
    } else if (args.value(a, "--seed", v)) {
      o.seed = std::strtoull(std::string(v).c_str(), nullptr, 10);
    } else if (a.size() > 1 && a[0] == '-') {
      return tools::usageError("kiln-run", "unknown option '" + std::string(a) + "'");
    } else if (!o.input.empty()) {
      return tools::usageError("kiln-run", "more than one input file");
    } else {
      o.input = a;
    }
    if (!args.ok())
      return tools::usageError("kiln-run", args.error());
  }
  if (o.input.empty())
    return tools::usageError("kiln-run", "no input file");
  return run(o);
}
