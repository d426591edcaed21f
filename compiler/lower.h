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
  // With matrix units, the warpgroup matrix ops too (sm_90a's wgmma, PTX on sm_90): the
  // tensor-core tiles whose operands travel by asynchronous copies take them.
  bool warpgroupMatrix = false;
};

// A graph split into kernels, with the buffers they use; code not yet emitted.
struct LoweredGraph {
  runtime::Executable exe;     // kernels carry buffers and grids, no code yet
  std::vector<Kernel> kernels; // parallel to exe.kernels
  // Per kernel: the first graph node it computes, in program order; -1 for a kernel that
  // copies a returned view or source into its output buffer (these come last).
  std::vector<int> firstNodes;
  // Per graph node: the Executable buffer that holds its value between kernels, or -1.
  std::vector<int> bufferOfNode;
};

// Lowers a canonicalized graph: each kernel of the fusion pass (a computed node outside
// them is a kernel alone) to the template of its anchor (pointwise, row reduction,
// contraction, decode attention; docs/codegen.md). A kernel that no template lowers is
// refused with a diagnostic that names its ops.
Expected<LoweredGraph> lowerGraph(const ir::Graph &g, const LowerOptions &opts = {});

} // namespace kiln::compiler
