// Text, JSON and Chrome-trace reports of a kernel program's schedule and memory plan.
#pragma once

#include <string>

#include "passes/memory_plan.h"
#include "passes/schedule.h"

namespace kiln::passes {

struct ScheduleReport {
  const ir::Graph &graph;
  const KernelProgram &prog;
  const Schedule &schedule;
  const MemoryPlan &memory;
  const DeviceProfile &profile;
};

// Kernels in queue order with waves, streams and predicted times; barriers with the
// ranges they guard; graph edges; events; the critical path; the arena.
std::string printSchedule(const ScheduleReport &r);

// The arena and where each buffer sits in it.
std::string printMemoryPlan(const KernelProgram &prog, const MemoryPlan &m);

// `s` as a JSON string literal: quotes and backslashes escaped, control characters as
// \u00XX.
std::string jsonString(const std::string &s);

// One JSON object of counts and predictions; `compileMs` is the caller's measurement.
std::string scheduleStats(const ScheduleReport &r, double compileMs);

// Graphviz: each kernel a cluster labelled with its wave, stream and predicted time,
// the ops inside it, and the schedule's kernel edges (bold) between clusters.
std::string scheduleDot(const ScheduleReport &r);

// The predicted schedule as a Chrome trace (opens in Perfetto or chrome://tracing):
// one track per stream.
std::string scheduleTrace(const ScheduleReport &r);
// Its events alone, as process `pid`, each line beginning ",\n" (to join other events).
std::string scheduleTraceEvents(const ScheduleReport &r, int pid);
// A Chrome trace's metadata event naming process `pid`, beginning ",\n" as above.
std::string traceProcessName(int pid, const std::string &name);
// The trace document holding `events` (lines as above).
std::string traceDocument(const std::string &events);

} // namespace kiln::passes
