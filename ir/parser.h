// The .kir parser: text to a verified Graph, or one `file:line:col: error: ...` line.
#pragma once

#include <string_view>

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::ir {

// Parses one graph and verifies it. `filename` only labels diagnostics.
Expected<Graph> parseGraph(std::string_view text, std::string_view filename = "<input>");

} // namespace kiln::ir
