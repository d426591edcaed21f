// The compile pipeline: a graph to an Executable with code for each requested target.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "ir/graph.h"
#include "ir/support.h"
#include "runtime/executable.h"

namespace kiln::compiler {

struct CompileOptions {
  bool spirv = true;
  bool ptx = false;
  std::string smArch = "sm_80";
  // Lower f16 matmuls for tensor cores (the kernels then compile for PTX only).
  bool matrixUnits = false;
};

// Runs `emit(i)` for i in [0, count) on up to one thread per core: kernels compile
// independently (each in an LLVM context of its own), and the results keep their order.
void forEachKernel(size_t count, const std::function<void(size_t)> &emit);

// Lowers `g` (already through the pass pipeline) and emits every kernel for each target,
// kernels in parallel.
Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts);

} // namespace kiln::compiler
