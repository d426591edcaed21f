// memory planning: one arena for the values kernels pass to each other, with offsets
// from liveness under the schedule; kernels that may run at the same time never share
// bytes.
#pragma once

#include <cstdint>
#include <span>
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
// kernel writes goes in the arena. Lifetimes are in the kernel DAG's waves, and two
// buffers may share bytes when their waves do not overlap: the queue form's barriers
// order them; addArenaHazards gives the other forms the same order.
// `bytes`, when given, holds per graph node the bytes a runtime keeps its value in (the
// compiler's temporaries may hold f16 values as f32); otherwise the graph's dtypes count.
MemoryPlan planMemory(const KernelProgram &prog, std::span<const int64_t> bytes = {});

// Makes reuse of arena bytes a hazard like any other: every kernel also reads or writes
// the arena ranges of its buffers (as buffer "%arena"), and the dependence graph is
// recomputed, so the CUDA-graph and stream forms order the kernels that share bytes.
// Kernels are renumbered in wave order (and `m`'s kernel lists with them); waves do not
// change, since buffers that share bytes already sit in different waves.
void addArenaHazards(KernelProgram &prog, MemoryPlan &m);

// An error naming two buffers that share bytes while their kernels are not ordered by
// the program's dependence graph (after addArenaHazards, every sharing pair is).
Status checkMemoryPlan(const KernelProgram &prog, const MemoryPlan &m);

} // namespace kiln::passes
