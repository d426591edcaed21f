// The CUDA driver API entry points kiln uses, loaded from libcuda.so.1 at run time, so
// that one binary starts on machines without a GPU and says so.
#pragma once

#include <cuda.h>
#include <string>

#include "ir/support.h"

namespace kiln::runtime::cu {

// Names go through cuda.h's macros (cuMemAlloc is cuMemAlloc_v2), so the members, the
// calls and the symbols looked up all get the versioned names.
#define KILN_CU_FUNCTIONS(X)                                                                       \
  X(cuInit)                                                                                        \
  X(cuGetErrorName)                                                                                \
  X(cuDeviceGetCount)                                                                              \
  X(cuDeviceGet)                                                                                   \
  X(cuDeviceGetName)                                                                               \
  X(cuDeviceGetAttribute)                                                                          \
  X(cuDevicePrimaryCtxRetain)                                                                      \
  X(cuDevicePrimaryCtxRelease)                                                                     \
  X(cuCtxSetCurrent)                                                                               \
  X(cuCtxSynchronize)                                                                              \
  X(cuModuleLoadDataEx)                                                                            \
  X(cuModuleUnload)                                                                                \
  X(cuModuleGetFunction)                                                                           \
  X(cuFuncSetAttribute)                                                                            \
  X(cuMemAlloc)                                                                                    \
  X(cuMemFree)                                                                                     \
  X(cuMemsetD8)                                                                                    \
  X(cuMemcpyHtoD)                                                                                  \
  X(cuMemcpyDtoH)                                                                                  \
  X(cuStreamCreate)                                                                                \
  X(cuStreamDestroy)                                                                               \
  X(cuStreamSynchronize)                                                                           \
  X(cuEventCreate)                                                                                 \
  X(cuEventDestroy)                                                                                \
  X(cuEventRecord)                                                                                 \
  X(cuEventElapsedTime)                                                                            \
  X(cuLaunchKernel)

struct Api {
  void *library = nullptr;
#define KILN_CU_MEMBER(name) decltype(&::name) name = nullptr;
  KILN_CU_FUNCTIONS(KILN_CU_MEMBER)
#undef KILN_CU_MEMBER

  Api() = default;
  Api(const Api &) = delete;
  Api &operator=(const Api &) = delete;
  ~Api();

  // Opens libcuda.so.1, looks up every entry point and calls cuInit.
  Status open();
  // "what: CUDA_ERROR_NAME" for a failed call, ok for CUDA_SUCCESS.
  Status check(CUresult r, const std::string &what) const;
};

} // namespace kiln::runtime::cu
