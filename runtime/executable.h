// The compiled form of a graph that a runtime replays: kernels per target, their buffers and dims.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/types.h"

namespace kiln::runtime {

enum class BufferRole : uint8_t { Input, Param, Output, Temp };

struct ExecBuffer {
  std::string name;
  ir::TensorType type; // storage dtype and shape (symbolic dims allowed)
  BufferRole role = BufferRole::Temp;
};

struct ExecKernel {
  std::string name;
  std::vector<uint32_t> spirv; // empty when not built for Vulkan
  std::string ptx;             // empty when not built for CUDA
  std::vector<int> buffers;    // Executable::buffers index of each kernel parameter, in order
  std::vector<ir::Dim> grid;   // grid points: the product of these dims
  int64_t grain = 1;           // grid points per invocation; workgroups of 256 invocations
};

struct Executable {
  std::vector<ir::SymDim> dims; // the dims buffer holds their values as int32, in this order
  std::vector<ExecBuffer> buffers;
  std::vector<int> inputs;  // buffer indices the caller provides (inputs and params), in order
  std::vector<int> outputs; // buffer indices the caller reads back, in order
  std::vector<ExecKernel> kernels; // run in this order, each after the previous finished
};

} // namespace kiln::runtime
