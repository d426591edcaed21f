// Kernel IR → SPIR-V 1.3 compute shaders for Vulkan 1.1, plus SPIRV-Tools checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compiler/kernel_ir.h"
#include "ir/support.h"

namespace kiln::compiler {

// The entry point every emitted module names; the runtime creates pipelines with it.
inline constexpr const char *kSpirvEntryPoint = "main";

// Emits `k` (assumed verified) as a GLCompute shader with LocalSize kWorkgroupSize x 1 x 1.
// Buffer i is a storage buffer at set 0, binding i; the dims buffer (int32) is binding N.
// The output is the same bytes for the same kernel. With KILN_DUMP_SPIRV=1 in the
// environment, the disassembly is printed to stderr.
Expected<std::vector<uint32_t>> emitSpirv(const Kernel &k);

// SPIRV-Tools' text form (friendly names), or an error line when the words do not parse.
std::string disassembleSpirv(const std::vector<uint32_t> &words);

// SPIRV-Tools' validator for the Vulkan 1.1 environment.
Status validateSpirv(const std::vector<uint32_t> &words);

} // namespace kiln::compiler
