// Reports of a schedule: the text form for people and lit tests, JSON for tools.
#include "passes/report.h"

#include <cstdio>

namespace kiln::passes {

namespace {

std::string fmt(const char *f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string rangeText(const KernelProgram &prog, const Access &a) {
  return prog.valueNames[a.buffer] + "[" + std::to_string(a.range.begin) + ", " +
         std::to_string(a.range.end) + ")";
}

} // namespace

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
      continue;
    }
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string printSchedule(const ScheduleReport &r) {
  const KernelProgram &prog = r.prog;
  const Schedule &s = r.schedule;
  std::string out = "schedule @" + r.graph.name + " on " + r.profile.name + ": " +
                    std::to_string(prog.kernels.size()) + " kernels, " + std::to_string(s.waves) +
                    " waves, predicted " + fmt("%.2f", s.predictedMicros) + " us\n";
  size_t nextBarrier = 0;
  for (size_t pos = 0; pos < s.queue.order.size(); ++pos) {
    if (nextBarrier < s.queue.barriers.size() &&
        s.queue.barriers[nextBarrier].position == static_cast<int>(pos)) {
      out += "  barrier";
      for (const Access &a : s.queue.barriers[nextBarrier].guards)
        out += " " + rangeText(prog, a);
      out += "\n";
      ++nextBarrier;
    }
    int k = s.queue.order[pos];
    const KernelInfo &info = prog.kernels[k];
    out += "  kernel @" + info.name + " wave " + std::to_string(prog.deps.asap[k]) + " stream " +
           std::to_string(s.streams.streamOf[k]) + " " + fmt("%.2f", info.micros) + " us:";
    for (int id : info.nodes)
      out += " " + prog.valueNames[id];
    out += "\n";
  }
  for (auto [a, b] : s.graph.edges)
    out += "  edge @" + prog.kernels[a].name + " -> @" + prog.kernels[b].name + "\n";
  for (auto [a, b] : s.streams.events)
    out += "  event @" + prog.kernels[a].name + " (stream " +
           std::to_string(s.streams.streamOf[a]) + ") -> @" + prog.kernels[b].name + " (stream " +
           std::to_string(s.streams.streamOf[b]) + ")\n";
  out += "  critical path:";
  for (int k : prog.deps.criticalPath)
    out += " @" + prog.kernels[k].name;
  out += " (" + fmt("%.2f", prog.deps.criticalPathMicros) + " us)\n";
  return out + printMemoryPlan(prog, r.memory);
}

std::string printMemoryPlan(const KernelProgram &prog, const MemoryPlan &m) {
  std::string out = "  arena " + std::to_string(m.arenaBytes) + " bytes (lower bound " +
                    std::to_string(m.lowerBoundBytes) + ")\n";
  for (const ArenaBuffer &b : m.buffers)
    out += "    " + prog.valueNames[b.buffer] + " at " + std::to_string(b.offset) + ", " +
           std::to_string(b.bytes) + " bytes, waves " + std::to_string(b.firstWave) + ".." +
           std::to_string(b.lastWave) + "\n";
  return out;
}

std::string scheduleStats(const ScheduleReport &r, double compileMs) {
  const Schedule &s = r.schedule;
  auto field = [](const char *name, const std::string &value) {
    return std::string("\"") + name + "\": " + value;
  };
  std::string out = "{";
  out += field("graph", jsonString(r.graph.name)) + ", ";
  out += field("profile", jsonString(r.profile.name)) + ", ";
  out += field("nodes", std::to_string(r.graph.nodes.size())) + ", ";
  out += field("kernels", std::to_string(r.prog.kernels.size())) + ", ";
  out += field("barriers", std::to_string(s.queue.barriers.size())) + ", ";
  out += field("streams", std::to_string(s.streams.streams.size())) + ", ";
  out += field("events", std::to_string(s.streams.events.size())) + ", ";
  out += field("graph_edges", std::to_string(s.graph.edges.size())) + ", ";
  out += field("waves", std::to_string(s.waves)) + ", ";
  out += field("critical_path_us", fmt("%.3f", r.prog.deps.criticalPathMicros)) + ", ";
  out += field("predicted_us", fmt("%.3f", s.predictedMicros)) + ", ";
  out += field("arena_bytes", std::to_string(r.memory.arenaBytes)) + ", ";
  out += field("arena_lower_bound_bytes", std::to_string(r.memory.lowerBoundBytes)) + ", ";
  out += field("compile_ms", fmt("%.3f", compileMs));
  return out + "}\n";
}

std::string traceProcessName(int pid, const std::string &name) {
  return ",\n  {\"name\": \"process_name\", \"ph\": \"M\", \"pid\": " + std::to_string(pid) +
         ", \"args\": {\"name\": " + jsonString(name) + "}}";
}

std::string traceDocument(const std::string &events) {
  return "{\"traceEvents\": [" + events.substr(1) + "\n], \"displayTimeUnit\": \"ns\"}\n";
}

std::string scheduleTraceEvents(const ScheduleReport &r, int pid) {
  std::string p = std::to_string(pid);
  std::string out =
      traceProcessName(pid, "kiln predicted: @" + r.graph.name + " on " + r.profile.name);
  for (size_t st = 0; st < r.schedule.streams.streams.size(); ++st)
    out += ",\n  {\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": " + p +
           ", \"tid\": " + std::to_string(st) + ", \"args\": {\"name\": \"stream " +
           std::to_string(st) + "\"}}";
  for (size_t k = 0; k < r.prog.kernels.size(); ++k) {
    const KernelInfo &info = r.prog.kernels[k];
    out += ",\n  {\"name\": " + jsonString("@" + info.name) + ", \"ph\": \"X\", \"pid\": " + p +
           ", \"tid\": " + std::to_string(r.schedule.streams.streamOf[k]) +
           ", \"ts\": " + fmt("%.3f", r.schedule.start[k]) +
           ", \"dur\": " + fmt("%.3f", info.micros) +
           ", \"args\": {\"wave\": " + std::to_string(r.prog.deps.asap[k]) +
           ", \"bytes\": " + fmt("%.0f", info.cost.bytes) +
           ", \"flops\": " + fmt("%.0f", info.cost.flops) + "}}";
  }
  return out;
}

std::string scheduleTrace(const ScheduleReport &r) {
  return traceDocument(scheduleTraceEvents(r, 0));
}

std::string scheduleDot(const ScheduleReport &r) {
  const ir::Graph &g = r.graph;
  const KernelProgram &prog = r.prog;
  std::vector<int> kernelOf(g.nodes.size(), -1);
  for (size_t k = 0; k < prog.kernels.size(); ++k)
    for (int id : prog.kernels[k].nodes)
      kernelOf[id] = static_cast<int>(k);
  auto node = [](size_t id) { return "n" + std::to_string(id); };
  std::string out = "digraph " + jsonString(g.name) +
                    " {\n  compound=true;\n  node [shape=box, fontname=monospace];\n";
  for (size_t k = 0; k < prog.kernels.size(); ++k) {
    const KernelInfo &info = prog.kernels[k];
    out += "  subgraph cluster_" + std::to_string(k) + " {\n    label=" +
           jsonString("@" + info.name + "  wave " + std::to_string(prog.deps.asap[k]) +
                      (prog.deps.asap[k] > 0 ? " (after a barrier)" : "") + ", stream " +
                      std::to_string(r.schedule.streams.streamOf[k]) + ", " +
                      fmt("%.2f", info.micros) + " us") +
           ";\n";
    for (int id : info.nodes)
      out += "    " + node(id) + " [label=" +
             jsonString(prog.valueNames[id] + " = " + std::string(ir::opName(g.nodes[id].op))) +
             "];\n";
    out += "  }\n";
  }
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    if (kernelOf[id] < 0)
      out += "  " + node(id) + " [shape=ellipse, label=" +
             jsonString(prog.valueNames[id] + " = " + std::string(ir::opName(g.nodes[id].op))) +
             "];\n";
    for (int o : g.nodes[id].operands)
      out += "  " + node(o) + " -> " + node(id) + " [color=gray];\n";
  }
  for (auto [a, b] : r.schedule.graph.edges)
    out += "  " + node(prog.kernels[a].nodes.back()) + " -> " +
           node(prog.kernels[b].nodes.front()) + " [style=bold, ltail=cluster_" +
           std::to_string(a) + ", lhead=cluster_" + std::to_string(b) + "];\n";
  return out + "}\n";
}

} // namespace kiln::passes
