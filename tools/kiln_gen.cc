// kiln-gen: prints a seeded random .kir graph, for property tests and benchmarks.
#include <charconv>
#include <cstdio>
#include <optional>

#include "ir/printer.h"
#include "ir/random_graph.h"
#include "tools/tool_common.h"

using namespace kiln;

namespace {

constexpr const char *kUsage = R"(usage: kiln-gen --nodes N [options]

Prints a random, verified .kir graph of exactly N nodes (inputs included): mixed
pointwise ops, casts, reductions, normalizations, matmuls, rope, gather, layout ops
and in-place inserts, with branches and symbolic dims. The same options always give
the same graph.

options:
  --nodes N           nodes in the graph, 1 to 1000000 (required)
  --seed S            seed of the graph (default 1)
  --no-symbolic       static dims only
  --lowered-ops-only  only what kiln's code generation lowers today (float
                      reductions over one axis)
  --max-elements E    largest tensor in elements, at the dims' upper bounds
                      (default 4096, at least 64)
  -o FILE             write the graph to FILE (default: stdout)
  -h, --help          print this help
)";

constexpr int64_t kMaxNodes = 1000000;

std::optional<uint64_t> parseCount(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

} // namespace

int main(int argc, char **argv) {
  ir::RandomGraphOptions o;
  bool haveNodes = false;
  std::string output;
  tools::ArgReader args(argc, argv);
  while (args.more()) {
    std::string_view a = args.next();
    std::string_view v;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (args.value(a, "--nodes", v)) {
      auto n = parseCount(v);
      if (args.ok() && (!n || *n < 1 || *n > kMaxNodes))
        return tools::usageError("kiln-gen", "--nodes needs a count from 1 to 1000000, got '" +
                                                 std::string(v) + "'");
      o.nodes = static_cast<int>(n.value_or(0));
      haveNodes = true;
    } else if (args.value(a, "--seed", v)) {
      auto s = parseCount(v);
      if (args.ok() && !s)
        return tools::usageError("kiln-gen", "--seed needs a non-negative integer, got '" +
                                                 std::string(v) + "'");
      o.seed = s.value_or(0);
    } else if (a == "--no-symbolic") {
      o.symbolicDims = false;
    } else if (a == "--lowered-ops-only") {
      o.loweredOpsOnly = true;
    } else if (args.value(a, "--max-elements", v)) {
      auto e = parseCount(v);
      if (args.ok() && (!e || *e < 64 || *e > (uint64_t{1} << 40)))
        return tools::usageError("kiln-gen", "--max-elements needs a count from 64 to 2^40, got '" +
                                                 std::string(v) + "'");
      o.maxElements = static_cast<int64_t>(e.value_or(0));
    } else if (args.value(a, "-o", v)) {
      output = v;
    } else {
      return tools::usageError("kiln-gen", "unknown argument '" + std::string(a) + "'");
    }
    if (!args.ok())
      return tools::usageError("kiln-gen", args.error());
  }
  if (!haveNodes)
    return tools::usageError("kiln-gen", "--nodes is required");
  auto g = ir::randomGraph(o);
  if (!g)
    return tools::fail(g.message());
  if (Status s = tools::writeOutput(output, ir::printGraph(*g)); s.failed())
    return tools::fail(s.message());
  return 0;
}
