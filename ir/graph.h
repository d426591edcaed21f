// The graph IR: nodes in topological order, each defining one tensor value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/ops.h"
#include "ir/support.h"
#include "ir/types.h"

namespace kiln::ir {

// Where something came from in a .kir file; line 0 means "made in code".
struct Loc {
  int line = 0;
  int col = 0;
};

// Limits that keep hostile input from exhausting the compiler.
constexpr int kMaxRank = 8;
constexpr int64_t kMaxDimValue = int64_t{1} << 40;

struct Node {
  Op op = Op::Input;
  std::vector<int> operands;    // ids of earlier nodes
  std::vector<AttrValue> attrs; // one per opInfo(op).attrs entry
  std::vector<bool> present;    // which of them are set (optional ones may be absent)
  TensorType type;
  std::string name; // the value's name, without '%'
  Loc loc;
  int kernel = -1; // index into Graph::kernels once fusion has grouped the node

  bool has(std::string_view attr) const;
  const AttrValue &attr(std::string_view name) const;
  int64_t attrInt(std::string_view name) const { return std::get<int64_t>(attr(name)); }
  double attrFloat(std::string_view name) const { return std::get<double>(attr(name)); }
  bool attrBool(std::string_view name) const { return std::get<bool>(attr(name)); }
  const std::string &attrEnum(std::string_view name) const {
    return std::get<std::string>(attr(name));
  }
  const std::vector<int64_t> &attrInts(std::string_view name) const {
    return std::get<std::vector<int64_t>>(attr(name));
  }
  const std::vector<double> &attrFloats(std::string_view name) const {
    return std::get<std::vector<double>>(attr(name));
  }
  Dim attrDim(std::string_view name) const { return std::get<Dim>(attr(name)); }
  const std::vector<Dim> &attrDims(std::string_view name) const {
    return std::get<std::vector<Dim>>(attr(name));
  }
  void setAttr(std::string_view name, AttrValue v);
};

// A node with every attribute at its default (optional ones absent).
Node makeNode(Op op);

struct Graph {
  std::string name = "main";
  std::vector<SymDim> dims;
  std::vector<Node> nodes;  // node i defines value i
  std::vector<int> inputs;  // Input and Param nodes, in signature order
  std::vector<int> outputs; // returned values, in order
  // Names of the kernels that fusion grouped nodes into (`kernel @k0 { ... }` in .kir);
  // the nodes of one kernel are contiguous in `nodes`.
  std::vector<std::string> kernels;

  int findDim(std::string_view name) const;
  const TensorType &typeOf(int id) const { return nodes[id].type; }
};

// Largest element count and byte size of a type over its dims' ranges; an error when
// they do not fit in 63 bits.
Expected<int64_t> maxBytes(const TensorType &t, std::span<const SymDim> dims);

} // namespace kiln::ir
