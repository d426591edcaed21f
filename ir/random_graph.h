// Seeded random graphs of mixed ops, for property tests and benchmarks (kiln-gen).
#pragma once

#include <cstdint>

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::ir {

struct RandomGraphOptions {
  int nodes = 50;    // nodes in the graph, inputs and constants included
  uint64_t seed = 1; // the same options always give the same graph
  bool symbolicDims = true;
  // Largest tensor, in elements at the dims' upper bounds: small by default so that
  // the reference interpreter runs a graph of hundreds of nodes in milliseconds.
  int64_t maxElements = 4096;
  // Only what the kernel templates lower today: float reductions over one axis (for
  // differential tests of code generation).
  bool loweredOpsOnly = false;
};

// A verified graph of exactly `o.nodes` nodes. Every value with no reader is an
// output, so nothing is dead. Gather indices are always graph inputs (bounded by the
// table's rows in randomInputs), and insert_slice only writes into a fresh input that
// nothing else reads, so the graph passes the in-place dependency check.
Expected<Graph> randomGraph(const RandomGraphOptions &o);

} // namespace kiln::ir
