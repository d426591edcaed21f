// A C++ builder for graphs: types are inferred as ops are added; finish() verifies.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::ir {

class Builder {
public:
  explicit Builder(std::string graphName = "main");

  // Declares a symbolic dim `name` in [lo, hi].
  Dim dim(std::string name, int64_t lo, int64_t hi);

  int input(std::string name, TensorType type);
  int param(std::string name, TensorType type);
  int constant(double value, TensorType type);

  // Adds any op; the result type is inferred unless the op's type is written out
  // (cast, reshape, broadcast). Returns the value id, or -1 after an error, which
  // finish() reports.
  int op(Op op, std::vector<int> operands,
         std::vector<std::pair<std::string, AttrValue>> attrs = {},
         std::optional<TensorType> type = std::nullopt);
  int unary(Op o, int x) { return op(o, {x}); }
  int binary(Op o, int a, int b) { return op(o, {a, b}); }

  void output(int value) { g_.outputs.push_back(value); }

  // The type of a value added so far (what the next op's operands look like).
  const TensorType &typeOf(int value) const { return g_.typeOf(value); }

  // The verified graph, or the first error met while building.
  Expected<Graph> finish();

private:
  int add(Node n, std::string name = {});

  Graph g_;
  std::string error_;
};

} // namespace kiln::ir
