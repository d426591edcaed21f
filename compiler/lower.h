// Lowering of graph nodes to kernel IR (the walking skeleton: one pointwise kernel).
#pragma once

#include <vector>

#include "compiler/kernel_ir.h"
#include "ir/graph.h"
#include "ir/support.h"
#include "runtime/executable.h"

namespace kiln::compiler {

// What the targets a lowering serves have in common.
struct LowerOptions {
  // Every target has matrix units driven by the kernel IR's matrix ops, with 32
  // invocations a subgroup (PTX: tensor cores on sm_80 and later): f16 matmuls of more
  // rows than a GEMV's take them.
  bool matrixUnits = false;
};

// A graph split into kernels, with the buffers they use; code not yet emitted.
struct LoweredGraph {
  runtime::Executable exe;     // kernels carry buffers and grids, no code yet
  std::vector<Kernel> kernels; // parallel to exe.kernels
};

// Lowers a canonicalized graph. Today every computed node must be pointwise (unary,
// binary, select, cast, broadcast, splat constants) and all outputs must share one
// shape: the graph becomes one fused kernel. Anything else is refused with a
// diagnostic that names the ops no template lowers.
Expected<LoweredGraph> lowerGraph(const ir::Graph &g, const LowerOptions &opts = {});

} // namespace kiln::compiler
