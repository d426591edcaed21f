// The reference interpreter: runs any graph on the CPU in float64. It is the oracle.
//
// Semantics: float values are carried in float64 from op to op, with float64
// accumulation; they are rounded to their dtype only where the graph says so (inputs,
// constants and casts). Integer values wrap or saturate as their dtype does (i64 is
// exact up to 2^53). Max and min propagate NaN.
#pragma once

#include <span>
#include <vector>

#include "ir/graph.h"
#include "ir/host_tensor.h"
#include "ir/support.h"

namespace kiln::ir {

struct InterpretOptions {
  int64_t maxBytes = int64_t{16} << 30; // refuse graphs whose values would need more
};

// `dims` binds every symbolic dim of `g` (Graph::dims order); `inputs` follows
// Graph::inputs. Returns the outputs in Graph::outputs order.
Expected<std::vector<HostTensor>> interpret(const Graph &g, std::span<const int64_t> dims,
                                            std::span<const HostTensor> inputs,
                                            const InterpretOptions &opts = {});

// Checks that `dims` binds every dim of `g` within its range.
Status checkDims(const Graph &g, std::span<const int64_t> dims);

} // namespace kiln::ir
