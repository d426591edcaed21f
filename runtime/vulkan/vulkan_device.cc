// The Vulkan backend: opens a device through the run-time-loaded loader.
#include "runtime/vulkan/vulkan_device.h"

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "runtime/vulkan/vulkan_context.h"

namespace kiln::runtime {

using vk::check;
using vk::Context;
using vk::zeroed;

namespace vk {

Context::~Context() {
  if (device)
    api.vkDestroyDevice(device, nullptr);
  if (messenger)
    api.vkDestroyDebugUtilsMessengerEXT(instance, messenger, nullptr);
  if (instance)
    api.vkDestroyInstance(instance, nullptr);
}

Status Context::takeMessages(const std::string &during) {
  std::lock_guard<std::mutex> lock(messagesMutex);
  if (messages.empty())
    return Status::ok();
  std::string all = "vulkan validation (" + during + "): " + messages.front();
  if (messages.size() > 1)
    all += " (and " + std::to_string(messages.size() - 1) + " more)";
  messages.clear();
  return makeError(all);
}

} // namespace vk

namespace {

constexpr const char *kValidationLayer = "VK_LAYER_KHRONOS_validation";

const char *typeName(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
    return "discrete";
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
    return "integrated";
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
    return "virtual";
  case VK_PHYSICAL_DEVICE_TYPE_CPU:
    return "cpu";
  default:
    return "other";
  }
}

// Higher is preferred when the caller lets kiln choose.
int preference(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
    return 4;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
    return 3;
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
    return 2;
  case VK_PHYSICAL_DEVICE_TYPE_CPU:
    return 1;
  default:
    return 0;
  }
}

VKAPI_ATTR VkBool32 VKAPI_CALL onMessage(VkDebugUtilsMessageSeverityFlagBitsEXT,
                                         VkDebugUtilsMessageTypeFlagsEXT,
                                         const VkDebugUtilsMessengerCallbackDataEXT *data,
                                         void *user) {
  auto *ctx = static_cast<Context *>(user);
  std::lock_guard<std::mutex> lock(ctx->messagesMutex);
  ctx->messages.emplace_back(data->pMessage ? data->pMessage : "(no message)");
  return VK_FALSE;
}

bool wantsValidation() {
  const char *v = std::getenv("KILN_VK_VALIDATE");
  return v && std::strcmp(v, "1") == 0;
}

bool hasLayer(const vk::Api &api, const char *name) {
  uint32_t n = 0;
  api.vkEnumerateInstanceLayerProperties(&n, nullptr);
  std::vector<VkLayerProperties> layers(n);
  api.vkEnumerateInstanceLayerProperties(&n, layers.data());
  for (const VkLayerProperties &l : layers)
    if (std::strcmp(l.layerName, name) == 0)
      return true;
  return false;
}

// Opens the loader and an instance; with `validate`, also the layer and a messenger.
Status createInstance(Context &ctx, bool validate) {
  if (Status s = ctx.api.openLoader(); s.failed())
    return s;
  validate = validate && hasLayer(ctx.api, kValidationLayer);

  auto app = zeroed<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  app.pApplicationName = "kiln";
  app.pEngineName = "kiln";
  app.apiVersion = VK_API_VERSION_1_1;

  auto messenger = zeroed<VkDebugUtilsMessengerCreateInfoEXT>(
      VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
  messenger.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                              VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  messenger.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
  messenger.pfnUserCallback = onMessage;
  messenger.pUserData = &ctx;
  // Synchronization validation catches missing barriers between dispatches.
  VkValidationFeatureEnableEXT sync = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  auto features = zeroed<VkValidationFeaturesEXT>(VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT);
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = &sync;
  features.pNext = &messenger;

  const char *layer = kValidationLayer;
  const char *extension = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
  auto info = zeroed<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  info.pApplicationInfo = &app;
  if (validate) {
    info.pNext = &features;
    info.enabledLayerCount = 1;
    info.ppEnabledLayerNames = &layer;
    info.enabledExtensionCount = 1;
    info.ppEnabledExtensionNames = &extension;
  }
  if (Status s = check(ctx.api.vkCreateInstance(&info, nullptr, &ctx.instance), "vkCreateInstance");
      s.failed())
    return s;
  if (Status s = ctx.api.loadInstance(ctx.instance); s.failed())
    return s;
  if (validate && ctx.api.vkCreateDebugUtilsMessengerEXT)
    return check(
        ctx.api.vkCreateDebugUtilsMessengerEXT(ctx.instance, &messenger, nullptr, &ctx.messenger),
        "vkCreateDebugUtilsMessengerEXT");
  return Status::ok();
}

std::vector<VkPhysicalDevice> physicalDevices(const Context &ctx) {
  uint32_t n = 0;
  ctx.api.vkEnumeratePhysicalDevices(ctx.instance, &n, nullptr);
  std::vector<VkPhysicalDevice> devices(n);
  ctx.api.vkEnumeratePhysicalDevices(ctx.instance, &n, devices.data());
  devices.resize(n);
  return devices;
}

std::vector<VkQueueFamilyProperties> queueFamilies(const Context &ctx, VkPhysicalDevice pd) {
  uint32_t n = 0;
  ctx.api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  ctx.api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, families.data());
  families.resize(n);
  return families;
}

// The first of `families` that runs compute, or -1.
int computeFamily(const std::vector<VkQueueFamilyProperties> &families) {
  for (size_t i = 0; i < families.size(); ++i)
    if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
      return static_cast<int>(i);
  return -1;
}

// The device's properties, with its subgroups' in `subgroup`.
VkPhysicalDeviceProperties properties(const Context &ctx, VkPhysicalDevice pd,
                                      VkPhysicalDeviceSubgroupProperties &subgroup) {
  subgroup = zeroed<VkPhysicalDeviceSubgroupProperties>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
  auto properties =
      zeroed<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
  properties.pNext = &subgroup;
  ctx.api.vkGetPhysicalDeviceProperties2(pd, &properties);
  return properties.properties;
}

// The device's capabilities as VulkanDeviceInfo::capabilities says them.
std::string capabilities(const Context &ctx, VkPhysicalDevice pd) {
  VkPhysicalDeviceSubgroupProperties subgroup;
  VkPhysicalDeviceProperties p = properties(ctx, pd, subgroup);
  // The Vulkan 1.2 feature structures exist only on 1.2 devices.
  auto float16 = zeroed<VkPhysicalDeviceShaderFloat16Int8Features>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES);
  auto address = zeroed<VkPhysicalDeviceBufferDeviceAddressFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES);
  auto storage16 = zeroed<VkPhysicalDevice16BitStorageFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  auto features = zeroed<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  features.pNext = &storage16;
  if (p.apiVersion >= VK_API_VERSION_1_2) {
    storage16.pNext = &float16;
    float16.pNext = &address;
  }
  ctx.api.vkGetPhysicalDeviceFeatures2(pd, &features);
  uint32_t n = 0;
  ctx.api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> extensions(n);
  ctx.api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, extensions.data());
  bool matrix = false;
  for (const VkExtensionProperties &e : extensions)
    matrix = matrix || std::string_view(e.extensionName) == "VK_KHR_cooperative_matrix";
  std::vector<VkQueueFamilyProperties> queues = queueFamilies(ctx, pd);
  int family = computeFamily(queues);
  std::string s = "subgroup " + std::to_string(subgroup.subgroupSize) + ", shared " +
                  std::to_string(p.limits.maxComputeSharedMemorySize / 1024) + " KiB";
  auto add = [&](bool has, const char *what) {
    if (has)
      s += std::string(", ") + what;
  };
  add(float16.shaderFloat16 == VK_TRUE, "f16");
  add(storage16.storageBuffer16BitAccess == VK_TRUE, "16-bit storage");
  add(matrix, "cooperative matrix");
  add(address.bufferDeviceAddress == VK_TRUE, "buffer device address");
  add(family >= 0 && queues[family].timestampValidBits > 0, "timestamps");
  return s;
}

std::string listing(const Context &ctx) {
  std::string s;
  std::vector<VkPhysicalDevice> devices = physicalDevices(ctx);
  for (size_t i = 0; i < devices.size(); ++i) {
    VkPhysicalDeviceProperties p;
    ctx.api.vkGetPhysicalDeviceProperties(devices[i], &p);
    s += (i ? ", " : "") + std::to_string(i) + ": " + p.deviceName + " (" + typeName(p.deviceType) +
         ")";
  }
  return s.empty() ? "none" : s;
}

// Picks the device; a usable one runs Vulkan 1.1 and has a compute queue.
Expected<VkPhysicalDevice> choose(const Context &ctx, int index) {
  std::vector<VkPhysicalDevice> devices = physicalDevices(ctx);
  if (devices.empty())
    return makeError("vulkan: the loader found no Vulkan device (is a driver such as "
                     "mesa-vulkan-drivers installed?)");
  auto usable = [&](VkPhysicalDevice pd) {
    VkPhysicalDeviceProperties p;
    ctx.api.vkGetPhysicalDeviceProperties(pd, &p);
    return p.apiVersion >= VK_API_VERSION_1_1 && computeFamily(queueFamilies(ctx, pd)) >= 0;
  };
  if (index >= 0) {
    if (index >= static_cast<int>(devices.size()))
      return makeError("vulkan: no device " + std::to_string(index) + "; devices: " + listing(ctx));
    if (!usable(devices[index]))
      return makeError("vulkan: device " + std::to_string(index) +
                       " lacks Vulkan 1.1 or a compute queue; devices: " + listing(ctx));
    return devices[index];
  }
  VkPhysicalDevice best = VK_NULL_HANDLE;
  int bestScore = -1;
  for (VkPhysicalDevice pd : devices) {
    VkPhysicalDeviceProperties p;
    ctx.api.vkGetPhysicalDeviceProperties(pd, &p);
    if (usable(pd) && preference(p.deviceType) > bestScore) {
      best = pd;
      bestScore = preference(p.deviceType);
    }
  }
  if (!best)
    return makeError("vulkan: no device with Vulkan 1.1 and a compute queue; devices: " +
                     listing(ctx));
  return best;
}

Status createDevice(Context &ctx, VkPhysicalDevice pd) {
  ctx.physical = pd;
  VkPhysicalDeviceSubgroupProperties subgroup;
  ctx.properties = properties(ctx, pd, subgroup);
  ctx.subgroupShuffle = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0 &&
                        (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) != 0;
  ctx.api.vkGetPhysicalDeviceMemoryProperties(pd, &ctx.memory);
  std::vector<VkQueueFamilyProperties> families = queueFamilies(ctx, pd);
  ctx.queueFamily = static_cast<uint32_t>(computeFamily(families));
  ctx.timestampBits = families[ctx.queueFamily].timestampValidBits;

  // f16 and bf16 buffers need 16-bit storage; enable it where the device has it.
  auto storage16 = zeroed<VkPhysicalDevice16BitStorageFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  auto features = zeroed<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
  features.pNext = &storage16;
  ctx.api.vkGetPhysicalDeviceFeatures2(pd, &features);
  ctx.storage16 = storage16.storageBuffer16BitAccess == VK_TRUE;
  auto enable16 = zeroed<VkPhysicalDevice16BitStorageFeatures>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  enable16.storageBuffer16BitAccess = storage16.storageBuffer16BitAccess;

  float priority = 1;
  auto queue = zeroed<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
  queue.queueFamilyIndex = ctx.queueFamily;
  queue.queueCount = 1;
  queue.pQueuePriorities = &priority;
  auto info = zeroed<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  info.pNext = &enable16;
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue;
  if (Status s = check(ctx.api.vkCreateDevice(pd, &info, nullptr, &ctx.device), "vkCreateDevice");
      s.failed())
    return s;
  if (Status s = ctx.api.loadDevice(ctx.device); s.failed())
    return s;
  ctx.api.vkGetDeviceQueue(ctx.device, ctx.queueFamily, 0, &ctx.queue);
  return ctx.takeMessages("device creation");
}

class VulkanDevice : public Device {
public:
  explicit VulkanDevice(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  std::string describe() const override {
    const VkPhysicalDeviceProperties &p = ctx_->properties;
    std::string s = std::string("vulkan: ") + p.deviceName + " (" + typeName(p.deviceType) +
                    ", Vulkan " + std::to_string(VK_API_VERSION_MAJOR(p.apiVersion)) + "." +
                    std::to_string(VK_API_VERSION_MINOR(p.apiVersion)) + "." +
                    std::to_string(VK_API_VERSION_PATCH(p.apiVersion)) + ")";
    if (ctx_->messenger)
      s += ", validation on";
    return s;
  }

  Expected<std::unique_ptr<Plan>> load(const Executable &exe) override {
    return vk::createPlan(ctx_, exe);
  }

  int64_t liveAllocations() const override { return ctx_->allocations; }

private:
  std::shared_ptr<Context> ctx_;
};

} // namespace

Expected<std::vector<VulkanDeviceInfo>> listVulkanDevices() {
  Context ctx;
  if (Status s = createInstance(ctx, false); s.failed())
    return s;
  std::vector<VulkanDeviceInfo> out;
  for (VkPhysicalDevice pd : physicalDevices(ctx)) {
    VkPhysicalDeviceProperties p;
    ctx.api.vkGetPhysicalDeviceProperties(pd, &p);
    out.push_back({p.deviceName, typeName(p.deviceType), capabilities(ctx, pd)});
  }
  return out;
}

Expected<std::unique_ptr<Device>> openVulkanDevice(int index) {
  auto ctx = std::make_shared<Context>();
  if (Status s = createInstance(*ctx, wantsValidation()); s.failed())
    return s;
  Expected<VkPhysicalDevice> pd = choose(*ctx, index);
  if (!pd)
    return pd.status();
  if (Status s = createDevice(*ctx, *pd); s.failed())
    return s;
  return std::unique_ptr<Device>(std::make_unique<VulkanDevice>(std::move(ctx)));
}

} // namespace kiln::runtime
