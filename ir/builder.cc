// The graph builder.
#include "ir/builder.h"

#include "ir/verifier.h"

namespace kiln::ir {

Builder::Builder(std::string graphName) { g_.name = std::move(graphName); }

Dim Builder::dim(std::string name, int64_t lo, int64_t hi) {
  g_.dims.push_back({std::move(name), lo, hi});
  return Dim::symbol(static_cast<int32_t>(g_.dims.size()) - 1);
}

int Builder::add(Node n, std::string name) {
  n.name = name.empty() ? std::to_string(g_.nodes.size()) : std::move(name);
  g_.nodes.push_back(std::move(n));
  return static_cast<int>(g_.nodes.size()) - 1;
}

int Builder::input(std::string name, TensorType type) {
  Node n = makeNode(Op::Input);
  n.type = std::move(type);
  g_.inputs.push_back(add(std::move(n), std::move(name)));
  return g_.inputs.back();
}

int Builder::param(std::string name, TensorType type) {
  Node n = makeNode(Op::Param);
  n.type = std::move(type);
  g_.inputs.push_back(add(std::move(n), std::move(name)));
  return g_.inputs.back();
}

int Builder::constant(double value, TensorType type) {
  return op(Op::Constant, {}, {{"value", value}}, std::move(type));
}

int Builder::op(Op o, std::vector<int> operands,
                std::vector<std::pair<std::string, AttrValue>> attrs,
                std::optional<TensorType> type) {
  if (!error_.empty())
    return -1;
  Node n = makeNode(o);
  n.operands = std::move(operands);
  for (int v : n.operands)
    if (v < 0 || v >= static_cast<int>(g_.nodes.size())) {
      error_ = std::string(opName(o)) + ": operand is not a value of this graph";
      return -1;
    }
  const auto &specs = opInfo(o).attrs;
  for (auto &[name, value] : attrs) {
    bool known = false;
    for (const AttrSpec &s : specs)
      known |= s.name == name;
    if (!known) {
      error_ = std::string(opName(o)) + " has no attribute `" + name + "`";
      return -1;
    }
    n.setAttr(name, std::move(value));
  }
  for (size_t i = 0; i < specs.size(); ++i)
    if (!n.present[i] && !specs[i].optional) {
      error_ = std::string(opName(o)) + " needs attribute `" + specs[i].name + "`";
      return -1;
    }
  if (type)
    n.type = *type;
  auto inferred = inferType(g_, n);
  if (!inferred) {
    error_ = std::string(opName(o)) + ": " + inferred.message();
    return -1;
  }
  n.type = *inferred;
  return add(std::move(n));
}

Expected<Graph> Builder::finish() {
  if (!error_.empty())
    return makeError("error: " + error_);
  if (Status s = verify(g_); s.failed())
    return s;
  return g_;
}

} // namespace kiln::ir
