// A graph pass and the registry that names every pass.
#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::passes {

struct Module;
struct DeviceProfile;

class Pass {
public:
  virtual ~Pass() = default;
  // Rewrites the module's graph or computes one of its analyses; returns whether the
  // graph changed. A pass keeps no state between runs and never prints: dumping is the
  // pass manager's job.
  virtual Expected<bool> run(Module &m) = 0;
};

// A pass that rewrites the graph for the module's device profile; when it changes the
// graph, the module's analyses are dropped.
class GraphPass : public Pass {
public:
  Expected<bool> run(Module &m) final;

protected:
  virtual Expected<bool> runOnGraph(ir::Graph &g, const DeviceProfile &profile) = 0;
};

struct PassInfo {
  std::string_view name;
  std::string_view summary;
  std::unique_ptr<Pass> (*create)();
};

// Every pass, in the order of the default pipeline.
std::span<const PassInfo> allPasses();
const PassInfo *findPass(std::string_view name);

// The default pipeline, as a comma-separated list of pass names.
std::string_view defaultPipeline();

} // namespace kiln::passes
