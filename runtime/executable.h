// The compiled form of a graph that a runtime replays: kernels per target, their buffers and dims.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/types.h"

namespace kiln::runtime {

// Zeroed: a kernel's own memory across runs (a split GEMV's tile counters), zero when the
// plan loads; the kernel that uses it leaves it zero again when it ends.
enum class BufferRole : uint8_t { Input, Param, Output, Temp, Zeroed };

struct ExecBuffer {
  std::string name;
  ir::TensorType type; // storage dtype and shape (symbolic dims allowed)
  BufferRole role = BufferRole::Temp;
  // A Temp's bytes within the plan's arena, which it shares with temporaries of other
  // waves (the passes' memory plan); -1: memory of its own.
  int64_t arenaOffset = -1;
};

struct ExecKernel {
  std::string name;
  std::vector<uint32_t> spirv; // empty when not built for Vulkan
  std::string ptx;             // empty when not built for CUDA
  std::vector<int> buffers;    // Executable::buffers index of each kernel parameter, in order
  std::vector<ir::Dim> grid;   // grid points: the product of these dims
  int64_t grain = 1;           // grid points per invocation; workgroups of 256 invocations
  std::vector<bool> writes;    // per parameter: whether the kernel writes it (empty: any may)
  int64_t dynamicShared = 0;   // bytes of shared memory a CUDA launch provides (0: the PTX's own)
};

// A barrier of a queue that runs an Executable's kernels in order: it sits before kernel
// `before`, waits for every earlier kernel, and makes their writes to `buffers` visible.
struct QueueBarrier {
  int before = 0;
  std::vector<int> buffers; // Executable::buffers indices, ascending
};

struct Executable {
  std::vector<ir::SymDim> dims; // the dims buffer holds their values as int32, in this order
  std::vector<ExecBuffer> buffers;
  std::vector<int> inputs;  // buffer indices the caller provides (inputs and params), in order
  std::vector<int> outputs; // buffer indices the caller reads back, in order
  std::vector<ExecKernel> kernels; // run in this order, each after those it conflicts with
  // Where a queue that runs the kernels in order (Vulkan) needs barriers, ascending: the
  // compiler places them from the passes' queue form (passes/schedule.h). None (an
  // Executable built by hand): a barrier before every kernel but the first.
  std::optional<std::vector<QueueBarrier>> barriers;
  int64_t arenaBytes = 0; // at the largest dims; buffers with an arenaOffset lie within
};

} // namespace kiln::runtime
