// The Vulkan backend: opens a device through the run-time-loaded loader.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/support.h"
#include "runtime/device.h"

namespace kiln::runtime {

struct VulkanDeviceInfo {
  std::string name;
  std::string type; // "discrete", "integrated", "virtual", "cpu" or "other"
  // What kernels may use there: "subgroup N, shared N KiB", then those it has of "f16"
  // (arithmetic), "16-bit storage", "cooperative matrix" (VK_KHR_cooperative_matrix),
  // "buffer device address" and "timestamps", comma-separated.
  std::string capabilities;
};

// The physical devices the loader reports, in its order (the order `index` counts in).
Expected<std::vector<VulkanDeviceInfo>> listVulkanDevices();

// index -1 picks the best device: discrete GPU, then integrated, then CPU (lavapipe).
// With KILN_VK_VALIDATE=1 and VK_LAYER_KHRONOS_validation installed, every validation
// message is recorded and fails the load or run it happened in; describe() then says
// "validation on".
Expected<std::unique_ptr<Device>> openVulkanDevice(int index = -1);

} // namespace kiln::runtime
