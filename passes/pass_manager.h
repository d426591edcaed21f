// Runs a pipeline of named passes with dumping, timing and verification around each.
#pragma once

#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/module.h"
#include "passes/pass.h"

namespace kiln::passes {

struct Instrumentation {
  bool printAfterAll = false;
  std::set<std::string, std::less<>> printAfter; // pass names
  bool printAfterChange = false;                 // only passes that changed the graph
  bool timePasses = false;
  bool verifyEach = true;
  std::ostream *out = nullptr; // where dumps and timings go (stderr when null)
};

class PassManager {
public:
  explicit PassManager(Instrumentation inst = {}) : inst_(std::move(inst)) {}

  // Appends the passes of a comma-separated pipeline; an error names an unknown pass.
  Status addPipeline(std::string_view pipeline);
  Status run(Module &m);
  // For callers that want only the graph back.
  Status run(ir::Graph &g);

private:
  Instrumentation inst_;
  std::vector<const PassInfo *> passes_;
};

} // namespace kiln::passes
