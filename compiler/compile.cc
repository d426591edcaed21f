// The compile pipeline: lower, then run each target's emitter on every kernel.
#include "compiler/compile.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "compiler/lower.h"
#include "compiler/nvptx/emit_nvptx.h"
#include "compiler/spirv/emit_spirv.h"

namespace kiln::compiler {

void forEachKernel(size_t count, const std::function<void(size_t)> &emit) {
  size_t threads = std::min<size_t>(count, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1) {
    for (size_t i = 0; i < count; ++i)
      emit(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < count;)
        emit(i);
    });
  for (std::thread &t : pool)
    t.join();
}

Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts) {
  auto lowered = lowerGraph(g, {opts.matrixUnits});
  if (!lowered)
    return lowered.error();
  runtime::Executable exe = std::move(lowered->exe);
  std::vector<Status> failed(lowered->kernels.size());
  forEachKernel(lowered->kernels.size(), [&](size_t i) {
    const Kernel &k = lowered->kernels[i];
    if (opts.spirv) {
      auto words = emitSpirv(k);
      if (!words) {
        failed[i] = makeError("error: kernel " + k.name + ": SPIR-V: " + words.message());
        return;
      }
      exe.kernels[i].spirv = std::move(*words);
    }
    if (opts.ptx) {
      auto ptx = emitPtx(k, opts.smArch);
      if (!ptx) {
        failed[i] = makeError("error: kernel " + k.name + ": PTX: " + ptx.message());
        return;
      }
      exe.kernels[i].ptx = std::move(*ptx);
      exe.kernels[i].dynamicShared = dynamicSharedBytes(k);
    }
  });
  for (const Status &s : failed) // the first kernel's error, whichever thread saw it
    if (s.failed())
      return s;
  return exe;
}

} // namespace kiln::compiler
