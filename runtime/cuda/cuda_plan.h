// A CUDA plan: an Executable's PTX loaded as modules, its buffers in device memory.
#pragma once

#include <memory>

#include "runtime/cuda/cuda_context.h"
#include "runtime/device.h"

namespace kiln::runtime {

Expected<std::unique_ptr<Plan>> loadCudaPlan(std::shared_ptr<cu::Context> ctx,
                                             const Executable &exe);

} // namespace kiln::runtime
