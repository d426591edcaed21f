// Device profiles and the roofline cost of each op: bytes over bandwidth or flops over
// peak, whichever is larger, plus the cost of a launch.
#include "passes/cost_model.h"

#include <algorithm>

#include "ir/verifier.h"

namespace kiln::passes {

namespace {

// Figures from ../shared/device.md (H200: 4.22 TB/s copy, 0.92 us per graph node) and
// public peak rates; the H100 copy rate is the one measured there (about 3.0 TB/s).
// lavapipe: 25 us per dispatch, and no gain from concurrency. Shared memory: 227 KB per
// block on sm_90 (opted in at launch); 32 KB, the common Vulkan maxComputeSharedMemorySize
// (llvmpipe's too). Buffers: 16 for every target, within Vulkan's
// maxPerStageDescriptorStorageBuffers on desktop GPUs and lavapipe.
const DeviceProfile kProfiles[] = {
    {"h200", 4220, 67, 989, 0.92, 1.4, 132, 16, 227 * 1024},
    {"h100", 3000, 67, 989, 0.92, 1.4, 132, 16, 227 * 1024},
    {"vulkan-gpu", 1000, 20, 80, 2.8, 3.0, 64, 16, 32 * 1024},
    {"lavapipe", 20, 0.2, 0.2, 25, 25, 1, 16, 32 * 1024},
};

double elements(const ir::TensorType &t, std::span<const int64_t> dims) {
  return static_cast<double>(ir::numElements(ir::evalShape(t.shape, dims)));
}

double bytesOf(const ir::TensorType &t, std::span<const int64_t> dims) {
  return elements(t, dims) * ir::dtypeBytes(t.dtype);
}

} // namespace

std::span<const DeviceProfile> deviceProfiles() { return kProfiles; }

const DeviceProfile *findDeviceProfile(std::string_view name) {
  for (const DeviceProfile &p : kProfiles)
    if (p.name == name)
      return &p;
  return nullptr;
}

int64_t kernelSharedBytes(int contractions, int elementBytes, int rows) {
  int64_t tiles = contractions > 0 ? kTileM * kTileK + int64_t{contractions} * kTileK * kTileN : 0;
  return tiles * elementBytes + rows * kRowScratchBytes;
}

std::vector<int64_t> costDims(const ir::Graph &g) {
  std::vector<int64_t> dims;
  for (const ir::SymDim &d : g.dims)
    dims.push_back(d.hi);
  return dims;
}

Cost nodeCost(const ir::Graph &g, int node, std::span<const int64_t> dims) {
  const ir::Node &n = g.nodes[node];
  Cost c;
  switch (ir::opCategory(n.op)) {
  case ir::Category::Source:
  case ir::Category::Layout:
    return c;
  case ir::Category::Unary:
  case ir::Category::Binary:
  case ir::Category::Select:
  case ir::Category::Cast:
  case ir::Category::Reduce:
  case ir::Category::Normalize:
  case ir::Category::Rope:
  case ir::Category::Gather:
  case ir::Category::Concat:
    break;
  case ir::Category::Update: // writes only the inserted region
    c.bytes = 2 * bytesOf(g.typeOf(n.operands[1]), dims);
    c.flops = 0;
    return c;
  case ir::Category::Contraction: {
    const ir::TensorType &a = g.typeOf(n.operands[0]);
    int64_t k = (n.attrBool("transpose_a") ? a.shape[a.rank() - 2] : a.shape.back()).eval(dims);
    c.flops = 2.0 * elements(n.type, dims) * static_cast<double>(k);
    break;
  }
  }
  for (int o : n.operands)
    c.bytes += bytesOf(g.typeOf(o), dims);
  c.bytes += bytesOf(n.type, dims);
  if (c.flops == 0) // pointwise and row ops: a few flops per element
    c.flops = 4 * elements(n.type, dims);
  return c;
}

double predictMicros(const DeviceProfile &p, const Cost &c, bool f16) {
  double memory = c.bytes / (p.bandwidthGBs * 1e3);                     // GB/s -> bytes/us
  double compute = c.flops / ((f16 ? p.f16Tflops : p.f32Tflops) * 1e6); // TF/s -> flops/us
  return p.launchMicros + std::max({memory, compute, p.minKernelMicros - p.launchMicros, 0.0});
}

std::vector<double> nodeMicros(const ir::Graph &g, const DeviceProfile &p,
                               std::span<const int64_t> dims) {
  std::vector<double> out(g.nodes.size(), 0);
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    ir::Category cat = ir::opCategory(g.nodes[id].op);
    if (cat == ir::Category::Source || cat == ir::Category::Layout)
      continue;
    ir::DType t = g.nodes[id].type.dtype;
    out[id] = predictMicros(p, nodeCost(g, static_cast<int>(id), dims),
                            t == ir::DType::F16 || t == ir::DType::BF16);
  }
  return out;
}

} // namespace kiln::passes
