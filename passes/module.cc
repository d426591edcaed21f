// The module: analyses computed on demand, and the dump the pass manager prints.
#include "passes/module.h"

#include "ir/printer.h"
#include "passes/report.h"

namespace kiln::passes {

Status Module::ensureProgram() {
  if (program)
    return Status::ok();
  auto p = buildKernelProgram(graph, *profile);
  if (!p)
    return p.status();
  program = std::move(*p);
  return Status::ok();
}

Status Module::ensureMemory() {
  if (Status s = ensureProgram(); s.failed())
    return s;
  if (memory)
    return Status::ok();
  memory = planMemory(*program);
  addArenaHazards(*program, *memory);
  schedule.reset(); // placed on the dependence graph before the arena's hazards
  return Status::ok();
}

Status Module::ensureSchedule() {
  if (Status s = ensureProgram(); s.failed())
    return s;
  if (!schedule)
    schedule = placeBarriers(*program, *profile);
  return Status::ok();
}

std::string printModule(const Module &m) {
  std::string out = ir::printGraph(m.graph);
  auto comment = [&](const std::string &text) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      out += "// " + text.substr(start, end - start) + "\n";
      start = end == std::string::npos ? text.size() : end + 1;
    }
  };
  if (m.program && !m.schedule && !m.memory) {
    const DependenceGraph &d = m.program->deps;
    std::string s = "dependencies: " + std::to_string(m.program->kernels.size()) + " kernels, " +
                    std::to_string(d.hazards.size()) + " hazards, " + std::to_string(d.edges()) +
                    " edges; critical path:";
    for (int k : d.criticalPath)
      s += " " + m.program->kernels[k].name;
    comment(s);
  }
  if (m.program && m.schedule) {
    MemoryPlan none;
    comment(
        printSchedule({m.graph, *m.program, *m.schedule, m.memory ? *m.memory : none, *m.profile}));
  } else if (m.program && m.memory) {
    comment(printMemoryPlan(*m.program, *m.memory));
  }
  return out;
}

} // namespace kiln::passes
