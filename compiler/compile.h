// The compile pipeline: a graph to an Executable with code for each requested target.
#pragma once

#include <string>

#include "ir/graph.h"
#include "ir/support.h"
#include "runtime/executable.h"

namespace kiln::compiler {

struct CompileOptions {
  bool spirv = true;
  bool ptx = false;
  std::string smArch = "sm_80";
};

// Lowers `g` (already through the pass pipeline) and emits every kernel for each target.
Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts);

} // namespace kiln::compiler
