// fusion: grows kernels along producer -> consumer edges, critical-path edges first,
// then orders the graph so that each kernel's nodes are contiguous.
//
// A kernel has at most one anchor (a row reduction or a contraction) and any number of
// pointwise ops: a pointwise producer may join as a prologue of a row reduction or of a
// pointwise kernel; pointwise consumers of the same shape join any kernel as its
// epilogue; an insert_slice joins as the kernel's store. A producer joins a consumer
// only when no other kernel uses its values (so fusing never delays a branch that
// could have run beside it) and no path leaves the pair and comes back (no cycles).
#include "passes/fusion.h"

#include <algorithm>
#include <numeric>
#include <queue>
#include <set>

#include "passes/cost_model.h"
#include "passes/dependence.h"

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::Node;
using ir::Op;

// Buffers one kernel may bind (inputs read and values written): a conservative limit
// that every target kiln emits for meets.
constexpr int kMaxKernelBuffers = 16;

enum class Kind : uint8_t { Pointwise, Row, Contraction, Solo };

bool isView(const Node &n) { return ir::opCategory(n.op) == ir::Category::Layout; }
bool isCompute(const Node &n) { return ir::opCategory(n.op) != ir::Category::Source && !isView(n); }

Kind kindOf(const Node &n) {
  switch (ir::opCategory(n.op)) {
  case ir::Category::Unary:
  case ir::Category::Binary:
  case ir::Category::Select:
  case ir::Category::Cast:
    return Kind::Pointwise;
  case ir::Category::Reduce:
  case ir::Category::Normalize:
    return Kind::Row;
  case ir::Category::Contraction:
    return Kind::Contraction;
  case ir::Category::Source:
  case ir::Category::Rope:
  case ir::Category::Gather:
  case ir::Category::Concat:
  case ir::Category::Layout:
  case ir::Category::Update:
    return Kind::Solo;
  }
  return Kind::Solo;
}

class Fuser {
public:
  explicit Fuser(Graph &g)
      : g_(g), parent_(g.nodes.size()), kind_(g.nodes.size()), members_(g.nodes.size()) {
    std::iota(parent_.begin(), parent_.end(), 0);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      kind_[i] = kindOf(g.nodes[i]);
      if (isCompute(g.nodes[i]))
        members_[i] = {static_cast<int>(i)};
    }
    // Compute consumers, seen through views.
    users_.resize(g.nodes.size());
    for (size_t id = 0; id < g.nodes.size(); ++id)
      for (int o : g.nodes[id].operands)
        users_[o].push_back(static_cast<int>(id));
    // Kernels from an earlier run stay together.
    std::vector<int> first(g.kernels.size(), -1);
    for (size_t id = 0; id < g.nodes.size(); ++id) {
      int k = g.nodes[id].kernel;
      if (k < 0 || !isCompute(g.nodes[id]))
        continue;
      if (first[k] < 0)
        first[k] = static_cast<int>(id);
      else
        join(first[k], static_cast<int>(id));
    }
  }

  Expected<bool> run() {
    auto deps = dependences();
    if (!deps)
      return deps.error();
    for (int p : candidateOrder(*deps))
      for (bool merged = true; merged;) {
        merged = false;
        for (int c : computeUsers(p))
          if (tryMerge(p, c)) {
            merged = true;
            break;
          }
      }
    return emit();
  }

private:
  int find(int x) { return parent_[x] == x ? x : parent_[x] = find(parent_[x]); }
  void join(int a, int b) {
    a = find(a), b = find(b);
    if (a == b)
      return;
    // The merged kernel keeps the stronger kind (one anchor at most; checked before).
    Kind k = kind_[a] != Kind::Pointwise ? kind_[a] : kind_[b];
    parent_[b] = a;
    kind_[a] = k;
    members_[a].insert(members_[a].end(), members_[b].begin(), members_[b].end());
    members_[b].clear();
  }

  // Compute nodes that read `id`, directly or through views.
  std::vector<int> computeUsers(int id) {
    std::vector<int> out, stack{id};
    while (!stack.empty()) {
      int v = stack.back();
      stack.pop_back();
      for (int u : users_[v]) {
        if (isView(g_.nodes[u]))
          stack.push_back(u);
        else if (std::find(out.begin(), out.end(), u) == out.end())
          out.push_back(u);
      }
    }
    return out;
  }

  Expected<DependenceGraph> dependences() {
    auto layouts = analyzeLayouts(g_);
    auto accesses = nodeAccesses(g_, layouts);
    if (!accesses)
      return accesses.error();
    return analyzeDependences(*accesses, nodeMicros(g_, deviceProfiles()[0], costDims(g_)));
  }

  // Producers on the critical path first, then every other node in program order.
  std::vector<int> candidateOrder(const DependenceGraph &d) {
    std::vector<int> order(d.criticalPath.begin(), d.criticalPath.end());
    std::vector<bool> seen(g_.nodes.size(), false);
    for (int v : order)
      seen[v] = true;
    for (size_t id = 0; id < g_.nodes.size(); ++id)
      if (!seen[id])
        order.push_back(static_cast<int>(id));
    std::erase_if(order, [&](int v) { return !isCompute(g_.nodes[v]); });
    return order;
  }

  const std::vector<int> &members(int root) { return members_[root]; }

  // Whether producer node `p` (and its kernel) can join consumer node `c`'s kernel.
  bool tryMerge(int p, int c) {
    int P = find(p), C = find(c);
    if (P == C || !compatible(p, c))
      return false;
    const std::vector<int> &pm = members(P), &cm = members(C);
    // Every compute user of the producer's kernel must be in one of the two kernels.
    for (int m : pm)
      for (int u : computeUsers(m))
        if (find(u) != P && find(u) != C)
          return false;
    if (reachesAround(P, C) || bufferCount(pm, cm) > kMaxKernelBuffers)
      return false;
    join(C, P);
    return true;
  }

  bool compatible(int p, int c) {
    const Node &pn = g_.nodes[p], &cn = g_.nodes[c];
    Kind kp = kind_[find(p)], kc = kind_[find(c)];
    if (kp == Kind::Solo)
      return false;
    if (kp != Kind::Pointwise && kc != Kind::Pointwise &&
        !(kc == Kind::Solo && cn.op == Op::InsertSlice))
      return false; // two anchors never share a kernel
    // The edge must not go through a view: the consumer reads the producer's elements
    // in its own iteration order.
    if (std::find(cn.operands.begin(), cn.operands.end(), p) == cn.operands.end())
      return false;
    switch (kindOf(cn)) {
    case Kind::Pointwise: // an epilogue (or a pointwise chain): the same elements
      return pn.type.shape == cn.type.shape;
    case Kind::Row: // a prologue of the row reduction, on its input
      return kp == Kind::Pointwise && cn.operands[0] == p;
    case Kind::Contraction:
      return false;
    case Kind::Solo: // the kernel stores its result into a view of a buffer
      return cn.op == Op::InsertSlice && cn.operands[1] == p && kc == Kind::Solo &&
             members(find(c)).size() == 1;
    }
    return false;
  }

  // Whether a path from kernel P reaches kernel C through some other kernel.
  bool reachesAround(int P, int C) {
    std::vector<bool> visited(g_.nodes.size(), false);
    std::vector<int> stack;
    for (int m : members(P))
      for (int u : computeUsers(m))
        if (find(u) != C && find(u) != P)
          stack.push_back(u);
    while (!stack.empty()) {
      int v = stack.back();
      stack.pop_back();
      if (visited[v])
        continue;
      visited[v] = true;
      if (find(v) == C)
        return true;
      for (int u : computeUsers(v))
        if (find(u) != P)
          stack.push_back(u);
    }
    return false;
  }

  // Buffers the merged kernel binds: values read from outside, values used outside.
  int bufferCount(const std::vector<int> &a, const std::vector<int> &b) {
    std::set<int> inside(a.begin(), a.end());
    inside.insert(b.begin(), b.end());
    std::set<int> bound;
    for (int m : inside) {
      for (int o : g_.nodes[m].operands)
        if (!inside.count(o))
          bound.insert(o);
      bool escapes = std::find(g_.outputs.begin(), g_.outputs.end(), m) != g_.outputs.end();
      for (int u : users_[m])
        escapes |= !inside.count(u);
      if (escapes)
        bound.insert(m);
    }
    return static_cast<int>(bound.size());
  }

  // Names kernels in order and reorders the nodes so that each kernel is contiguous.
  Expected<bool> emit() {
    size_t n = g_.nodes.size();
    // Views and constants used by one kernel alone move into it.
    std::vector<int> unit(n, -1);
    for (size_t id = 0; id < n; ++id)
      if (isCompute(g_.nodes[id]))
        unit[id] = find(static_cast<int>(id));
    for (size_t id = n; id-- > 0;) {
      const Node &v = g_.nodes[id];
      if (isCompute(v) || v.op == Op::Input || v.op == Op::Param || users_[id].empty())
        continue;
      int k = unit[users_[id][0]];
      bool one = k >= 0 && std::all_of(users_[id].begin(), users_[id].end(),
                                       [&](int u) { return unit[u] == k; });
      bool output = std::find(g_.outputs.begin(), g_.outputs.end(), id) != g_.outputs.end();
      if (one && !output)
        unit[id] = k;
    }
    for (size_t id = 0; id < n; ++id)
      if (unit[id] < 0)
        unit[id] = static_cast<int>(n + id); // a unit of its own

    // Kahn's algorithm over units, earliest original node first.
    std::vector<int> firstNode(2 * n, INT32_MAX), pending(2 * n, 0);
    std::vector<std::vector<int>> unitNodes(2 * n), succ(2 * n);
    for (size_t id = 0; id < n; ++id) {
      firstNode[unit[id]] = std::min(firstNode[unit[id]], static_cast<int>(id));
      unitNodes[unit[id]].push_back(static_cast<int>(id));
      for (int o : g_.nodes[id].operands)
        if (unit[o] != unit[id]) {
          succ[unit[o]].push_back(unit[id]);
          ++pending[unit[id]];
        }
    }
    using Item = std::pair<int, int>; // (first node, unit)
    std::priority_queue<Item, std::vector<Item>, std::greater<>> ready;
    for (size_t u = 0; u < 2 * n; ++u)
      if (!unitNodes[u].empty() && pending[u] == 0)
        ready.push({firstNode[u], static_cast<int>(u)});
    std::vector<int> order, kernelOf;
    std::vector<std::string> names;
    while (!ready.empty()) {
      int u = ready.top().second;
      ready.pop();
      bool isKernel = std::any_of(unitNodes[u].begin(), unitNodes[u].end(),
                                  [&](int id) { return isCompute(g_.nodes[id]); });
      int k = -1;
      if (isKernel) {
        k = static_cast<int>(names.size());
        names.push_back("k" + std::to_string(k));
      }
      for (int id : unitNodes[u]) {
        order.push_back(id);
        kernelOf.push_back(k);
      }
      for (int s : succ[u])
        if (--pending[s] == 0)
          ready.push({firstNode[s], s});
    }

    if (order.size() != n)
      return makeError("error: kiln bug: fusion left a cycle between kernels");
    std::vector<int> newId(n);
    for (size_t i = 0; i < n; ++i)
      newId[order[i]] = static_cast<int>(i);
    std::vector<Node> nodes;
    bool changed = names != g_.kernels;
    for (size_t i = 0; i < n; ++i) {
      Node node = std::move(g_.nodes[order[i]]);
      for (int &o : node.operands)
        o = newId[o];
      changed |= node.kernel != kernelOf[i] || order[i] != static_cast<int>(i);
      node.kernel = kernelOf[i];
      nodes.push_back(std::move(node));
    }
    g_.nodes = std::move(nodes);
    g_.kernels = std::move(names);
    for (int &i : g_.inputs)
      i = newId[i];
    for (int &o : g_.outputs)
      o = newId[o];
    return changed;
  }

  Graph &g_;
  std::vector<int> parent_;
  std::vector<Kind> kind_;
  std::vector<std::vector<int>> members_; // per kernel root
  std::vector<std::vector<int>> users_;
};

class FusionPass : public Pass {
public:
  Expected<bool> run(Graph &g) override { return Fuser(g).run(); }
};

} // namespace

std::unique_ptr<Pass> createFusionPass() { return std::make_unique<FusionPass>(); }

} // namespace kiln::passes
