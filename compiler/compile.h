// The compile pipeline: a graph to an Executable with code for each requested target.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "compiler/kernel_ir.h"
#include "compiler/lower.h"
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
  // With matrix units on sm_90: the warpgroup tiles (wgmma) where their operands come by
  // asynchronous copies. Opt-in: on an H100 the 4096^3 f16 matmul took 750 us with them,
  // against 413 us measured with mma.sync on an H200 (docs/codegen.md).
  bool warpgroupMatrix = false;
  // PTX of the kernels without matrix ops through a short LLVM pipeline and -O0 code
  // generation rather than O3 (emitPtx's `quick`): the decoder's PTX 3-4 times
  // sooner, not yet timed on a GPU.
  bool quickPtx = false;
};

// The lowering these options ask for: matrix units where asked, and the warpgroup tiles
// where asked too and the target is sm_90 (the one that has them).
LowerOptions lowerOptionsFor(const CompileOptions &opts);

// Runs `emit(i)` for i in [0, count) on up to one thread per core: kernels compile
// independently (each in an LLVM context of its own), and the results keep their order.
void forEachKernel(size_t count, const std::function<void(size_t)> &emit);

// For each kernel, the index of the first kernel of the same code (its own index when it
// is the first): the same body, guard, dims, shared arrays and buffers' element types and
// access, whatever the names. A model's layers lower to kernels of the same code, which
// compile to PTX once.
std::vector<size_t> firstOfSameCode(const std::vector<Kernel> &kernels);

// The PTX of kernel `from` as the PTX of a kernel of the same code named `to`: LLVM names
// the entry and its parameters after the kernel, and nothing else.
std::string renamePtx(const std::string &ptx, const std::string &from, const std::string &to);

// Lowers `g` (already through the pass pipeline) and emits every kernel for each target,
// kernels in parallel, each distinct code once for PTX.
Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts);

} // namespace kiln::compiler
