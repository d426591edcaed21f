// Shape inference and the graph verifier.
#pragma once

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::ir {

// The result type of node `n` from its operands (which must precede it in `g`) and
// attributes. For ops whose type is written out (constant, cast, reshape, broadcast)
// it checks n.type and returns it. Messages carry no location.
Expected<TensorType> inferType(const Graph &g, const Node &n);

// Checks the whole graph: dims and their ranges, operands defined before use (so no
// cycles), attributes, every node's type against inference, outputs. The message
// starts with the offending node's location when it has one.
Status verify(const Graph &g);

// Numpy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b);

// Axis in [-rank, rank) to [0, rank); -1 when out of range.
int normalizeAxis(int64_t axis, int rank);

} // namespace kiln::ir
