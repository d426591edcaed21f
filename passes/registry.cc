// The one table of passes; the default pipeline is read top to bottom here.
#include "passes/canonicalize.h"
#include "passes/fusion.h"
#include "passes/module.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The analyses, as passes that compute them into the module.
template <Status (Module::*Ensure)()> class AnalysisPass : public Pass {
public:
  Expected<bool> run(Module &m) override {
    if (Status s = (m.*Ensure)(); s.failed())
      return s;
    return false;
  }
};

template <Status (Module::*Ensure)()> std::unique_ptr<Pass> createAnalysisPass() {
  return std::make_unique<AnalysisPass<Ensure>>();
}

// Every pass, in the order of the default pipeline.
const PassInfo kPasses[] = {
    {"canonicalize", "fold constants and view chains, remove dead nodes, merge duplicates",
     createCanonicalizePass},
    {"fusion", "group ops into kernels along the critical path first", createFusionPass},
    {"dependency-analysis", "byte-range hazards between kernels, levels, critical path",
     createAnalysisPass<&Module::ensureProgram>},
    {"memory-planning", "one arena; kernels that may run together never share bytes",
     createAnalysisPass<&Module::ensureMemory>},
    {"barrier-placement", "queue barriers, CUDA graph edges and stream events",
     createAnalysisPass<&Module::ensureSchedule>},
};

} // namespace

Expected<bool> GraphPass::run(Module &m) {
  auto changed = runOnGraph(m.graph, *m.profile);
  if (changed && *changed)
    m.invalidate();
  return changed;
}

std::span<const PassInfo> allPasses() { return kPasses; }

const PassInfo *findPass(std::string_view name) {
  for (const PassInfo &p : kPasses)
    if (p.name == name)
      return &p;
  return nullptr;
}

std::string_view defaultPipeline() {
  return "canonicalize,fusion,dependency-analysis,memory-planning,barrier-placement";
}

} // namespace kiln::passes
