// canonicalize: one forward sweep that folds constants and view chains and merges
// duplicates, then removes nodes no output needs.
#include "passes/canonicalize.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "ir/interpreter.h"
#include "ir/printer.h"

namespace kiln::passes {

namespace {

using ir::Dim;
using ir::Graph;
using ir::Node;
using ir::Op;

// Constants are folded only while small, so folding never bloats the graph.
constexpr int64_t kMaxFoldElements = 1024;

bool isStaticShape(const ir::TensorType &t) {
  for (const Dim &d : t.shape)
    if (!d.isStatic())
      return false;
  return true;
}

class Canonicalizer {
public:
  explicit Canonicalizer(Graph &g) : g_(g), repl_(g.nodes.size()) {
    for (size_t i = 0; i < repl_.size(); ++i)
      repl_[i] = static_cast<int>(i);
  }

  bool run() {
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      Node &n = g_.nodes[id];
      for (int &o : n.operands)
        o = repl_[o];
      if (n.op == Op::Input || n.op == Op::Param)
        continue;
      int to = foldView(static_cast<int>(id));
      if (to < 0 && foldConstant(n))
        changed_ = true;
      if (to < 0)
        to = dedupe(static_cast<int>(id));
      if (to >= 0) {
        repl_[id] = to;
        changed_ = true;
      }
    }
    for (int &o : g_.outputs)
      o = repl_[o];
    removeDead();
    return changed_;
  }

private:
  const Node &operand(const Node &n, int i) const { return g_.nodes[n.operands[i]]; }

  // A view of a view becomes one view; a view that changes nothing becomes its operand.
  // Returns the node that replaces `id`, or -1.
  int foldView(int id) {
    Node &n = g_.nodes[id];
    if (ir::opCategory(n.op) != ir::Category::Layout && n.op != Op::Cast)
      return -1;
    const Node &x = operand(n, 0);
    if (n.type == x.type && isIdentityView(n))
      return n.operands[0];
    if (x.op != n.op)
      return -1;
    switch (n.op) {
    case Op::Reshape:
    case Op::Broadcast:
      n.operands[0] = x.operands[0];
      changed_ = true;
      return n.type == operand(n, 0).type ? n.operands[0] : -1;
    case Op::Permute: {
      std::vector<int64_t> perm;
      for (int64_t p : n.attrInts("perm"))
        perm.push_back(x.attrInts("perm")[p]);
      n.setAttr("perm", perm);
      n.operands[0] = x.operands[0];
      changed_ = true;
      return isIdentityView(n) ? n.operands[0] : -1;
    }
    case Op::Slice: {
      Dim s1 = x.attrDim("start"), s2 = n.attrDim("start"), e2 = n.attrDim("end");
      if (x.attrInt("axis") != n.attrInt("axis") || !s1.isStatic() || !s2.isStatic() ||
          !e2.isStatic())
        return -1;
      n.setAttr("start", Dim::of(s1.offset + s2.offset));
      n.setAttr("end", Dim::of(s1.offset + e2.offset));
      n.operands[0] = x.operands[0];
      changed_ = true;
      return -1;
    }
    default:
      return -1;
    }
  }

  bool isIdentityView(const Node &n) const {
    switch (n.op) {
    case Op::Reshape:
    case Op::Broadcast:
      return true; // same type on both sides
    case Op::Cast:
      return true;
    case Op::Permute: {
      const auto &perm = n.attrInts("perm");
      for (size_t i = 0; i < perm.size(); ++i)
        if (perm[i] != static_cast<int64_t>(i))
          return false;
      return true;
    }
    case Op::Slice:
      return n.attrDim("start") == Dim::of(0);
    default:
      return false;
    }
  }

  // Evaluates an op whose operands are all small constants into a constant.
  bool foldConstant(Node &n) {
    if (n.operands.empty() || ir::opCategory(n.op) == ir::Category::Source ||
        !isStaticShape(n.type))
      return false;
    if (ir::numElements(ir::evalShape(n.type.shape, {})) > kMaxFoldElements)
      return false;
    Graph tiny;
    tiny.dims = g_.dims;
    std::vector<int> ids;
    for (int o : n.operands) {
      const Node &c = g_.nodes[o];
      if (c.op != Op::Constant)
        return false;
      ids.push_back(static_cast<int>(tiny.nodes.size()));
      tiny.nodes.push_back(c);
    }
    Node copy = n;
    copy.operands = ids;
    tiny.nodes.push_back(copy);
    tiny.outputs = {static_cast<int>(tiny.nodes.size()) - 1};
    std::vector<int64_t> dims(g_.dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
      dims[i] = g_.dims[i].lo;
    auto out = ir::interpret(tiny, dims, {});
    if (!out)
      return false; // leave it to run time, where the same error is reported
    Node c = ir::makeNode(Op::Constant);
    c.type = n.type;
    c.name = n.name;
    c.loc = n.loc;
    c.kernel = n.kernel;
    const std::vector<double> &v = (*out)[0].data;
    bool splat = !v.empty() && std::all_of(v.begin(), v.end(), [&](double x) {
      return std::memcmp(&x, &v[0], sizeof x) == 0;
    });
    if (splat)
      c.setAttr("value", v[0]);
    else
      c.setAttr("values", v);
    n = std::move(c);
    return true;
  }

  // Common subexpressions: the same op on the same operands with the same attributes.
  int dedupe(int id) {
    const Node &n = g_.nodes[id];
    std::string key = std::string(ir::opName(n.op)) + " " + ir::typeToString(n.type, g_.dims);
    for (int o : n.operands)
      key += " %" + std::to_string(o);
    const auto &specs = ir::opInfo(n.op).attrs;
    for (size_t i = 0; i < specs.size(); ++i)
      if (n.present[i])
        key += " " + specs[i].name + "=" + ir::formatAttrValue(n.attrs[i], g_.dims);
    auto [it, inserted] = seen_.try_emplace(key, id);
    return inserted ? -1 : it->second;
  }

  void removeDead() {
    std::vector<bool> live(g_.nodes.size(), false);
    for (int o : g_.outputs)
      live[o] = true;
    for (int i : g_.inputs)
      live[i] = true;
    for (size_t id = g_.nodes.size(); id-- > 0;)
      if (live[id])
        for (int o : g_.nodes[id].operands)
          live[o] = true;
    std::vector<int> newId(g_.nodes.size(), -1);
    std::vector<Node> kept;
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      if (!live[id]) {
        changed_ = true;
        continue;
      }
      newId[id] = static_cast<int>(kept.size());
      kept.push_back(std::move(g_.nodes[id]));
      for (int &o : kept.back().operands)
        o = newId[o];
    }
    g_.nodes = std::move(kept);
    // Kernels left without nodes disappear; the rest keep their order.
    std::vector<int> kernelId(g_.kernels.size(), -1);
    std::vector<std::string> names;
    for (Node &n : g_.nodes) {
      if (n.kernel < 0)
        continue;
      if (kernelId[n.kernel] < 0) {
        kernelId[n.kernel] = static_cast<int>(names.size());
        names.push_back(g_.kernels[n.kernel]);
      }
      n.kernel = kernelId[n.kernel];
    }
    changed_ |= names.size() != g_.kernels.size();
    g_.kernels = std::move(names);
    for (int &o : g_.outputs)
      o = newId[o];
    for (int &i : g_.inputs)
      i = newId[i];
  }

  Graph &g_;
  std::vector<int> repl_;
  std::unordered_map<std::string, int> seen_; // lookups only, never iterated
  bool changed_ = false;
};

class CanonicalizePass : public GraphPass {
protected:
  Expected<bool> runOnGraph(Graph &g, const DeviceProfile &) override {
    return Canonicalizer(g).run();
  }
};

} // namespace

std::unique_ptr<Pass> createCanonicalizePass() { return std::make_unique<CanonicalizePass>(); }

} // namespace kiln::passes
