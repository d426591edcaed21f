// An Executable loaded on a Vulkan device: buffers, pipelines and one command buffer,
// recorded at load and submitted again by every run.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <thread>

#include <unistd.h>

#include "runtime/vulkan/vulkan_context.h"

namespace kiln::runtime::vk {

namespace {

constexpr uint32_t kWorkgroupSize = 256; // compiler::kWorkgroupSize; the runtime cannot see it
constexpr const char *kEntryPoint = "main";
constexpr uint64_t kFenceTimeoutNs = 60ull * 1000 * 1000 * 1000;
constexpr uint32_t kCapabilityStorageBuffer16BitAccess = 4433;
constexpr uint32_t kCapabilityGroupNonUniformShuffle = 65;

// The barriers the compiler placed, or for an Executable without them, one before every
// kernel but the first, making visible every buffer an earlier kernel may write.
std::vector<QueueBarrier> barriersOf(const Executable &exe) {
  if (exe.barriers)
    return *exe.barriers;
  std::vector<QueueBarrier> out;
  for (size_t i = 1; i < exe.kernels.size(); ++i)
    out.push_back({static_cast<int>(i), buffersWritten({exe.kernels.data(), i})});
  return out;
}

// Workgroups in x and y for `invocations`: one row while the device allows, else rows of
// equal width (the shader linearizes the id, and its guard drops the surplus).
std::pair<uint32_t, uint32_t> workgroups(int64_t invocations, uint32_t maxX) {
  int64_t groups = (invocations + kWorkgroupSize - 1) / kWorkgroupSize;
  int64_t rows = (groups + maxX - 1) / maxX;
  return {static_cast<uint32_t>((groups + rows - 1) / rows), static_cast<uint32_t>(rows)};
}

// The on-disk pipeline cache of a device: KILN_CACHE_DIR (off: none), else
// $XDG_CACHE_HOME/kiln, else ~/.cache/kiln; one file per device and driver build, named
// by the driver's pipelineCacheUUID. The driver keys entries by shader content.
std::string pipelineCachePath(const VkPhysicalDeviceProperties &p) {
  std::filesystem::path dir;
  if (const char *d = std::getenv("KILN_CACHE_DIR"))
    dir = d;
  else if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x)
    dir = std::filesystem::path(x) / "kiln";
  else if (const char *h = std::getenv("HOME"); h && *h)
    dir = std::filesystem::path(h) / ".cache" / "kiln";
  if (dir.empty() || dir == "off")
    return "";
  std::string name = "vulkan-";
  for (uint8_t b : p.pipelineCacheUUID) {
    constexpr const char *kHex = "0123456789abcdef";
    name += kHex[b >> 4];
    name += kHex[b & 15];
  }
  return (dir / (name + ".bin")).string();
}

// The cache file's bytes when its header names this device and driver build; else none.
std::vector<uint8_t> readPipelineCache(const std::string &path,
                                       const VkPhysicalDeviceProperties &p) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint32_t header[4];
  if (data.size() < 32)
    return {};
  std::memcpy(header, data.data(), sizeof header);
  if (header[0] < 32 || header[1] != VK_PIPELINE_CACHE_HEADER_VERSION_ONE ||
      header[2] != p.vendorID || header[3] != p.deviceID ||
      std::memcmp(data.data() + 16, p.pipelineCacheUUID, VK_UUID_SIZE) != 0)
    return {};
  return data;
}

// Writes the cache through a temporary file and a rename, so that a reader never sees
// half a file; a cache that cannot be written is skipped (it only saves time).
void writePipelineCache(const std::string &path, const std::vector<uint8_t> &data) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string tmp = path + ".tmp" + std::to_string(::getpid()) + "-" +
                    std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  bool written;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(data.data()),
              static_cast<std::streamsize>(data.size()));
    written = static_cast<bool>(out);
  }
  if (written)
    std::filesystem::rename(tmp, path, ec);
  if (!written || ec)
    std::filesystem::remove(tmp, ec);
}

// What the runtime checks in a module before handing it to the driver.
struct ModuleFacts {
  bool storage16 = false;  // declares StorageBuffer16BitAccess
  bool shuffle = false;    // declares GroupNonUniformShuffle
  int64_t maxBinding = -1; // highest Binding decoration
};

ModuleFacts scan(const std::vector<uint32_t> &words) {
  constexpr uint32_t kOpCapability = 17, kOpDecorate = 71, kDecorationBinding = 33;
  ModuleFacts f;
  for (size_t i = 5; i < words.size();) {
    uint32_t count = words[i] >> 16, opcode = words[i] & 0xffff;
    if (count == 0 || i + count > words.size())
      break;
    if (opcode == kOpCapability && count == 2) {
      f.storage16 |= words[i + 1] == kCapabilityStorageBuffer16BitAccess;
      f.shuffle |= words[i + 1] == kCapabilityGroupNonUniformShuffle;
    }
    if (opcode == kOpDecorate && count == 4 && words[i + 2] == kDecorationBinding)
      f.maxBinding = std::max<int64_t>(f.maxBinding, words[i + 3]);
    i += count;
  }
  return f;
}

class VulkanPlan : public Plan {
public:
  VulkanPlan(std::shared_ptr<Context> ctx, const Executable &exe)
      : ctx_(std::move(ctx)), api_(ctx_->api), exe_(exe) {}
  ~VulkanPlan() override;

  Status init();
  Status run(std::span<const int64_t> dims, std::span<const Bytes> inputs,
             std::vector<Bytes> &outputs, RunStats *stats) override;

private:
  // The executable's buffers, the dims and the workgroup counts live in one allocation
  // of device-local memory (a discrete GPU's own); inputs and outputs pass through
  // host-visible staging buffers in another, copied on the device before and after the
  // kernels.
  struct Buffer {
    VkBuffer buffer = VK_NULL_HANDLE;
    void *mapped = nullptr; // a staging buffer's bytes
  };
  // A buffer to create: its size and usage.
  struct Request {
    Buffer *out;
    int64_t bytes;
    VkBufferUsageFlags usage;
    int64_t arenaOffset = -1; // bytes into the arena, shared with other requests; or -1
  };
  struct Pipeline {
    VkShaderModule module = VK_NULL_HANDLE;
    VkDescriptorSetLayout setLayout = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkDescriptorSet set = VK_NULL_HANDLE;
  };

  Status checkExecutable() const;
  Status createBuffers(const std::vector<Request> &requests, bool hostVisible,
                       VkDeviceMemory &memory);
  Status createPipeline(const ExecKernel &k, Pipeline &out);
  void bindBuffers(const ExecKernel &k, const Pipeline &p);
  Status record();
  Status recordTransfers(std::span<const int64_t> dims, std::span<const Bytes> inputs);
  // Timestamps a run writes: its start and end, then before and after each kernel.
  size_t queries() const { return 2 + 2 * exe_.kernels.size(); }

  std::shared_ptr<Context> ctx_;
  const Api &api_;
  Executable exe_;
  std::vector<Buffer> buffers_;
  std::vector<Buffer> inStaging_, outStaging_; // per input and per output
  VkDeviceMemory deviceMemory_ = VK_NULL_HANDLE, stagingMemory_ = VK_NULL_HANDLE;
  Buffer dims_;
  Buffer dispatches_;    // per kernel: workgroups in x, y and z for vkCmdDispatchIndirect
  int64_t barriers_ = 0; // pipeline barriers in the recorded commands
  bool zeroed_ = false;  // a run has cleared the Zeroed buffers
  std::vector<Pipeline> pipelines_;
  VkDescriptorPool pool_ = VK_NULL_HANDLE;
  VkCommandPool commandPool_ = VK_NULL_HANDLE;
  VkCommandBuffer commands_ = VK_NULL_HANDLE; // the kernels, recorded at load
  // Recorded by each run: the dims, workgroup counts and inputs in before the kernels,
  // the outputs out after them.
  VkCommandBuffer upload_ = VK_NULL_HANDLE, download_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkQueryPool timestamps_ = VK_NULL_HANDLE; // the run's start and end, then each kernel's
  VkPipelineCache pipelineCache_ = VK_NULL_HANDLE;
};

VulkanPlan::~VulkanPlan() {
  VkDevice d = ctx_->device;
  api_.vkDestroyQueryPool(d, timestamps_, nullptr);
  api_.vkDestroyPipelineCache(d, pipelineCache_, nullptr);
  api_.vkDestroyFence(d, fence_, nullptr);
  api_.vkDestroyCommandPool(d, commandPool_, nullptr); // frees commands_
  api_.vkDestroyDescriptorPool(d, pool_, nullptr);     // frees the sets
  for (Pipeline &p : pipelines_) {
    api_.vkDestroyPipeline(d, p.pipeline, nullptr);
    api_.vkDestroyPipelineLayout(d, p.layout, nullptr);
    api_.vkDestroyDescriptorSetLayout(d, p.setLayout, nullptr);
    api_.vkDestroyShaderModule(d, p.module, nullptr);
  }
  for (std::vector<Buffer> *list : {&buffers_, &inStaging_, &outStaging_})
    for (Buffer &b : *list)
      api_.vkDestroyBuffer(d, b.buffer, nullptr);
  api_.vkDestroyBuffer(d, dims_.buffer, nullptr);
  api_.vkDestroyBuffer(d, dispatches_.buffer, nullptr);
  for (VkDeviceMemory m : {deviceMemory_, stagingMemory_})
    if (m) {
      api_.vkFreeMemory(d, m, nullptr); // unmaps it
      --ctx_->allocations;
    }
}

Status VulkanPlan::checkExecutable() const {
  for (const ExecKernel &k : exe_.kernels) {
    if (k.spirv.empty())
      return makeError("vulkan: kernel " + k.name + " was not compiled to SPIR-V");
    ModuleFacts facts = scan(k.spirv);
    if (facts.storage16 && !ctx_->storage16)
      return makeError("vulkan: kernel " + k.name +
                       " uses f16/bf16 buffers but the device lacks storageBuffer16BitAccess");
    if (facts.shuffle && !ctx_->subgroupShuffle)
      return makeError("vulkan: kernel " + k.name +
                       " shuffles values within subgroups but the device's compute shaders "
                       "lack subgroup shuffles (VK_SUBGROUP_FEATURE_SHUFFLE_BIT)");
    // Binding N is the dims buffer, so a module for N buffers binds 0..N.
    if (facts.maxBinding != static_cast<int64_t>(k.buffers.size()))
      return makeError("vulkan: kernel " + k.name + " lists " + std::to_string(k.buffers.size()) +
                       " buffers but its SPIR-V binds " + std::to_string(facts.maxBinding + 1) +
                       " (dims included)");
    for (int b : k.buffers)
      if (b < 0 || b >= static_cast<int>(exe_.buffers.size()))
        return makeError("vulkan: kernel " + k.name + " names buffer " + std::to_string(b) +
                         " of " + std::to_string(exe_.buffers.size()));
    // Global ids are int32 in the kernel IR; 2^31 invocations take at most 129 rows of
    // workgroups, within every device's maxComputeWorkGroupCount[1] (at least 65535).
    int64_t most = maxInvocations(k, exe_.dims);
    if (most > std::numeric_limits<int32_t>::max())
      return makeError("vulkan: kernel " + k.name + " may need " + std::to_string(most) +
                       " invocations, more than 32-bit ids can number");
  }
  if (Status s = checkArena(exe_); s.failed())
    return makeError("vulkan: " + s.message());
  int last = 0;
  for (const QueueBarrier &b : exe_.barriers.value_or(std::vector<QueueBarrier>{})) {
    if (b.before <= last || b.before >= static_cast<int>(exe_.kernels.size()))
      return makeError("vulkan: a barrier before kernel " + std::to_string(b.before) +
                       " is out of order or outside kernels 1.." +
                       std::to_string(exe_.kernels.size() - 1));
    last = b.before;
    for (int buffer : b.buffers)
      if (buffer < 0 || buffer >= static_cast<int>(exe_.buffers.size()))
        return makeError("vulkan: the barrier before kernel " + std::to_string(b.before) +
                         " names buffer " + std::to_string(buffer) + " of " +
                         std::to_string(exe_.buffers.size()));
  }
  return Status::ok();
}

// Creates the requested buffers and binds them to one new allocation: the arena first,
// its buffers at their offsets in it (which may overlap: the compiler gave buffers of
// different waves the same bytes), then each other buffer at a multiple of 256 bytes.
// Device-local memory where the device has it (the first such type the buffers allow,
// else the first they allow), or host-visible coherent memory, mapped, for staging
// buffers.
Status VulkanPlan::createBuffers(const std::vector<Request> &requests, bool hostVisible,
                                 VkDeviceMemory &memory) {
  VkDeviceSize total = 0;
  for (const Request &r : requests)
    if (r.arenaOffset >= 0)
      total = std::max<VkDeviceSize>(total, (r.arenaOffset + std::max<int64_t>(r.bytes, 4) + 255) /
                                                256 * 256);
  uint32_t allowed = ~0u;
  std::vector<VkDeviceSize> offsets;
  for (const Request &r : requests) {
    auto info = zeroed<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
    info.size = static_cast<VkDeviceSize>(std::max<int64_t>(r.bytes, 4)); // none empty in Vulkan
    info.usage = r.usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    if (Status s = check(api_.vkCreateBuffer(ctx_->device, &info, nullptr, &r.out->buffer),
                         "vkCreateBuffer");
        s.failed())
      return s;
    VkMemoryRequirements req;
    api_.vkGetBufferMemoryRequirements(ctx_->device, r.out->buffer, &req);
    allowed &= req.memoryTypeBits;
    // In the arena where the device's alignment and size keep it within its own span of
    // 256-byte blocks, where the plan put nothing else; otherwise in memory of its own.
    auto offset = static_cast<VkDeviceSize>(r.arenaOffset);
    if (r.arenaOffset >= 0 && offset % req.alignment == 0 &&
        offset + req.size <= (offset + info.size + 255) / 256 * 256) {
      offsets.push_back(offset);
      continue;
    }
    VkDeviceSize align = std::max<VkDeviceSize>(req.alignment, 256);
    offsets.push_back((total + align - 1) / align * align);
    total = offsets.back() + req.size;
  }
  if (requests.empty())
    return Status::ok();
  VkMemoryPropertyFlags want =
      hostVisible ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
                  : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  uint32_t type = std::numeric_limits<uint32_t>::max();
  for (uint32_t i = 0; i < ctx_->memory.memoryTypeCount; ++i) {
    bool ok = allowed & (1u << i);
    if (ok && (ctx_->memory.memoryTypes[i].propertyFlags & want) == want) {
      type = i;
      break;
    }
    if (ok && !hostVisible && type == std::numeric_limits<uint32_t>::max())
      type = i; // no device-local type: the first the buffers allow
  }
  if (type == std::numeric_limits<uint32_t>::max())
    return makeError(hostVisible ? "vulkan: no host-visible coherent memory for staging buffers"
                                 : "vulkan: no memory type suits every storage buffer");
  auto alloc = zeroed<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
  alloc.allocationSize = total;
  alloc.memoryTypeIndex = type;
  if (Status s =
          check(api_.vkAllocateMemory(ctx_->device, &alloc, nullptr, &memory), "vkAllocateMemory");
      s.failed())
    return s;
  ++ctx_->allocations;
  void *base = nullptr;
  if (hostVisible)
    if (Status s = check(api_.vkMapMemory(ctx_->device, memory, 0, VK_WHOLE_SIZE, 0, &base),
                         "vkMapMemory");
        s.failed())
      return s;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (Status s = check(
            api_.vkBindBufferMemory(ctx_->device, requests[i].out->buffer, memory, offsets[i]),
            "vkBindBufferMemory");
        s.failed())
      return s;
    if (base)
      requests[i].out->mapped = static_cast<uint8_t *>(base) + offsets[i];
  }
  return Status::ok();
}

Status VulkanPlan::createPipeline(const ExecKernel &k, Pipeline &out) {
  VkDevice d = ctx_->device;
  auto module = zeroed<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  module.codeSize = k.spirv.size() * sizeof(uint32_t);
  module.pCode = k.spirv.data();
  if (Status s = check(api_.vkCreateShaderModule(d, &module, nullptr, &out.module),
                       "vkCreateShaderModule");
      s.failed())
    return s;

  // Bindings 0..N-1 are the kernel's buffers, N the dims buffer.
  std::vector<VkDescriptorSetLayoutBinding> bindings(k.buffers.size() + 1);
  for (uint32_t i = 0; i < bindings.size(); ++i)
    bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  auto setInfo =
      zeroed<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
  setInfo.bindingCount = static_cast<uint32_t>(bindings.size());
  setInfo.pBindings = bindings.data();
  if (Status s = check(api_.vkCreateDescriptorSetLayout(d, &setInfo, nullptr, &out.setLayout),
                       "vkCreateDescriptorSetLayout");
      s.failed())
    return s;

  auto layout = zeroed<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
  layout.setLayoutCount = 1;
  layout.pSetLayouts = &out.setLayout;
  if (Status s = check(api_.vkCreatePipelineLayout(d, &layout, nullptr, &out.layout),
                       "vkCreatePipelineLayout");
      s.failed())
    return s;

  auto pipeline =
      zeroed<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
  pipeline.stage =
      zeroed<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
  pipeline.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  pipeline.stage.module = out.module;
  pipeline.stage.pName = kEntryPoint;
  pipeline.layout = out.layout;
  if (Status s = check(
          api_.vkCreateComputePipelines(d, pipelineCache_, 1, &pipeline, nullptr, &out.pipeline),
          ("vkCreateComputePipelines for kernel " + k.name).c_str());
      s.failed())
    return s;

  auto alloc = zeroed<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
  alloc.descriptorPool = pool_;
  alloc.descriptorSetCount = 1;
  alloc.pSetLayouts = &out.setLayout;
  return check(api_.vkAllocateDescriptorSets(d, &alloc, &out.set), "vkAllocateDescriptorSets");
}

// Buffers are sized for the largest dims, so descriptors are written once, at load.
void VulkanPlan::bindBuffers(const ExecKernel &k, const Pipeline &p) {
  std::vector<VkDescriptorBufferInfo> infos;
  for (int b : k.buffers)
    infos.push_back({buffers_[b].buffer, 0, VK_WHOLE_SIZE});
  infos.push_back({dims_.buffer, 0, VK_WHOLE_SIZE});
  std::vector<VkWriteDescriptorSet> writes(infos.size());
  for (uint32_t i = 0; i < writes.size(); ++i) {
    writes[i] = zeroed<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
    writes[i].dstSet = p.set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  api_.vkUpdateDescriptorSets(ctx_->device, static_cast<uint32_t>(writes.size()), writes.data(), 0,
                              nullptr);
}

Status VulkanPlan::init() {
  if (Status s = checkExecutable(); s.failed())
    return s;
  VkDevice d = ctx_->device;
  std::vector<int64_t> most = largestDims(exe_.dims);
  constexpr VkBufferUsageFlags kStorage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                          VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                          VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  buffers_.resize(exe_.buffers.size());
  std::vector<Request> onDevice;
  for (size_t i = 0; i < exe_.buffers.size(); ++i)
    onDevice.push_back(
        {&buffers_[i], bufferBytes(exe_.buffers[i], most), kStorage, exe_.buffers[i].arenaOffset});
  onDevice.push_back({&dims_, static_cast<int64_t>(exe_.dims.size()) * 4,
                      VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT});
  onDevice.push_back({&dispatches_, static_cast<int64_t>(exe_.kernels.size()) * 12,
                      VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT});
  if (Status s = createBuffers(onDevice, false, deviceMemory_); s.failed())
    return s;
  inStaging_.resize(exe_.inputs.size());
  outStaging_.resize(exe_.outputs.size());
  std::vector<Request> staging;
  for (size_t i = 0; i < exe_.inputs.size(); ++i)
    staging.push_back({&inStaging_[i], bufferBytes(exe_.buffers[exe_.inputs[i]], most),
                       VK_BUFFER_USAGE_TRANSFER_SRC_BIT});
  for (size_t i = 0; i < exe_.outputs.size(); ++i)
    staging.push_back({&outStaging_[i], bufferBytes(exe_.buffers[exe_.outputs[i]], most),
                       VK_BUFFER_USAGE_TRANSFER_DST_BIT});
  if (Status s = createBuffers(staging, true, stagingMemory_); s.failed())
    return s;

  uint32_t descriptors = 0;
  for (const ExecKernel &k : exe_.kernels)
    descriptors += static_cast<uint32_t>(k.buffers.size()) + 1;
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, std::max(descriptors, 1u)};
  auto pool = zeroed<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
  pool.maxSets = std::max<uint32_t>(static_cast<uint32_t>(exe_.kernels.size()), 1);
  pool.poolSizeCount = 1;
  pool.pPoolSizes = &size;
  if (Status s =
          check(api_.vkCreateDescriptorPool(d, &pool, nullptr, &pool_), "vkCreateDescriptorPool");
      s.failed())
    return s;

  std::string cachePath = pipelineCachePath(ctx_->properties);
  std::vector<uint8_t> cached =
      cachePath.empty() ? std::vector<uint8_t>{} : readPipelineCache(cachePath, ctx_->properties);
  auto cacheInfo = zeroed<VkPipelineCacheCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO);
  cacheInfo.initialDataSize = cached.size();
  cacheInfo.pInitialData = cached.data();
  if (Status s = check(api_.vkCreatePipelineCache(d, &cacheInfo, nullptr, &pipelineCache_),
                       "vkCreatePipelineCache");
      s.failed())
    return s;
  pipelines_.resize(exe_.kernels.size());
  for (size_t i = 0; i < exe_.kernels.size(); ++i) {
    if (Status s = createPipeline(exe_.kernels[i], pipelines_[i]); s.failed())
      return s;
    bindBuffers(exe_.kernels[i], pipelines_[i]);
  }
  // New pipelines grow the cache: save it for the next load.
  size_t cacheBytes = 0;
  if (!cachePath.empty() &&
      api_.vkGetPipelineCacheData(d, pipelineCache_, &cacheBytes, nullptr) == VK_SUCCESS &&
      cacheBytes != cached.size()) {
    std::vector<uint8_t> data(cacheBytes);
    if (api_.vkGetPipelineCacheData(d, pipelineCache_, &cacheBytes, data.data()) == VK_SUCCESS) {
      data.resize(cacheBytes);
      writePipelineCache(cachePath, data);
    }
  }

  auto commandPool = zeroed<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  commandPool.queueFamilyIndex = ctx_->queueFamily;
  commandPool.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT; // transfers, each run
  if (Status s = check(api_.vkCreateCommandPool(d, &commandPool, nullptr, &commandPool_),
                       "vkCreateCommandPool");
      s.failed())
    return s;
  auto alloc = zeroed<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  alloc.commandPool = commandPool_;
  alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  alloc.commandBufferCount = 3;
  VkCommandBuffer buffers[3];
  if (Status s =
          check(api_.vkAllocateCommandBuffers(d, &alloc, buffers), "vkAllocateCommandBuffers");
      s.failed())
    return s;
  upload_ = buffers[0];
  commands_ = buffers[1];
  download_ = buffers[2];
  auto fence = zeroed<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
  if (Status s = check(api_.vkCreateFence(d, &fence, nullptr, &fence_), "vkCreateFence");
      s.failed())
    return s;
  if (ctx_->timestampBits) {
    auto query = zeroed<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
    query.queryType = VK_QUERY_TYPE_TIMESTAMP;
    query.queryCount = static_cast<uint32_t>(queries());
    if (Status s =
            check(api_.vkCreateQueryPool(d, &query, nullptr, &timestamps_), "vkCreateQueryPool");
        s.failed())
      return s;
  }
  if (Status s = record(); s.failed())
    return s;
  return ctx_->takeMessages("load");
}

// Recorded once: the workgroup counts, which depend on the dims, come from dispatches_,
// which each run rewrites (with the dims buffer) before it submits.
Status VulkanPlan::record() {
  VkCommandBuffer cb = commands_;
  barriers_ = 0;
  auto begin = zeroed<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  if (Status s = check(api_.vkBeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer"); s.failed())
    return s;
  if (timestamps_) {
    api_.vkCmdResetQueryPool(cb, timestamps_, 0, static_cast<uint32_t>(queries()));
    api_.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, timestamps_, 0);
  }
  std::vector<QueueBarrier> placed = barriersOf(exe_);
  bool arena = std::any_of(exe_.buffers.begin(), exe_.buffers.end(),
                           [](const ExecBuffer &b) { return b.arenaOffset >= 0; });
  auto next = placed.begin();
  for (size_t i = 0; i < exe_.kernels.size(); ++i) {
    if (next != placed.end() && next->before == static_cast<int>(i)) {
      // The execution dependency orders every earlier dispatch (write-after-read
      // included); the memory dependency covers what they wrote since the last barrier.
      std::vector<VkBufferMemoryBarrier> barriers;
      for (int b : (next++)->buffers) {
        auto m = zeroed<VkBufferMemoryBarrier>(VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER);
        m.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
        m.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
        m.srcQueueFamilyIndex = m.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        m.buffer = buffers_[b].buffer;
        m.size = VK_WHOLE_SIZE;
        barriers.push_back(m);
      }
      // Temporaries that share arena bytes are different buffers over the same memory:
      // a global memory barrier orders what they wrote too.
      auto global = zeroed<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
      global.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
      global.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
      api_.vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, arena ? 1 : 0, &global,
                                static_cast<uint32_t>(barriers.size()), barriers.data(), 0,
                                nullptr);
      ++barriers_;
    }
    uint32_t q = static_cast<uint32_t>(2 + 2 * i);
    if (timestamps_)
      api_.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, timestamps_, q);
    api_.vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipelines_[i].pipeline);
    api_.vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipelines_[i].layout, 0, 1,
                                 &pipelines_[i].set, 0, nullptr);
    api_.vkCmdDispatchIndirect(cb, dispatches_.buffer, i * 12);
    if (timestamps_)
      api_.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, timestamps_, q + 1);
  }
  if (timestamps_)
    api_.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, timestamps_, 1);
  return check(api_.vkEndCommandBuffer(cb), "vkEndCommandBuffer");
}

// The run's transfers: the dims and workgroup counts written into their buffers and
// each input copied from its staging buffer before the kernels (which wait for them),
// and each output copied to its staging buffer after the kernels, for the host.
Status VulkanPlan::recordTransfers(std::span<const int64_t> dims, std::span<const Bytes> inputs) {
  auto begin = zeroed<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  auto barrier = [&](VkCommandBuffer cb, VkPipelineStageFlags from, VkAccessFlags written,
                     VkPipelineStageFlags to, VkAccessFlags access) {
    auto m = zeroed<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
    m.srcAccessMask = written;
    m.dstAccessMask = access;
    api_.vkCmdPipelineBarrier(cb, from, to, 0, 1, &m, 0, nullptr, 0, nullptr);
  };
  VkCommandBuffer up = upload_;
  if (Status s = check(api_.vkBeginCommandBuffer(up, &begin), "vkBeginCommandBuffer"); s.failed())
    return s;
  // vkCmdUpdateBuffer writes at most 65536 bytes at a time.
  auto update = [&](VkBuffer buffer, const void *data, size_t bytes) {
    constexpr size_t kMost = 65536;
    for (size_t at = 0; at < bytes; at += kMost)
      api_.vkCmdUpdateBuffer(up, buffer, at, std::min(kMost, bytes - at),
                             static_cast<const uint8_t *>(data) + at);
  };
  std::vector<int32_t> dimValues(dims.begin(), dims.end());
  update(dims_.buffer, dimValues.data(), dimValues.size() * 4);
  std::vector<uint32_t> groups;
  for (const ExecKernel &k : exe_.kernels) {
    int64_t n = invocations(k, dims);
    auto [x, y] = n > 0 ? workgroups(n, ctx_->properties.limits.maxComputeWorkGroupCount[0])
                        : std::pair<uint32_t, uint32_t>{0, 0};
    groups.insert(groups.end(), {x, y, 1});
  }
  update(dispatches_.buffer, groups.data(), groups.size() * 4);
  // Zeroed buffers start at zero; their kernels leave them so.
  for (size_t i = 0; i < exe_.buffers.size() && !zeroed_; ++i)
    if (exe_.buffers[i].role == BufferRole::Zeroed)
      api_.vkCmdFillBuffer(up, buffers_[i].buffer, 0, VK_WHOLE_SIZE, 0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    VkBufferCopy region{0, 0, inputs[i].size()};
    if (region.size > 0)
      api_.vkCmdCopyBuffer(up, inStaging_[i].buffer, buffers_[exe_.inputs[i]].buffer, 1, &region);
  }
  barrier(up, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
          VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_DRAW_INDIRECT_BIT,
          VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
              VK_ACCESS_INDIRECT_COMMAND_READ_BIT);
  if (Status s = check(api_.vkEndCommandBuffer(up), "vkEndCommandBuffer"); s.failed())
    return s;

  VkCommandBuffer down = download_;
  if (Status s = check(api_.vkBeginCommandBuffer(down, &begin), "vkBeginCommandBuffer"); s.failed())
    return s;
  barrier(down, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
          VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  for (size_t i = 0; i < exe_.outputs.size(); ++i) {
    VkBufferCopy region{
        0, 0, static_cast<VkDeviceSize>(bufferBytes(exe_.buffers[exe_.outputs[i]], dims))};
    if (region.size > 0)
      api_.vkCmdCopyBuffer(down, buffers_[exe_.outputs[i]].buffer, outStaging_[i].buffer, 1,
                           &region);
  }
  barrier(down, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
          VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
  return check(api_.vkEndCommandBuffer(down), "vkEndCommandBuffer");
}

Status VulkanPlan::run(std::span<const int64_t> dims, std::span<const Bytes> inputs,
                       std::vector<Bytes> &outputs, RunStats *stats) {
  if (Status s = checkRunArgs(exe_, dims, inputs); s.failed())
    return s;
  int64_t kernels = 0;
  for (const ExecKernel &k : exe_.kernels)
    kernels += invocations(k, dims) > 0;
  for (size_t i = 0; i < inputs.size(); ++i)
    std::copy(inputs[i].begin(), inputs[i].end(), static_cast<uint8_t *>(inStaging_[i].mapped));
  if (Status s = recordTransfers(dims, inputs); s.failed())
    return s;

  auto start = std::chrono::steady_clock::now();
  auto submit = zeroed<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  VkCommandBuffer order[3] = {upload_, commands_, download_};
  submit.commandBufferCount = 3;
  submit.pCommandBuffers = order;
  if (Status s = check(api_.vkQueueSubmit(ctx_->queue, 1, &submit, fence_), "vkQueueSubmit");
      s.failed())
    return s;
  Status waited = check(api_.vkWaitForFences(ctx_->device, 1, &fence_, VK_TRUE, kFenceTimeoutNs),
                        "vkWaitForFences");
  auto end = std::chrono::steady_clock::now();
  if (waited.failed())
    return waited; // the fence stays pending; this plan cannot run again
  zeroed_ = true;
  if (Status s = check(api_.vkResetFences(ctx_->device, 1, &fence_), "vkResetFences"); s.failed())
    return s;

  if (stats) {
    stats->kernels = kernels;
    stats->barriers = barriers_ + 1; // and the one after the kernels, before the outputs go out
    stats->submits = 1;
    stats->rerecords = 0; // the kernels' commands recorded at load serve every run
    stats->hostMicros = std::chrono::duration<double, std::micro>(end - start).count();
    stats->deviceMicros = 0;
    stats->kernelSpans.clear();
    std::vector<uint64_t> ticks(queries());
    if (timestamps_ && api_.vkGetQueryPoolResults(
                           ctx_->device, timestamps_, 0, static_cast<uint32_t>(ticks.size()),
                           ticks.size() * sizeof(uint64_t), ticks.data(), sizeof(uint64_t),
                           VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
      // Microseconds from query 0, the run's start, to query q.
      uint64_t mask = ctx_->timestampBits >= 64 ? ~0ull : (1ull << ctx_->timestampBits) - 1;
      auto since = [&](size_t q) {
        uint64_t elapsed = ((ticks[q] & mask) - (ticks[0] & mask)) & mask;
        return static_cast<double>(elapsed) * ctx_->properties.limits.timestampPeriod / 1000.0;
      };
      stats->deviceMicros = since(1);
      for (size_t i = 0; i < exe_.kernels.size(); ++i)
        stats->kernelSpans.push_back({since(2 + 2 * i), since(3 + 2 * i)});
    }
  }

  outputs.resize(exe_.outputs.size());
  for (size_t i = 0; i < exe_.outputs.size(); ++i) {
    int b = exe_.outputs[i];
    outputs[i].resize(static_cast<size_t>(bufferBytes(exe_.buffers[b], dims)));
    std::copy_n(static_cast<const uint8_t *>(outStaging_[i].mapped), outputs[i].size(),
                outputs[i].begin());
  }
  return ctx_->takeMessages("run");
}

} // namespace

Expected<std::unique_ptr<Plan>> createPlan(std::shared_ptr<Context> ctx, const Executable &exe) {
  auto plan = std::make_unique<VulkanPlan>(std::move(ctx), exe);
  if (Status s = plan->init(); s.failed())
    return s;
  return std::unique_ptr<Plan>(std::move(plan));
}

} // namespace kiln::runtime::vk
