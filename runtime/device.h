// The Device and Plan interfaces every backend implements.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ir/support.h"
#include "runtime/executable.h"

namespace kiln::runtime {

// Host bytes of one buffer, in its storage dtype, row-major and contiguous.
using Bytes = std::vector<uint8_t>;

struct RunStats {
  double deviceMicros = 0; // time of the kernels alone, as the device measured it (0 if unknown)
  double hostMicros = 0;   // submit to completion, as the host saw it
  int64_t kernels = 0;     // kernels that had work at these dims
  int64_t barriers = 0;    // barriers the device went through between (and after) them
  int64_t submits = 0;     // queue submissions (Vulkan) or kernel launches (CUDA)
  int64_t rerecords = 0;   // command buffers this run had to record again
  // Per kernel, where the device measures them: when it began and ended, in µs from
  // the start of the run (a kernel begins once the barrier before it has passed, and
  // ends once it and every kernel before it have finished). Empty where unknown.
  std::vector<std::pair<double, double>> kernelSpans;
};

// An Executable loaded on a device, ready to run at any dims within their ranges.
class Plan {
public:
  virtual ~Plan() = default;
  // `dims` binds every symbolic dim (Executable::dims order); `inputs` follows
  // Executable::inputs; `outputs` is resized to follow Executable::outputs.
  virtual Status run(std::span<const int64_t> dims, std::span<const Bytes> inputs,
                     std::vector<Bytes> &outputs, RunStats *stats) = 0;
};

class Device {
public:
  virtual ~Device() = default;
  virtual std::string describe() const = 0;
  virtual Expected<std::unique_ptr<Plan>> load(const Executable &exe) = 0;
  // Device memory allocations its plans hold now, for leak checks; -1 where not counted.
  virtual int64_t liveAllocations() const { return -1; }
};

// Invocations of a kernel at bound dims: its grid points over its grain, rounded up.
int64_t invocations(const ExecKernel &k, std::span<const int64_t> dims);
// The most invocations a kernel can need, at the largest value of each dim.
int64_t maxInvocations(const ExecKernel &k, std::span<const ir::SymDim> dims);

// Byte size of a buffer at bound dims.
int64_t bufferBytes(const ExecBuffer &b, std::span<const int64_t> dims);
// Each dim at the largest value of its range, where every buffer is sized.
std::vector<int64_t> largestDims(std::span<const ir::SymDim> dims);
// The buffers any of `kernels` may write (all of a kernel's that states no writes),
// ascending.
std::vector<int> buffersWritten(std::span<const ExecKernel> kernels);

// An error naming the first buffer with an arena offset that is not a temporary lying
// within the executable's arena at the largest dims.
Status checkArena(const Executable &exe);

// The checks every Plan::run makes first: one value per dim, within its range; one input
// per Executable::inputs entry, of its byte size at those dims.
Status checkRunArgs(const Executable &exe, std::span<const int64_t> dims,
                    std::span<const Bytes> inputs);

} // namespace kiln::runtime
