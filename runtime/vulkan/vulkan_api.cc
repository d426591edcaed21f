// The Vulkan entry points kiln uses, loaded from libvulkan.so.1 at run time.
#include "runtime/vulkan/vulkan_api.h"

#include <dlfcn.h>

namespace kiln::runtime::vk {

namespace {
// Debug utils come from the validation layer and are optional.
bool isOptional(const char *name) {
  return std::string_view(name).ends_with("DebugUtilsMessengerEXT");
}
} // namespace

Api::~Api() {
  if (library)
    dlclose(library);
}

Status Api::openLoader() {
  library = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return makeError(std::string("vulkan: cannot open the Vulkan loader libvulkan.so.1 (") +
                     dlerror() + "); install a Vulkan loader (Debian: libvulkan1)");
  vkGetInstanceProcAddr =
      reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(library, "vkGetInstanceProcAddr"));
  if (!vkGetInstanceProcAddr)
    return makeError("vulkan: libvulkan.so.1 has no vkGetInstanceProcAddr");
#define KILN_VK_LOAD_GLOBAL(level, name)                                                           \
  if (Level::level == Level::Global) {                                                             \
    name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(nullptr, #name));                    \
    if (!name)                                                                                     \
      return makeError("vulkan: the loader lacks " #name);                                         \
  }
  KILN_VK_FUNCTIONS(KILN_VK_LOAD_GLOBAL)
#undef KILN_VK_LOAD_GLOBAL
  return Status::ok();
}

Status Api::loadInstance(VkInstance instance) {
#define KILN_VK_LOAD_INSTANCE(level, name)                                                         \
  if (Level::level == Level::Instance) {                                                           \
    name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(instance, #name));                   \
    if (!name && !isOptional(#name))                                                               \
      return makeError("vulkan: the instance lacks " #name " (Vulkan 1.1 is required)");           \
  }
  KILN_VK_FUNCTIONS(KILN_VK_LOAD_INSTANCE)
#undef KILN_VK_LOAD_INSTANCE
  return Status::ok();
}

Status Api::loadDevice(VkDevice device) {
#define KILN_VK_LOAD_DEVICE(level, name)                                                           \
  if (Level::level == Level::Device) {                                                             \
    name = reinterpret_cast<PFN_##name>(vkGetDeviceProcAddr(device, #name));                       \
    if (!name)                                                                                     \
      return makeError("vulkan: the device lacks " #name);                                         \
  }
  KILN_VK_FUNCTIONS(KILN_VK_LOAD_DEVICE)
#undef KILN_VK_LOAD_DEVICE
  return Status::ok();
}

std::string resultName(VkResult r) {
  switch (r) {
#define KILN_VK_RESULT(name)                                                                       \
  case name:                                                                                       \
    return #name;
    KILN_VK_RESULT(VK_SUCCESS)
    KILN_VK_RESULT(VK_NOT_READY)
    KILN_VK_RESULT(VK_TIMEOUT)
    KILN_VK_RESULT(VK_INCOMPLETE)
    KILN_VK_RESULT(VK_ERROR_OUT_OF_HOST_MEMORY)
    KILN_VK_RESULT(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    KILN_VK_RESULT(VK_ERROR_INITIALIZATION_FAILED)
    KILN_VK_RESULT(VK_ERROR_DEVICE_LOST)
    KILN_VK_RESULT(VK_ERROR_MEMORY_MAP_FAILED)
    KILN_VK_RESULT(VK_ERROR_LAYER_NOT_PRESENT)
    KILN_VK_RESULT(VK_ERROR_EXTENSION_NOT_PRESENT)
    KILN_VK_RESULT(VK_ERROR_FEATURE_NOT_PRESENT)
    KILN_VK_RESULT(VK_ERROR_INCOMPATIBLE_DRIVER)
    KILN_VK_RESULT(VK_ERROR_TOO_MANY_OBJECTS)
    KILN_VK_RESULT(VK_ERROR_UNKNOWN)
#undef KILN_VK_RESULT
  default:
    return "VkResult " + std::to_string(static_cast<int>(r));
  }
}

Status check(VkResult r, const char *what) {
  if (r == VK_SUCCESS)
    return Status::ok();
  return makeError(std::string("vulkan: ") + what + " failed: " + resultName(r));
}

} // namespace kiln::runtime::vk
