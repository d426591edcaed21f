// What every backend shares: buffer sizes and the checks made before a run.
#include "runtime/device.h"

#include <set>

namespace kiln::runtime {

int64_t invocations(const ExecKernel &k, std::span<const int64_t> dims) {
  int64_t n = 1;
  for (const ir::Dim &d : k.grid)
    n *= d.eval(dims);
  return (n + k.grain - 1) / k.grain;
}

int64_t maxInvocations(const ExecKernel &k, std::span<const ir::SymDim> dims) {
  int64_t n = 1;
  for (const ir::Dim &d : k.grid)
    n *= d.max(dims);
  return (n + k.grain - 1) / k.grain;
}

int64_t bufferBytes(const ExecBuffer &b, std::span<const int64_t> dims) {
  return ir::numElements(ir::evalShape(b.type.shape, dims)) * ir::dtypeBytes(b.type.dtype);
}

std::vector<int64_t> largestDims(std::span<const ir::SymDim> dims) {
  std::vector<int64_t> most;
  for (const ir::SymDim &d : dims)
    most.push_back(d.hi);
  return most;
}

std::vector<int> buffersWritten(std::span<const ExecKernel> kernels) {
  std::set<int> written;
  for (const ExecKernel &k : kernels)
    for (size_t p = 0; p < k.buffers.size(); ++p)
      if (k.writes.empty() || k.writes[p])
        written.insert(k.buffers[p]);
  return {written.begin(), written.end()};
}

Status checkArena(const Executable &exe) {
  std::vector<int64_t> most = largestDims(exe.dims);
  for (const ExecBuffer &b : exe.buffers)
    if (b.arenaOffset >= 0 &&
        (b.role != BufferRole::Temp || b.arenaOffset + bufferBytes(b, most) > exe.arenaBytes))
      return makeError("buffer " + b.name + " at arena offset " + std::to_string(b.arenaOffset) +
                       " is not a temporary within the " + std::to_string(exe.arenaBytes) +
                       "-byte arena");
  return Status::ok();
}

Status checkRunArgs(const Executable &exe, std::span<const int64_t> dims,
                    std::span<const Bytes> inputs) {
  if (dims.size() != exe.dims.size())
    return makeError("run: expected " + std::to_string(exe.dims.size()) + " dim values, got " +
                     std::to_string(dims.size()));
  for (size_t i = 0; i < dims.size(); ++i) {
    const ir::SymDim &d = exe.dims[i];
    if (dims[i] < d.lo || dims[i] > d.hi)
      return makeError("run: dim " + d.name + " = " + std::to_string(dims[i]) +
                       " is outside its range [" + std::to_string(d.lo) + ", " +
                       std::to_string(d.hi) + "]");
  }
  if (inputs.size() != exe.inputs.size())
    return makeError("run: expected " + std::to_string(exe.inputs.size()) + " inputs, got " +
                     std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ExecBuffer &b = exe.buffers[exe.inputs[i]];
    int64_t want = bufferBytes(b, dims);
    if (static_cast<int64_t>(inputs[i].size()) != want)
      return makeError("run: input " + std::to_string(i) + " (" + b.name + ": " +
                       ir::typeToString(b.type, exe.dims) + ") needs " + std::to_string(want) +
                       " bytes at these dims, got " + std::to_string(inputs[i].size()));
  }
  return Status::ok();
}

} // namespace kiln::runtime
