// canonicalize: constant folding, view-chain folding, CSE and dead-node removal.
#pragma once

#include "passes/pass.h"

namespace kiln::passes {

std::unique_ptr<Pass> createCanonicalizePass();

} // namespace kiln::passes
