// PTX emitter: kernel IR to PTX through LLVM's NVPTX back end.
#pragma once

#include <string>
#include <string_view>

#include "compiler/kernel_ir.h"
#include "ir/support.h"

namespace kiln::compiler {

// Compiles `k` (verified here first) to a PTX module holding one `.entry` named `k.name`, for
// `smArch` ("sm_80", "sm_86", "sm_87", "sm_89" or "sm_90"). The entry takes one global pointer
// per buffer, then the dims pointer, and expects blocks of kWorkgroupSize threads. The same
// kernel always gives the same bytes. `quick`: a kernel without matrix ops takes a short
// LLVM pipeline and -O0 code generation instead of O3 (see optimize in emit_nvptx.cc).
Expected<std::string> emitPtx(const Kernel &k, std::string_view smArch, bool quick = false);

// Shared memory a kernel may declare statically (every sm_80+ GPU offers it).
constexpr int64_t kStaticSharedBytes = 48 * 1024;

// Bytes of dynamic shared memory a launch of k's PTX must provide: 0 where its shared
// arrays fit in kStaticSharedBytes and the PTX declares them, else all of them.
int64_t dynamicSharedBytes(const Kernel &k);

} // namespace kiln::compiler
