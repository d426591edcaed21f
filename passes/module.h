// What a pipeline works on: the graph, the device profile it is planned for, and the
// analyses the passes have computed so far.
#pragma once

#include <optional>
#include <string>

#include "ir/graph.h"
#include "passes/cost_model.h"
#include "passes/memory_plan.h"
#include "passes/schedule.h"

namespace kiln::passes {

struct Module {
  ir::Graph graph;
  const DeviceProfile *profile = &deviceProfiles()[0];
  std::optional<KernelProgram> program; // dependency-analysis
  std::optional<MemoryPlan> memory;     // memory-planning
  std::optional<Schedule> schedule;     // barrier-placement

  // A pass that changes the graph drops every analysis of the old one.
  void invalidate() {
    program.reset();
    memory.reset();
    schedule.reset();
  }
  // Each analysis on demand, computing what it needs first.
  Status ensureProgram();
  Status ensureMemory();
  Status ensureSchedule();
};

// The graph as .kir, then each analysis present as `//` lines, so a dump still parses.
std::string printModule(const Module &m);

} // namespace kiln::passes
