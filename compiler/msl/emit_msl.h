// MSL for Metal from a kernel's SPIR-V, through SPIRV-Cross (as MoltenVK and IREE do).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/support.h"

namespace kiln::compiler {

// Metal Shading Language 2.1 source of one kernel's SPIR-V module (kiln's own, from
// emitSpirv), its kernel function named `name`. Buffer i of the kernel becomes
// [[buffer(i)]], the dims buffer the one after; threadgroups have 256 threads.
Expected<std::string> emitMsl(const std::vector<uint32_t> &spirv, const std::string &name);

} // namespace kiln::compiler
