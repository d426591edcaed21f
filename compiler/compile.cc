// The compile pipeline: lower, then run each target's emitter on every kernel.
#include "compiler/compile.h"

#include "compiler/lower.h"
#include "compiler/nvptx/emit_nvptx.h"
#include "compiler/spirv/emit_spirv.h"

namespace kiln::compiler {

Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts) {
  auto lowered = lowerGraph(g);
  if (!lowered)
    return lowered.error();
  runtime::Executable exe = std::move(lowered->exe);
  for (size_t i = 0; i < lowered->kernels.size(); ++i) {
    const Kernel &k = lowered->kernels[i];
    if (opts.spirv) {
      auto words = emitSpirv(k);
      if (!words)
        return makeError("error: kernel " + k.name + ": SPIR-V: " + words.message());
      exe.kernels[i].spirv = std::move(*words);
    }
    if (opts.ptx) {
      auto ptx = emitPtx(k, opts.smArch);
      if (!ptx)
        return makeError("error: kernel " + k.name + ": PTX: " + ptx.message());
      exe.kernels[i].ptx = std::move(*ptx);
    }
  }
  return exe;
}

} // namespace kiln::compiler
