// The CUDA backend when kiln was built without CUDA headers.
#include "runtime/cuda/cuda_device.h"

namespace kiln::runtime {

namespace {
Error notBuilt() {
  return makeError("cuda: this kiln was built without CUDA headers "
                   "(/usr/local/cuda/include/cuda.h), so it has no CUDA backend");
}
} // namespace

Expected<std::vector<CudaDeviceInfo>> listCudaDevices() { return notBuilt(); }
Expected<std::unique_ptr<Device>> openCudaDevice(int) { return notBuilt(); }

} // namespace kiln::runtime
