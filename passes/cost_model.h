// The cost model: device profiles, and bytes, flops and predicted time per op and kernel.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace kiln::passes {

struct DeviceProfile {
  std::string name;
  double bandwidthGBs;    // sustained device-memory bandwidth, bytes read + written
  double f32Tflops;       // FMA-counted as 2 flops
  double f16Tflops;       // dense f16 matmul peak (tensor cores where present)
  double launchMicros;    // cost of one kernel in a replayed plan (graph node / dispatch)
  double minKernelMicros; // the shortest a kernel takes even with no work
  int parallelSlots;      // small kernels that can run side by side (SMs / CUs, coarsely)
  int maxKernelBuffers;   // buffers one kernel may bind (read from outside or write)
  int64_t sharedBytes;    // shared (workgroup) memory one block may use
};

// Shared memory the kernels kiln generates use, which fusion keeps within a profile's
// sharedBytes: a group of sibling contractions stages one kTileM x kTileK tile of their
// common A operand and one kTileK x kTileN tile of each B operand; a row reduction
// keeps two regions of one f32 per invocation of its 256-wide workgroup, for the results
// of subgroups (kRowScratchBytes, compiler/lower_row.cc).
constexpr int kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int64_t kRowScratchBytes = 2 * 256 * 4;
int64_t kernelSharedBytes(int contractions, int elementBytes, int rows);
// The longest rows of queries, keys and values a decode-attention kernel takes (head
// dimensions of 64 to 256 in today's models; compiler/lower_attention.cc).
constexpr int64_t kMaxAttentionHeadDim = 256;
// The most keys it takes (the last workgroup of a head keeps a scale per chunk of 64 keys
// in shared memory: 16 KB).
constexpr int64_t kMaxAttentionKeys = 262144;

// Every profile kiln knows, the first being the default.
std::span<const DeviceProfile> deviceProfiles();
const DeviceProfile *findDeviceProfile(std::string_view name);

// Work of one op at a binding of the graph's dims.
struct Cost {
  double bytes = 0; // read from and written to device memory
  double flops = 0;
};

// Layout ops (views) and sources cost nothing: they move no data on their own.
Cost nodeCost(const ir::Graph &g, int node, std::span<const int64_t> dims);

// Predicted time of a kernel doing `c` alone on the device, launch included.
double predictMicros(const DeviceProfile &p, const Cost &c, bool f16);

// Predicted time of every node run as its own kernel (0 for sources and views).
std::vector<double> nodeMicros(const ir::Graph &g, const DeviceProfile &p,
                               std::span<const int64_t> dims);

// The dims at which costs are predicted when the caller gives none: each at its
// largest value (plans are sized for the largest shapes).
std::vector<int64_t> costDims(const ir::Graph &g);

} // namespace kiln::passes
