// The .kir printer: canonical text that the parser reads back to the same graph.
#pragma once

#include <string>

#include "ir/graph.h"

namespace kiln::ir {

std::string printGraph(const Graph &g);

// Graphviz: one box per node, labelled with its op and type; edges follow operands.
std::string printDot(const Graph &g);

// An attribute value as the printer writes it.
std::string formatAttrValue(const AttrValue &v, std::span<const SymDim> dims);

// Shortest text that reads back to exactly `v` ("nan", "inf" and "-inf" included).
std::string formatDouble(double v);

} // namespace kiln::ir
