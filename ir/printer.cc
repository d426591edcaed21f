// The .kir printer. Attributes at their default are left out, so canonical text is short.
#include "ir/printer.h"

#include <charconv>
#include <cmath>

namespace kiln::ir {

std::string formatDouble(double v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return v < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

namespace {

struct AttrFormatter {
  std::span<const SymDim> dims;
  std::string operator()(int64_t x) const { return std::to_string(x); }
  std::string operator()(double x) const { return formatDouble(x); }
  std::string operator()(bool x) const { return x ? "true" : "false"; }
  std::string operator()(const std::string &x) const { return x; }
  std::string operator()(Dim d) const { return dimToString(d, dims); }
  template <class T> std::string operator()(const std::vector<T> &xs) const {
    std::string s = "[";
    for (size_t i = 0; i < xs.size(); ++i)
      s += (i ? ", " : "") + (*this)(xs[i]);
    return s + "]";
  }
};

} // namespace

std::string formatAttrValue(const AttrValue &v, std::span<const SymDim> dims) {
  return std::visit(AttrFormatter{dims}, v);
}

namespace {

std::string formatAttrs(const Node &n, std::span<const SymDim> dims) {
  const auto &specs = opInfo(n.op).attrs;
  std::string s;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!n.present[i] || (specs[i].defaultValue && *specs[i].defaultValue == n.attrs[i]))
      continue;
    s += (s.empty() ? " {" : ", ") + specs[i].name + " = " + formatAttrValue(n.attrs[i], dims);
  }
  return s.empty() ? s : s + "}";
}

} // namespace

std::string printGraph(const Graph &g) {
  std::string s = "graph @" + g.name + "(";
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Node &n = g.nodes[g.inputs[i]];
    s += (i ? ", " : "") + std::string(n.op == Op::Param ? "param " : "") + "%" + n.name + ": " +
         typeToString(n.type, g.dims);
  }
  s += ") -> (";
  for (size_t i = 0; i < g.outputs.size(); ++i)
    s += (i ? ", " : "") + typeToString(g.nodes[g.outputs[i]].type, g.dims);
  s += ") {\n";
  for (const SymDim &d : g.dims)
    s += "  dim " + d.name + " in [" + std::to_string(d.lo) + ", " + std::to_string(d.hi) + "]\n";
  int open = -1; // the kernel block being printed
  for (const Node &n : g.nodes) {
    if (n.op == Op::Input || n.op == Op::Param)
      continue;
    if (n.kernel != open) {
      if (open >= 0)
        s += "  }\n";
      if (n.kernel >= 0)
        s += "  kernel @" + g.kernels[n.kernel] + " {\n";
      open = n.kernel;
    }
    s += open >= 0 ? "    %" : "  %";
    s += n.name + " = " + std::string(opName(n.op));
    for (size_t i = 0; i < n.operands.size(); ++i)
      s += (i ? ", %" : " %") + g.nodes[n.operands[i]].name;
    s += formatAttrs(n, g.dims) + " : " + typeToString(n.type, g.dims) + "\n";
  }
  if (open >= 0)
    s += "  }\n";
  s += "  return";
  for (size_t i = 0; i < g.outputs.size(); ++i)
    s += (i ? ", %" : " %") + g.nodes[g.outputs[i]].name;
  return s + "\n}\n";
}

std::string printDot(const Graph &g) {
  std::string s = "digraph \"" + g.name + "\" {\n  node [shape=box, fontname=monospace];\n";
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    s += "  n" + std::to_string(id) + " [label=\"%" + n.name + " = " + std::string(opName(n.op)) +
         "\\n" + typeToString(n.type, g.dims) + "\"];\n";
    for (int o : n.operands)
      s += "  n" + std::to_string(o) + " -> n" + std::to_string(id) + ";\n";
  }
  for (size_t i = 0; i < g.outputs.size(); ++i)
    s += "  out" + std::to_string(i) + " [shape=plaintext, label=\"return " + std::to_string(i) +
         "\"];\n  n" + std::to_string(g.outputs[i]) + " -> out" + std::to_string(i) + ";\n";
  return s + "}\n";
}

} // namespace kiln::ir
