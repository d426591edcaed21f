// The one table of passes; the default pipeline is read top to bottom here.
#include "passes/canonicalize.h"
#include "passes/fusion.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
const PassInfo kPasses[] = {
    {"canonicalize", "fold constants and view chains, remove dead nodes, merge duplicates",
     createCanonicalizePass},
    {"fusion", "group ops into kernels along the critical path first", createFusionPass},
};
} // namespace

std::span<const PassInfo> allPasses() { return kPasses; }

const PassInfo *findPass(std::string_view name) {
  for (const PassInfo &p : kPasses)
    if (p.name == name)
      return &p;
  return nullptr;
}

std::string_view defaultPipeline() { return "canonicalize"; }

} // namespace kiln::passes
