// kiln-bench: runs the named benchmark graphs on a device and prints one JSON object with
// each one's median time, its bytes floor and the bandwidth that achieves.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "ir/host_tensor.h"
#include "ir/parser.h"
#include "passes/report.h"
#include "tools/device_runner.h"
#include "tools/tool_common.h"

using namespace kiln;

namespace {

constexpr const char *kUsage = R"(usage: kiln-bench [options] [NAME...]

Runs benchmark graphs (all of them, or those named) on a device with random inputs
from a fixed seed and prints one JSON object: the device, and for each graph its
median time, its bytes floor (each input read once, a slice of one only where the
graph reads it through slices alone; each output written once, an in-place
insert_slice only where it writes) and the bandwidth that floor achieves. Each
graph's entry is printed as soon as it is measured, so a run that fails or is cut
short leaves the entries it finished (and no closing brackets).

options:
  --list          print the benchmarks' names, graph files and dims, and exit
  --device=D      auto (default: the best Vulkan device, else ref), ref, vulkan[:N],
                  cuda[:N]
  --iters N       timed runs per graph, after one untimed (default 20)
  --wgmma         on a CUDA device of sm_90, warpgroup tensor-core tiles (wgmma)
                  where a matmul's operands allow, instead of mma.sync
  --quick-ptx     on a CUDA device, kernels without matrix ops through a short
                  LLVM pipeline and -O0 code generation instead of O3
  --root DIR      the folder the graph files are found in: the repository root
                  (default: the current directory)
  -h, --help      print this help
)";

// A benchmark: a graph file (from the repository root), the dims it runs at, and the
// name of the same graph in ../shared/bench/torch_anchors.py's results (bench/
// side_by_side.py pairs them), or "".
struct Bench {
  const char *name;
  const char *file;
  const char *dims; // "" for a graph without symbolic dims
  const char *anchor;
};

// The graphs of the issue's list and of torch_anchors.py, and the templates' own.
constexpr Bench kBenches[] = {
    {"rmsnorm_mul_f16_1", "examples/rmsnorm_mul.kir", "t=1", "rmsnorm_mul[1x4096,float16]"},
    {"rmsnorm_mul_f16_512", "examples/rmsnorm_mul.kir", "t=512", "rmsnorm_mul[512x4096,float16]"},
    {"rmsnorm_mul_f16_8192", "examples/rmsnorm_mul.kir", "t=8192",
     "rmsnorm_mul[8192x4096,float16]"},
    {"rmsnorm_mul_f32_1", "bench/graphs/rmsnorm_mul_f32.kir", "t=1", "rmsnorm_mul[1x4096,float32]"},
    {"rmsnorm_mul_f32_512", "bench/graphs/rmsnorm_mul_f32.kir", "t=512",
     "rmsnorm_mul[512x4096,float32]"},
    {"rmsnorm_mul_f32_8192", "bench/graphs/rmsnorm_mul_f32.kir", "t=8192",
     "rmsnorm_mul[8192x4096,float32]"},
    {"ew_chain_16m", "bench/graphs/ew_chain.kir", "n=16777216", "ew_chain[16M,f32]"},
    {"softmax_scale_mask", "examples/softmax_scale_mask.kir", "",
     "softmax_scale_mask[32x512x512,f16]"},
    {"tiny_chain", "bench/graphs/tiny_chain.kir", "", "tiny_chain[64 ops,4096]"},
    {"independent_reductions", "bench/graphs/independent_reductions.kir", "", ""},
    {"gemv_f16", "bench/graphs/gemv_f16.kir", "", ""},
    {"gemv_f16_nk", "bench/graphs/gemv_f16_nk.kir", "", ""},
    {"decode_attention_kv1024", "bench/graphs/decode_attention.kir", "kv=1024", ""},
    {"llama_decoder_kv1024", "examples/llama_decoder.kir", "kv=1024",
     "llama7b_layer_decode[kv1024,f16]"},
    {"llama_decoder_nk_kv1024", "bench/graphs/llama_decoder_nk.kir", "kv=1024",
     "llama7b_layer_decode[kv1024,f16]"},
    {"llama_prefill_nk_512", "bench/graphs/llama_prefill_nk.kir", "t=512",
     "llama7b_layer_prefill[512,f16]"},
    {"matmul_f16", "bench/graphs/matmul_f16.kir", "", ""},
};

struct Options {
  std::string device = "auto";
  int iters = 20;
  compiler::CompileOptions cuda; // --wgmma, --quick-ptx
  std::string root = ".";
  std::vector<const Bench *> benches;
};

int64_t valueBytes(const ir::Graph &g, int id, const std::vector<int64_t> &dims) {
  const ir::TensorType &t = g.typeOf(id);
  return ir::numElements(ir::evalShape(t.shape, dims)) * ir::dtypeBytes(t.dtype);
}

// The bytes a graph must move at least (see kUsage): what it reads of each input and
// writes of each output.
int64_t floorBytes(const ir::Graph &g, const std::vector<int64_t> &dims) {
  int64_t total = 0;
  for (int in : g.inputs) {
    int64_t sliced = 0;
    bool slicesAlone = true;
    for (size_t id = 0; id < g.nodes.size(); ++id)
      for (int o : g.nodes[id].operands) {
        if (o != in)
          continue;
        const ir::Node &n = g.nodes[id];
        bool slice = n.op == ir::Op::Slice || (n.op == ir::Op::InsertSlice && n.operands[0] == in);
        slicesAlone = slicesAlone && slice;
        if (n.op == ir::Op::Slice)
          sliced = std::max(sliced, valueBytes(g, static_cast<int>(id), dims));
      }
    total += slicesAlone ? sliced : valueBytes(g, in, dims);
  }
  for (int out : g.outputs) {
    const ir::Node &n = g.nodes[out];
    total +=
        n.op == ir::Op::InsertSlice ? valueBytes(g, n.operands[1], dims) : valueBytes(g, out, dims);
  }
  return total;
}

// One benchmark's JSON object, or an error.
Expected<std::string> runBench(const Bench &b, const Options &o, std::string &deviceName) {
  std::string path = o.root + "/" + b.file;
  auto text = tools::readInput(path);
  if (!text)
    return makeError(text.message() + " (run from the repository root or give --root)");
  auto parsed = ir::parseGraph(*text, path);
  if (!parsed)
    return parsed.error();
  const ir::Graph &ref = *parsed;
  auto dims = tools::parseDims(ref, b.dims);
  if (!dims)
    return makeError("error: " + std::string(b.name) + ": " + dims.message());
  ir::Graph g = ref;
  if (Status s = tools::runDefaultPipeline(g); s.failed())
    return s;
  tools::Runner runner{g};
  runtime::Executable exe;
  deviceName = "ref (reference interpreter)";
  if (Status s = tools::loadOnDevice(o.device, false, o.cuda, g, runner, exe, deviceName);
      s.failed())
    return s;
  std::vector<ir::HostTensor> in = ir::randomInputs(ref, *dims, 1);
  double us = 0;
  if (auto warm = runner.run(*dims, in, 1, us); !warm)
    return warm.error();
  if (auto timed = runner.run(*dims, in, o.iters, us); !timed)
    return timed.error();
  int64_t bytes = floorBytes(ref, *dims);
  double floorUs = bytes / (tools::profileFor(deviceName).bandwidthGBs * 1e3);
  char numbers[160];
  std::snprintf(numbers, sizeof numbers,
                ", \"median_us\": %.3f, \"floor_bytes\": %lld, \"floor_us\": %.3f, "
                "\"achieved_gbs\": %.1f}",
                us, static_cast<long long>(bytes), floorUs, us > 0 ? bytes / (us * 1e3) : 0.0);
  return "{\"name\": " + passes::jsonString(b.name) + ", \"graph\": " + passes::jsonString(b.file) +
         ", \"dims\": " + passes::jsonString(b.dims) +
         ", \"anchor\": " + passes::jsonString(b.anchor) + numbers;
}

int run(const Options &o) {
  if (int rc = tools::checkDevice(o.device, "kiln-bench"))
    return rc;
  // Each benchmark's entry goes out as soon as it is measured (the header, which names
  // the device, once the first has opened it), so that a run cut short keeps what it
  // finished.
  std::string deviceName;
  bool first = true;
  auto header = [&] {
    std::printf("{\"device\": %s, \"profile\": %s, \"iters\": %d, \"benchmarks\": [",
                passes::jsonString(deviceName).c_str(),
                passes::jsonString(tools::profileFor(deviceName).name).c_str(), o.iters);
  };
  for (const Bench *b : o.benches) {
    std::fprintf(stderr, "kiln-bench: %s\n", b->name);
    auto item = runBench(*b, o, deviceName);
    if (!item)
      return tools::fail(item.message());
    if (first)
      header();
    std::printf("%s%s", first ? "\n  " : ",\n  ", item->c_str());
    std::fflush(stdout);
    first = false;
  }
  if (first)
    header();
  std::printf("]}\n");
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  bool list = false;
  tools::ArgReader args(argc, argv);
  while (args.more()) {
    std::string_view a = args.next();
    std::string_view v;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--list") {
      list = true;
    } else if (args.value(a, "--device", v)) {
      o.device = v;
    } else if (args.value(a, "--root", v)) {
      o.root = v;
    } else if (args.count(a, "--iters", o.iters)) {
    } else if (tools::codeFlag(a, o.cuda)) {
    } else if (a.size() > 1 && a[0] == '-') {
      return tools::usageError("kiln-bench", "unknown option '" + std::string(a) + "'");
    } else {
      const Bench *found = nullptr;
      for (const Bench &b : kBenches)
        if (a == b.name)
          found = &b;
      if (!found)
        return tools::usageError("kiln-bench",
                                 "no benchmark named '" + std::string(a) + "' (--list names them)");
      o.benches.push_back(found);
    }
    if (!args.ok())
      return tools::usageError("kiln-bench", args.error());
  }
  if (list) {
    for (const Bench &b : kBenches)
      std::printf("%-26s %s%s%s\n", b.name, b.file, *b.dims ? " --dims " : "", b.dims);
    return 0;
  }
  if (o.benches.empty())
    for (const Bench &b : kBenches)
      o.benches.push_back(&b);
  return run(o);
}
