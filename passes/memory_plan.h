// memory planning: one arena for the values kernels pass to each other, with offsets
// from liveness under the schedule; kernels that may run at the same time never share
// bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "passes/schedule.h"

namespace kiln::passes {

struct ArenaBuffer {
  int buffer = -1;    // the graph node that owns the bytes
  int64_t bytes = 0;  // at the largest value of each dim
  int64_t offset = 0; // in the arena, aligned to kArenaAlignment
  int firstWave = 0, lastWave = 0;
  std::vector<int> kernels; // every kernel that reads or writes it
  std::vector<int> writers; // the kernels among them that write it
};

constexpr int64_t kArenaAlignment = 256;

struct MemoryPlan {
  std::vector<ArenaBuffer> buffers;
  int64_t arenaBytes = 0;
  int64_t lowerBoundBytes = 0; // the largest set of buffers live in one wave
};

// Inputs, params, constants and outputs are the caller's memory; every other buffer a
// kernel writes goes in the arena. Lifetimes are in the kernel DAG's waves.
MemoryPlan planMemory(const KernelProgram &prog);

// An error naming two buffers that share bytes while their kernels are not ordered.
Status checkMemoryPlan(const KernelProgram &prog, const MemoryPlan &m);

} // namespace kiln::passes
