// What a Vulkan device and its plans share: the loaded API, instance, device and queue.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/vulkan/vulkan_api.h"

namespace kiln::runtime::vk {

// Plans hold it too, so a plan stays usable after its Device object is gone.
struct Context {
  Api api;
  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t queueFamily = 0;
  VkPhysicalDeviceProperties properties{};
  VkPhysicalDeviceMemoryProperties memory{};
  uint32_t timestampBits = 0;   // 0: the queue cannot time dispatches
  bool storage16 = false;       // storageBuffer16BitAccess enabled
  bool subgroupShuffle = false; // compute shaders have subgroup shuffles

  std::atomic<int64_t> allocations{0}; // device memory allocations the plans hold

  std::mutex messagesMutex;
  std::vector<std::string> messages; // validation messages not yet reported

  Context() = default;
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;
  ~Context();

  // The recorded validation messages as one error, clearing them; ok when there were none.
  Status takeMessages(const std::string &during);
};

Expected<std::unique_ptr<Plan>> createPlan(std::shared_ptr<Context> ctx, const Executable &exe);

} // namespace kiln::runtime::vk
