// What a CUDA device and its plans share: the driver table and the device's primary
// context.
#pragma once

#include <string>

#include "runtime/cuda/cuda_api.h"

namespace kiln::runtime::cu {

struct Context {
  Api api;
  CUdevice device = 0;
  CUcontext context = nullptr;
  std::string name, arch;

  Context() = default;
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;
  ~Context() {
    if (context)
      api.cuDevicePrimaryCtxRelease(device);
  }
  // Makes the context current on the calling thread.
  Status enter() const { return api.check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent"); }
};

} // namespace kiln::runtime::cu
