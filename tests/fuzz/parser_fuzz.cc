// libFuzzer harness for the .kir parser: any input gives a graph or a one-line
// diagnostic; a graph prints to text that parses back to the same text, and the
// reference interpreter runs it (small ones) without crashing.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"

using namespace kiln::ir;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view text(reinterpret_cast<const char *>(data), size);
  auto g = parseGraph(text, "fuzz.kir");
  if (!g) {
    if (g.message().find('\n') != std::string::npos || !g.message().starts_with("fuzz.kir:"))
      std::abort();
    return 0;
  }
  std::string printed = printGraph(*g);
  auto again = parseGraph(printed, "printed.kir");
  if (!again || printGraph(*again) != printed)
    std::abort();

  std::vector<int64_t> dims;
  for (const SymDim &d : g->dims)
    dims.push_back(d.lo);
  std::vector<HostTensor> inputs;
  int64_t elements = 0;
  for (size_t i = 0; i < g->inputs.size(); ++i) {
    const TensorType &t = g->typeOf(g->inputs[i]);
    Extents e = evalShape(t.shape, dims);
    elements += numElements(e);
    if (elements > (1 << 16))
      return 0;
    inputs.push_back(randomTensor(t.dtype, e, i, 4));
  }
  InterpretOptions opts;
  opts.maxBytes = 1 << 22;
  (void)interpret(*g, dims, inputs, opts);
  return 0;
}
