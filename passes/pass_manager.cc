// The pass manager: the only place that prints IR between passes.
#include "passes/pass_manager.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "ir/printer.h"
#include "ir/verifier.h"

namespace kiln::passes {

Status PassManager::addPipeline(std::string_view pipeline) {
  while (!pipeline.empty()) {
    size_t comma = pipeline.find(',');
    std::string_view name = pipeline.substr(0, comma);
    pipeline = comma == std::string_view::npos ? std::string_view() : pipeline.substr(comma + 1);
    if (name.empty())
      continue;
    const PassInfo *p = findPass(name);
    if (!p) {
      std::string known;
      for (const PassInfo &q : allPasses())
        known += (known.empty() ? "" : ", ") + std::string(q.name);
      return makeError("error: unknown pass '" + std::string(name) + "' (passes: " + known + ")");
    }
    passes_.push_back(p);
  }
  return Status::ok();
}

Status PassManager::run(ir::Graph &g) {
  Module m;
  m.graph = std::move(g);
  Status s = run(m);
  g = std::move(m.graph);
  return s;
}

Status PassManager::run(Module &m) {
  ir::Graph &g = m.graph;
  std::ostream &out = inst_.out ? *inst_.out : std::cerr;
  std::vector<std::pair<std::string_view, double>> times;
  for (const PassInfo *p : passes_) {
    auto start = std::chrono::steady_clock::now();
    auto changed = p->create()->run(m);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!changed)
      return makeError("error: pass " + std::string(p->name) + ": " + changed.message());
    times.push_back({p->name, ms});
    if (inst_.verifyEach)
      if (Status s = ir::verify(g); s.failed())
        return makeError("error: the graph does not verify after pass " + std::string(p->name) +
                         " (a kiln bug): " + s.message());
    bool print = inst_.printAfterAll || inst_.printAfter.count(p->name) ||
                 (inst_.printAfterChange && *changed);
    if (print)
      out << "// -----// IR Dump After " << p->name << " //----- //\n" << printModule(m);
  }
  if (inst_.timePasses) {
    double total = 0;
    out << "===-- kiln pass timing --===\n";
    for (auto [name, ms] : times) {
      char line[128];
      std::snprintf(line, sizeof line, "  %9.3f ms  %.*s\n", ms, static_cast<int>(name.size()),
                    name.data());
      out << line;
      total += ms;
    }
    char line[64];
    std::snprintf(line, sizeof line, "  %9.3f ms  total\n", total);
    out << line;
  }
  return Status::ok();
}

} // namespace kiln::passes
