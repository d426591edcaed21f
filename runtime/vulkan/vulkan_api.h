// The Vulkan entry points kiln uses, loaded from libvulkan.so.1 at run time.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <string>

#include "ir/support.h"

namespace kiln::runtime::vk {

// Every entry point, once: X(level, name). Global ones come from vkGetInstanceProcAddr
// with no instance, Instance ones with the instance, Device ones from vkGetDeviceProcAddr.
#define KILN_VK_FUNCTIONS(X)                                                                       \
  X(Global, vkCreateInstance)                                                                      \
  X(Global, vkEnumerateInstanceLayerProperties)                                                    \
  X(Global, vkEnumerateInstanceExtensionProperties)                                                \
  X(Instance, vkDestroyInstance)                                                                   \
  X(Instance, vkEnumeratePhysicalDevices)                                                          \
  X(Instance, vkGetPhysicalDeviceProperties)                                                       \
  X(Instance, vkGetPhysicalDeviceFeatures2)                                                        \
  X(Instance, vkGetPhysicalDeviceProperties2)                                                      \
  X(Instance, vkGetPhysicalDeviceQueueFamilyProperties)                                            \
  X(Instance, vkGetPhysicalDeviceMemoryProperties)                                                 \
  X(Instance, vkEnumerateDeviceExtensionProperties)                                                \
  X(Instance, vkCreateDevice)                                                                      \
  X(Instance, vkGetDeviceProcAddr)                                                                 \
  X(Instance, vkCreateDebugUtilsMessengerEXT)                                                      \
  X(Instance, vkDestroyDebugUtilsMessengerEXT)                                                     \
  X(Device, vkDestroyDevice)                                                                       \
  X(Device, vkGetDeviceQueue)                                                                      \
  X(Device, vkCreateBuffer)                                                                        \
  X(Device, vkDestroyBuffer)                                                                       \
  X(Device, vkGetBufferMemoryRequirements)                                                         \
  X(Device, vkAllocateMemory)                                                                      \
  X(Device, vkFreeMemory)                                                                          \
  X(Device, vkBindBufferMemory)                                                                    \
  X(Device, vkMapMemory)                                                                           \
  X(Device, vkUnmapMemory)                                                                         \
  X(Device, vkCreateShaderModule)                                                                  \
  X(Device, vkDestroyShaderModule)                                                                 \
  X(Device, vkCreateDescriptorSetLayout)                                                           \
  X(Device, vkDestroyDescriptorSetLayout)                                                          \
  X(Device, vkCreatePipelineLayout)                                                                \
  X(Device, vkDestroyPipelineLayout)                                                               \
  X(Device, vkCreateComputePipelines)                                                              \
  X(Device, vkCreatePipelineCache)                                                                 \
  X(Device, vkDestroyPipelineCache)                                                                \
  X(Device, vkGetPipelineCacheData)                                                                \
  X(Device, vkDestroyPipeline)                                                                     \
  X(Device, vkCreateDescriptorPool)                                                                \
  X(Device, vkDestroyDescriptorPool)                                                               \
  X(Device, vkAllocateDescriptorSets)                                                              \
  X(Device, vkUpdateDescriptorSets)                                                                \
  X(Device, vkCreateCommandPool)                                                                   \
  X(Device, vkDestroyCommandPool)                                                                  \
  X(Device, vkAllocateCommandBuffers)                                                              \
  X(Device, vkBeginCommandBuffer)                                                                  \
  X(Device, vkEndCommandBuffer)                                                                    \
  X(Device, vkCmdBindPipeline)                                                                     \
  X(Device, vkCmdBindDescriptorSets)                                                               \
  X(Device, vkCmdDispatchIndirect)                                                                 \
  X(Device, vkCmdPipelineBarrier)                                                                  \
  X(Device, vkCmdCopyBuffer)                                                                       \
  X(Device, vkCmdUpdateBuffer)                                                                     \
  X(Device, vkCmdFillBuffer)                                                                       \
  X(Device, vkCmdResetQueryPool)                                                                   \
  X(Device, vkCmdWriteTimestamp)                                                                   \
  X(Device, vkCreateQueryPool)                                                                     \
  X(Device, vkDestroyQueryPool)                                                                    \
  X(Device, vkGetQueryPoolResults)                                                                 \
  X(Device, vkCreateFence)                                                                         \
  X(Device, vkDestroyFence)                                                                        \
  X(Device, vkResetFences)                                                                         \
  X(Device, vkWaitForFences)                                                                       \
  X(Device, vkQueueSubmit)

enum class Level { Global, Instance, Device };

// Function pointers; null until loaded (the debug-utils ones stay null without the layer).
struct Api {
#define KILN_VK_MEMBER(level, name) PFN_##name name = nullptr;
  KILN_VK_FUNCTIONS(KILN_VK_MEMBER)
#undef KILN_VK_MEMBER
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
  void *library = nullptr; // the dlopen handle

  Api() = default;
  Api(const Api &) = delete;
  Api &operator=(const Api &) = delete;
  ~Api();

  // Opens the loader and fills the Global entries.
  Status openLoader();
  // Fills the entries of one level; fails naming the first entry point that is missing.
  Status loadInstance(VkInstance instance);
  Status loadDevice(VkDevice device);
};

// A Vulkan struct, zeroed but for its sType.
template <class T> T zeroed(VkStructureType type) {
  T v{};
  v.sType = type;
  return v;
}

// "vkCreateDevice failed: VK_ERROR_OUT_OF_HOST_MEMORY"-style messages.
std::string resultName(VkResult r);
Status check(VkResult r, const char *what);

} // namespace kiln::runtime::vk
