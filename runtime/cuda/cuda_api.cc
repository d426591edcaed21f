// The CUDA driver entry points kiln uses, loaded from libcuda.so.1 at run time.
#include "runtime/cuda/cuda_api.h"

#include <dlfcn.h>

namespace kiln::runtime::cu {

#define KILN_CU_STRING2(x) #x
#define KILN_CU_STRING(x) KILN_CU_STRING2(x)

Api::~Api() {
  if (library)
    dlclose(library);
}

Status Api::open() {
  library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return makeError(std::string("cuda: cannot open the CUDA driver libcuda.so.1 (") + dlerror() +
                     "); is an NVIDIA driver installed?");
#define KILN_CU_LOAD(name)                                                                         \
  name = reinterpret_cast<decltype(name)>(dlsym(library, KILN_CU_STRING(name)));                   \
  if (!name)                                                                                       \
    return makeError("cuda: the driver lacks " KILN_CU_STRING(name) " (too old a driver?)");
  KILN_CU_FUNCTIONS(KILN_CU_LOAD)
#undef KILN_CU_LOAD
  return check(cuInit(0), "cuInit");
}

Status Api::check(CUresult r, const std::string &what) const {
  if (r == CUDA_SUCCESS)
    return Status::ok();
  const char *name = nullptr;
  if (!cuGetErrorName || cuGetErrorName(r, &name) != CUDA_SUCCESS || !name)
    name = "an unknown error";
  return makeError("cuda: " + what + " failed: " + name);
}

} // namespace kiln::runtime::cu
