// fusion: groups ops into kernels (pointwise chains, row reductions with a pointwise
// prologue and epilogue, contractions with a pointwise, rope and store epilogue, sibling
// contractions that read one input), critical path first.
#pragma once

#include "passes/pass.h"

namespace kiln::passes {

std::unique_ptr<Pass> createFusionPass();

} // namespace kiln::passes
