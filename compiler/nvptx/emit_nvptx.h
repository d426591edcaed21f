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
// kernel always gives the same bytes.
Expected<std::string> emitPtx(const Kernel &k, std::string_view smArch);

} // namespace kiln::compiler
