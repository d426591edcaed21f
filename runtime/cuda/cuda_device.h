// The CUDA backend: devices through the driver API, loaded at run time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/support.h"
#include "runtime/device.h"

namespace kiln::runtime {

struct CudaDeviceInfo {
  std::string name;
  std::string arch; // "sm_90" for compute capability 9.0
};

// The devices the driver reports, in its order; an error when there is no driver (or
// kiln was built without CUDA headers).
Expected<std::vector<CudaDeviceInfo>> listCudaDevices();

// Device `index` (-1: the first). Plans run their kernels in order on one stream, from
// the PTX in each ExecKernel; buffers are device memory sized for the largest dims.
Expected<std::unique_ptr<Device>> openCudaDevice(int index = -1);

} // namespace kiln::runtime
