// Graph and node helpers.
#include "ir/graph.h"

#include <cassert>

namespace kiln::ir {

namespace {
int attrIndex(Op op, std::string_view name) {
  const auto &specs = opInfo(op).attrs;
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name)
      return static_cast<int>(i);
  assert(false && "no such attribute for this op");
  return -1;
}
} // namespace

bool Node::has(std::string_view name) const { return present[attrIndex(op, name)]; }

const AttrValue &Node::attr(std::string_view name) const {
  int i = attrIndex(op, name);
  assert(present[i] && "reading an absent attribute");
  return attrs[i];
}

void Node::setAttr(std::string_view name, AttrValue v) {
  int i = attrIndex(op, name);
  attrs[i] = std::move(v);
  present[i] = true;
}

Node makeNode(Op op) {
  Node n;
  n.op = op;
  for (const AttrSpec &spec : opInfo(op).attrs) {
    n.attrs.push_back(spec.defaultValue.value_or(AttrValue{int64_t{0}}));
    n.present.push_back(spec.defaultValue.has_value());
  }
  return n;
}

int Graph::findDim(std::string_view name) const {
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i].name == name)
      return static_cast<int>(i);
  return -1;
}

Expected<int64_t> maxBytes(const TensorType &t, std::span<const SymDim> dims) {
  int64_t n = dtypeBytes(t.dtype);
  for (const Dim &d : t.shape) {
    int64_t e = d.max(dims);
    if (e < 0)
      return makeError("negative extent");
    if (__builtin_mul_overflow(n, e, &n))
      return makeError("tensor of type " + typeToString(t, dims) +
                       " has more bytes than fit in 63 bits");
  }
  return n;
}

} // namespace kiln::ir
