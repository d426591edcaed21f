// fusion: grows kernels along producer -> consumer edges, critical-path edges first,
// merges sibling contractions that read the same input when the predicted makespan
// improves, then orders the graph so that each kernel's nodes are contiguous.
//
// A kernel has one anchor (a row reduction or a contraction) at most, except that
// sibling contractions reading the same A operand may share a kernel (Q, K and V
// projections; gate and up) and that a decode attention (softmax(f(q . K)) . V over one
// query row) is one kernel, plus any number of elementwise ops: a pointwise producer
// may join as a prologue of a row reduction or of a pointwise kernel; pointwise and
// rope consumers of the same elements join as the kernel's epilogue, also through a
// reshape; an insert_slice joins as the kernel's store. A producer joins a consumer only
// when no other kernel uses its values (so fusing never delays a branch that could have
// run beside it), every edge between the two kernels is elementwise, and no path leaves
// the pair and comes back (no cycles).
#include "passes/fusion.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <queue>
#include <span>

#include "ir/verifier.h"
#include "passes/cost_model.h"
#include "passes/dependence.h"

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::Node;
using ir::Op;

// Kernels of earlier siblings that one sibling contraction tries to join (see
// fuseSiblings).
constexpr int kSiblingWindow = 16;

// In order of strength: a merged kernel takes the stronger kind, and one of a row
// reduction and contractions is an attention (fuseAttention). A Solo op stays alone,
// except an insert_slice that joins a kernel as its store (the kernel keeps its kind).
enum class Kind : uint8_t { Solo, Pointwise, Rope, Row, Contraction, Attention };

bool isAnchor(Kind k) { return k >= Kind::Row; }
bool isView(const Node &n) { return ir::opCategory(n.op) == ir::Category::Layout; }
bool isCompute(const Node &n) { return ir::opCategory(n.op) != ir::Category::Source && !isView(n); }
bool isHalf(ir::DType t) { return t == ir::DType::F16 || t == ir::DType::BF16; }

Kind kindOf(const Node &n) {
  switch (ir::opCategory(n.op)) {
  case ir::Category::Unary:
  case ir::Category::Binary:
  case ir::Category::Select:
  case ir::Category::Cast:
    return Kind::Pointwise;
  case ir::Category::Rope:
    return Kind::Rope;
  case ir::Category::Reduce:
  case ir::Category::Normalize:
    return Kind::Row;
  case ir::Category::Contraction:
    return Kind::Contraction;
  case ir::Category::Source:
  case ir::Category::Gather:
  case ir::Category::Concat:
  case ir::Category::Layout:
  case ir::Category::Update:
    return Kind::Solo;
  }
  return Kind::Solo;
}

// What a kernel binds and moves: the buffers it reads from outside or writes for
// outside, their bytes, and the flops of its ops.
// A kernel's predicted time alone on the device, and the share of the device it keeps
// busy meanwhile (see makespan()); a negative time when not yet predicted.
struct Timing {
  double micros = -1;
  double share = 0;
};

struct Footprint {
  int buffers = 0;
  double bytes = 0;
  double flops = 0;
  bool f16 = false; // f16 rates when any op computes in f16 or bf16, as nodeMicros does
  int contractions = 0, rows = 0, elementBytes = 0; // anchors, for shared memory
};

class Fuser {
public:
  Fuser(Graph &g, const DeviceProfile &profile)
      : g_(g), profile_(profile), dims_(costDims(g)), bytes_(g.nodes.size()),
        flops_(g.nodes.size()), parent_(g.nodes.size()), kind_(g.nodes.size()),
        members_(g.nodes.size()), timing_(g.nodes.size()), users_(g.nodes.size()),
        computeUsers_(g.nodes.size()), exported_(g.nodes.size(), false), mark_(g.nodes.size(), 0),
        visit_(g.nodes.size(), 0), tried_(g.nodes.size(), 0) {
    size_t n = g.nodes.size();
    std::iota(parent_.begin(), parent_.end(), 0);
    for (size_t id = 0; id < n; ++id) {
      const ir::TensorType &t = g.nodes[id].type;
      bytes_[id] = static_cast<double>(ir::numElements(ir::evalShape(t.shape, dims_))) *
                   ir::dtypeBytes(t.dtype);
      flops_[id] = nodeCost(g, static_cast<int>(id), dims_).flops;
      kind_[id] = kindOf(g.nodes[id]);
      if (isCompute(g.nodes[id]))
        members_[id] = {static_cast<int>(id)};
      for (int o : g.nodes[id].operands)
        users_[o].push_back(static_cast<int>(id));
    }
    // Compute consumers, seen through views (views are free, and fusion moves none).
    for (size_t id = n; id-- > 0;) {
      std::vector<int> &out = computeUsers_[id];
      auto add = [&](int c) {
        if (std::find(out.begin(), out.end(), c) == out.end())
          out.push_back(c);
      };
      for (int u : users_[id]) {
        if (!isView(g.nodes[u]))
          add(u);
        else
          std::for_each(computeUsers_[u].begin(), computeUsers_[u].end(), add);
      }
    }
    // A value escapes its kernel when it, or a view of it, is a graph output.
    for (int o : g.outputs)
      for (int v = o;; v = g.nodes[v].operands[0]) {
        exported_[v] = true;
        if (!isView(g.nodes[v]))
          break;
      }
    // Kernels from an earlier run stay together.
    std::vector<int> first(g.kernels.size(), -1);
    for (size_t id = 0; id < n; ++id) {
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
    if (Status s = orderKernels(); s.failed())
      return s;
    std::vector<int> order = candidateOrder(*deps);
    fuseAttention();
    do
      fuseVertically(order);
    while (fuseSiblings(order, *deps));
    return emit();
  }

private:
  int find(int x) { return parent_[x] == x ? x : parent_[x] = find(parent_[x]); }
  int join(int a, int b) {
    a = find(a), b = find(b);
    if (a == b)
      return a;
    parent_[b] = a;
    Kind lo = std::min(kind_[a], kind_[b]), hi = std::max(kind_[a], kind_[b]);
    bool attention = lo == Kind::Row && hi == Kind::Contraction;
    kind_[a] = attention ? Kind::Attention : std::max(kind_[a], kind_[b]);
    members_[a].insert(members_[a].end(), members_[b].begin(), members_[b].end());
    members_[b].clear();
    timing_[a] = Timing{};
    return a;
  }
  const std::vector<int> &members(int root) const { return members_[root]; }
  bool compute(int id) const { return isCompute(g_.nodes[id]); }

  // Whether operand value `o` is `p` seen through views only.
  bool readsThrough(int o, int p) const {
    while (o != p && isView(g_.nodes[o]))
      o = g_.nodes[o].operands[0];
    return o == p;
  }
  // Whether operand value `o` holds `p`'s elements in `p`'s order: `p` itself, or a
  // reshape of it (a computed value is contiguous and row-major, so any reshape of it
  // numbers the same elements the same way).
  bool sameElements(int o, int p) const {
    return o == p || (g_.nodes[o].op == Op::Reshape && g_.nodes[o].operands[0] == p);
  }
  // Whether every read of `p` by `c` takes element i of `p` for element i of `c`.
  bool readsElementwise(const Node &c, int p) const {
    for (int o : c.operands)
      if (readsThrough(o, p) && (!sameElements(o, p) || g_.typeOf(o).shape != c.type.shape))
        return false;
    return true;
  }
  // The compute node whose buffer operand `o` reads, or -1 for an input, param or constant.
  int producer(int o) const {
    while (isView(g_.nodes[o]))
      o = g_.nodes[o].operands[0];
    return compute(o) ? o : -1;
  }

  Expected<DependenceGraph> dependences() {
    auto layouts = analyzeLayouts(g_);
    auto accesses = nodeAccesses(g_, layouts);
    if (!accesses)
      return accesses.error();
    return analyzeDependences(*accesses, nodeMicros(g_, profile_, dims_));
  }

  // Every node, those on the critical path first, then the others in program order.
  std::vector<int> candidateOrder(const DependenceGraph &d) {
    std::vector<int> order(d.criticalPath.begin(), d.criticalPath.end());
    std::vector<bool> seen(g_.nodes.size(), false);
    for (int v : order)
      seen[v] = true;
    for (size_t id = 0; id < g_.nodes.size(); ++id)
      if (!seen[id])
        order.push_back(static_cast<int>(id));
    return order;
  }

  // Places the kernels in a topological order (ord_). Merges keep it one, so that a
  // search for a path between two kernels visits only the kernels placed between them.
  Status orderKernels() {
    size_t n = g_.nodes.size(), placed = 0, kernels = 0;
    std::vector<int> pending(n, 0), ready;
    for (size_t v = 0; v < n; ++v) {
      int id = static_cast<int>(v);
      if (!compute(id))
        continue;
      kernels += find(id) == id;
      for (int u : computeUsers_[v])
        pending[find(u)] += find(u) != find(id);
    }
    ord_.assign(n, -1);
    for (size_t v = 0; v < n; ++v)
      if (compute(static_cast<int>(v)) && find(static_cast<int>(v)) == static_cast<int>(v) &&
          pending[v] == 0)
        ready.push_back(static_cast<int>(v));
    while (!ready.empty()) {
      int k = ready.back();
      ready.pop_back();
      ord_[k] = static_cast<int>(placed++);
      for (int m : members(k))
        for (int u : computeUsers_[m])
          if (find(u) != k && --pending[find(u)] == 0)
            ready.push_back(find(u));
    }
    if (placed != kernels)
      return makeError("error: fusion: the graph's kernel blocks depend on each other in a "
                       "cycle");
    return Status::ok();
  }

  // Decode attention: softmax(f(q . K)) . V over one query row, f a chain of pointwise
  // ops on the scores (a scale, a mask), becomes one kernel (compiler/lower_attention.cc
  // splits the keys across workgroups, as flash-decoding does), so that neither the
  // scores nor the probabilities pass through memory.
  void fuseAttention() {
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      std::vector<int> chain = attentionChain(static_cast<int>(id));
      if (chain.empty() || footprint(chain, {}).buffers > profile_.maxKernelBuffers)
        continue;
      for (size_t i = 1; i < chain.size(); ++i) {
        int P = find(chain[i - 1]), C = find(chain[i]);
        std::vector<int> reached;
        if (!reachesAround(P, C, reached)) // each value of the chain has one user, the next
          merge(P, C, reached);
      }
    }
  }

  // The nodes from the scores' matmul to `o`, the output's, when `o` ends an attention
  // that one kernel can compute: one query row, heads of at most kMaxAttentionHeadDim,
  // the softmax over at most kMaxAttentionKeys keys, each value in between read by the
  // next node alone and by nothing outside (and not in a kernel of an earlier run); else
  // none.
  std::vector<int> attentionChain(int o) {
    auto alone = [&](int v, int user) {
      return !exported_[v] && computeUsers_[v] == std::vector<int>{user} &&
             members(find(v)).size() == 1;
    };
    auto oneRow = [](const Node &n) {
      const ir::Shape &s = n.type.shape;
      return s.size() >= 2 && s[s.size() - 2] == ir::Dim::of(1) && ir::isFloat(n.type.dtype);
    };
    auto head = [](const ir::Dim &d) {
      return d.isStatic() && d.offset >= 1 && d.offset <= kMaxAttentionHeadDim;
    };
    const Node &on = g_.nodes[o];
    if (kindOf(on) != Kind::Contraction || on.attrBool("transpose_a") || !oneRow(on) ||
        !head(on.type.shape.back()) || members(find(o)).size() != 1)
      return {};
    int p = on.operands[0];
    const Node &pn = g_.nodes[p];
    const ir::Shape &scores = pn.type.shape;
    if (pn.op != Op::Softmax || !alone(p, o) || scores.back().max(g_.dims) > kMaxAttentionKeys ||
        ir::normalizeAxis(pn.attrInt("axis"), pn.type.rank()) != pn.type.rank() - 1)
      return {};
    std::vector<int> chain{o, p};
    int x = pn.operands[0];
    while (kindOf(g_.nodes[x]) == Kind::Pointwise) {
      if (!alone(x, chain.back()) || g_.nodes[x].type.shape != scores)
        return {};
      chain.push_back(x);
      // The operand that carries the scores: a matmul's, or a pointwise one's, of their
      // shape (a mask of the same shape may come first; then this is no attention).
      int next = -1;
      for (int y : g_.nodes[x].operands)
        if (compute(y) && g_.nodes[y].type.shape == scores &&
            (next < 0 || kindOf(g_.nodes[y]) == Kind::Contraction))
          next = y;
      if (next < 0)
        return {};
      x = next;
    }
    const Node &sn = g_.nodes[x];
    if (kindOf(sn) != Kind::Contraction || !alone(x, chain.back()) || sn.attrBool("transpose_a") ||
        sn.type.shape != scores || !oneRow(sn) || !head(g_.typeOf(sn.operands[0]).shape.back()) ||
        on.type.rank() != sn.type.rank() ||
        !std::equal(scores.begin(), scores.end() - 1, on.type.shape.begin()))
      return {};
    chain.push_back(x);
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

  // Vertical fusion, producer by producer, until no producer can join a consumer: a
  // producer refused while its consumers were apart may join once they are together.
  void fuseVertically(const std::vector<int> &order) {
    for (bool merged = true; merged;) {
      merged = false;
      for (int p : order)
        if (compute(p))
          for (int c : computeUsers_[p])
            merged |= tryMerge(p, c);
    }
  }

  // Whether producer node `p` (and its kernel) can join consumer node `c`'s kernel, and
  // if so joins them.
  bool tryMerge(int p, int c) {
    int P = find(p), C = find(c);
    if (P == C || !compatible(p, c))
      return false;
    // Every compute user of the producer's kernel is in one of the two kernels, and
    // those in the consumer's kernel read it elementwise.
    for (int m : members(P))
      for (int u : computeUsers_[m])
        if (find(u) != P && (find(u) != C || !compatible(m, u)))
          return false;
    if (!fits(footprint(members(P), members(C))))
      return false;
    std::vector<int> reached;
    if (reachesAround(P, C, reached))
      return false;
    merge(P, C, reached);
    return true;
  }

  // Whether rope `r`'s rows (its last dim, static) lie inside the rows of every
  // contraction in `p`'s kernel (their last dims static and multiples of it).
  bool ropeRowsFit(const Node &r, int p) {
    const ir::Dim &d = g_.typeOf(r.operands[0]).shape.back();
    for (int m : members(find(p))) {
      const ir::Dim &n = g_.typeOf(m).shape.back();
      if (kindOf(g_.nodes[m]) == Kind::Contraction &&
          !(d.isStatic() && n.isStatic() && d.offset > 0 && n.offset % d.offset == 0))
        return false;
    }
    return true;
  }

  // Whether the edge from producer node `p` to consumer node `c` may lie inside a kernel.
  bool compatible(int p, int c) {
    const Node &pn = g_.nodes[p], &cn = g_.nodes[c];
    Kind kp = kind_[find(p)], kc = kind_[find(c)];
    // An insert_slice's value is its whole destination, not the elements its kernel
    // computes; nothing reads it inside the kernel.
    if (kp == Kind::Solo || kindOf(pn) == Kind::Solo)
      return false;
    if (isAnchor(kp) && isAnchor(kc))
      return false; // two anchors share a kernel only as siblings (fuseSiblings)
    switch (kindOf(cn)) {
    case Kind::Pointwise: // an epilogue (or a pointwise chain): the same elements
      return readsElementwise(cn, p);
    case Kind::Rope:
      // Element i of a row needs its pair partner from the same row (the last dim), so
      // rope joins only a kernel that computes whole rows of its input elementwise: a
      // contraction's output (each element is its own dot product), a pointwise or a
      // rope kernel. A row kernel's rows run along its reduction axis, which need not
      // be rope's last dim, so rope does not join one; nor does it join a contraction
      // whose rows its own rows cross (the tile holding a pair partner is one row's).
      // The input is read in place or through a reshape, element for element; the
      // positions come from outside.
      return kp != Kind::Row && kp != Kind::Attention &&
             (kp != Kind::Contraction || ropeRowsFit(cn, p)) && sameElements(cn.operands[0], p) &&
             !readsThrough(cn.operands[1], p);
    case Kind::Row: // a prologue of the row reduction, on its input
      return kp == Kind::Pointwise && cn.operands[0] == p;
    case Kind::Contraction:
    case Kind::Attention:
      return false;
    case Kind::Solo: // the kernel stores its result into a view of a buffer
      return cn.op == Op::InsertSlice && sameElements(cn.operands[1], p) &&
             !readsThrough(cn.operands[0], p) && kc == Kind::Solo && members(find(c)).size() == 1;
    }
    return false;
  }

  // Horizontal fusion: kernels of sibling contractions that read one A operand become
  // one kernel that reads it once, with one launch, when the prediction improves.
  bool fuseSiblings(const std::vector<int> &order, const DependenceGraph &d) {
    bool merged = false;
    double current = makespan(d, -1, -1);
    for (int x : order) {
      std::vector<int> siblings;
      for (int u : users_[x])
        if (kindOf(g_.nodes[u]) == Kind::Contraction && g_.nodes[u].operands[0] == x)
          siblings.push_back(u);
      // Each sibling tries the kernels of the nearest earlier siblings, the latest first
      // (the one most likely to have room), until it joins one or has tried
      // kSiblingWindow kernels: fusion stays linear in the siblings of a value.
      for (size_t i = 1; i < siblings.size(); ++i) {
        unsigned round = ++triedStamp_;
        tried_[find(siblings[i])] = round;
        int left = kSiblingWindow;
        for (size_t j = i; j-- > 0 && left > 0;) {
          if (tried_[find(siblings[j])] == round)
            continue;
          tried_[find(siblings[j])] = round;
          --left;
          if (tryMergeSiblings(siblings[j], siblings[i], d, current)) {
            merged = true;
            break;
          }
        }
      }
    }
    return merged;
  }

  // Contractions `a` and `b` read the same A operand; they iterate the same rows (the
  // same batch dims and M, and so the same K) and differ only in N.
  bool sameRows(const Node &a, const Node &b) const {
    return a.attrBool("transpose_a") == b.attrBool("transpose_a") && a.type.dtype == b.type.dtype &&
           a.type.rank() == b.type.rank() &&
           std::equal(a.type.shape.begin(), a.type.shape.end() - 1, b.type.shape.begin());
  }

  // Whether every edge from kernel A into kernel B is a pointwise op reading element i
  // of a value for its element i, with anchors `a` and `b` of one output shape: the
  // merged kernel then has both operands of each such element at hand (gate and up
  // meeting in silu(gate) * up).
  bool edgesElementwise(int A, int B, int a, int b) {
    for (int m : members(A))
      for (int u : computeUsers_[m])
        if (find(u) == B &&
            (kindOf(g_.nodes[u]) != Kind::Pointwise || !readsElementwise(g_.nodes[u], m) ||
             g_.typeOf(a).shape != g_.typeOf(b).shape))
          return false;
    return true;
  }

  bool tryMergeSiblings(int a, int b, const DependenceGraph &d, double &current) {
    int A = find(a), B = find(b);
    if (A == B || kind_[A] == Kind::Attention || kind_[B] == Kind::Attention ||
        !sameRows(g_.nodes[a], g_.nodes[b]) || !edgesElementwise(A, B, a, b) ||
        !edgesElementwise(B, A, b, a) || !fits(footprint(members(A), members(B))))
      return false;
    if (ord_[A] > ord_[B])
      std::swap(A, B);
    std::vector<int> reached;
    if (reachesAround(A, B, reached))
      return false;
    double merged = makespan(d, A, B);
    if (!(merged < current))
      return false;
    current = merged;
    merge(A, B, reached);
    return true;
  }

  // The predicted makespan of the kernels, with kernels A and B counted as one when
  // A >= 0: a list schedule of the kernels over the device's parallel capacity. The
  // kernels are dispatched in the order emit() places them (dependences first, then
  // the earliest node), as a replayed plan issues them: each starts one launch after the
  // one before at the earliest, once its predecessors in the dependence graph are done,
  // and once the device has room for it. A kernel takes its roofline time alone on the
  // device (predictMicros) and a share of the device: the part of that time it keeps
  // the memory bus or the math units busy, at least one of the profile's parallel slots.
  // A large GEMV fills the device, so siblings run one after another (three 32 MB GEMVs
  // side by side take as long as one 96 MB GEMV, not as long as one 32 MB GEMV, which a
  // critical path of times alone would claim); small kernels run side by side. A merge
  // must shorten the makespan. Infinite when the kernels' edges form a cycle.
  double makespan(const DependenceGraph &d, int A, int B) {
    size_t n = g_.nodes.size();
    auto rootOf = [&](int v) { return find(v) == B ? A : find(v); };
    Scratch &s = scratch_;
    std::vector<Timing> &time = s.time;
    std::vector<double> &ready = s.ready;
    std::vector<int> &pending = s.pending, &first = s.first, &edgeBegin = s.edgeBegin;
    std::vector<std::pair<int, int>> &edges = s.edges;
    time.assign(n, Timing{});
    ready.assign(n, 0);
    pending.assign(n, 0);
    first.assign(n, -1);
    edgeBegin.assign(n + 1, 0);
    edges.clear();
    s.byFirst.clear();
    size_t kernels = 0;
    for (size_t v = 0; v < n; ++v) {
      int id = static_cast<int>(v), k = rootOf(id);
      if (!compute(id))
        continue;
      for (int p : d.preds[v])
        if (compute(p) && rootOf(p) != k)
          edges.push_back({rootOf(p), k});
      if (first[k] >= 0)
        continue;
      first[k] = id;
      s.byFirst.push_back(k);
      ++kernels;
      if (k == A)
        time[k] = timing(members(A), members(B));
      else if ((time[k] = timing_[k]).micros < 0)
        time[k] = timing_[k] = timing(members(k), {});
    }
    // Edges bucketed by source (a counting sort): edgeBegin[k] is where k's start.
    for (auto [from, to] : edges) {
      ++edgeBegin[from + 1];
      ++pending[to];
    }
    std::partial_sum(edgeBegin.begin(), edgeBegin.end(), edgeBegin.begin());
    std::vector<int> &succ = s.succ, &fill = s.fill;
    succ.resize(edges.size());
    fill.assign(edgeBegin.begin(), edgeBegin.end() - 1);
    for (auto [from, to] : edges)
      succ[fill[from]++] = to;
    // Ready kernels by first node: those ready from the start come sorted from a scan
    // of the nodes (`initial`), those that become ready later from a heap.
    std::vector<int> &initial = s.initial;
    initial.clear();
    for (int k : s.byFirst)
      if (pending[k] == 0)
        initial.push_back(k);
    size_t next = 0;
    using Item = std::pair<int, int>; // (first node, kernel)
    std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
    using Run = std::pair<double, double>; // (end, share)
    std::priority_queue<Run, std::vector<Run>, std::greater<>> running;
    double used = 0, lastStart = -profile_.launchMicros, end = 0;
    size_t done = 0;
    while (next < initial.size() || !queue.empty()) {
      int k;
      if (queue.empty() || (next < initial.size() && first[initial[next]] < queue.top().first)) {
        k = initial[next++];
      } else {
        k = queue.top().second;
        queue.pop();
      }
      ++done;
      double t = std::max(ready[k], lastStart + profile_.launchMicros);
      while (!running.empty() && (running.top().first <= t || used + time[k].share > 1 + 1e-9)) {
        t = std::max(t, running.top().first);
        used -= running.top().second;
        running.pop();
      }
      double finish = t + time[k].micros;
      running.push({finish, time[k].share});
      used += time[k].share;
      lastStart = t;
      end = std::max(end, finish);
      for (int e = edgeBegin[k]; e < edgeBegin[k + 1]; ++e) {
        int to = succ[e];
        ready[to] = std::max(ready[to], finish);
        if (--pending[to] == 0)
          queue.push({first[to], to});
      }
    }
    return done == kernels ? end : std::numeric_limits<double>::infinity();
  }

  // A kernel's time alone on the device, and the share of the device it keeps busy.
  Timing timing(std::span<const int> a, std::span<const int> b) {
    Footprint f = footprint(a, b);
    double micros = predictMicros(profile_, Cost{f.bytes, f.flops}, f.f16);
    double busy = std::max(f.bytes / (profile_.bandwidthGBs * 1e3),
                           f.flops / ((f.f16 ? profile_.f16Tflops : profile_.f32Tflops) * 1e6));
    double slot = 1.0 / profile_.parallelSlots, span = micros - profile_.launchMicros;
    return {micros, span > 0 ? std::clamp(busy / span, slot, 1.0) : slot};
  }

  // What kernels `a` and `b` bind and move as one kernel: the values they read from
  // outside, and the values used outside (an insert_slice writes its source's bytes
  // into its destination in place, which it binds but does not read).
  Footprint footprint(std::span<const int> a, std::span<const int> b) {
    stamp_ += 2;
    unsigned inside = stamp_, bound = stamp_ - 1;
    for (std::span<const int> part : {a, b})
      for (int m : part)
        mark_[m] = inside;
    Footprint f;
    for (std::span<const int> part : {a, b})
      for (int m : part) {
        const Node &n = g_.nodes[m];
        f.flops += flops_[m];
        f.f16 |= isHalf(n.type.dtype);
        if (kindOf(n) == Kind::Contraction) {
          ++f.contractions;
          f.elementBytes = std::max(f.elementBytes, ir::dtypeBytes(g_.typeOf(n.operands[0]).dtype));
        }
        f.rows += kindOf(n) == Kind::Row;
        for (size_t i = 0; i < n.operands.size(); ++i) {
          int o = n.operands[i], base = o;
          while (isView(g_.nodes[base]))
            base = g_.nodes[base].operands[0];
          if (mark_[base] == inside || mark_[o] == bound)
            continue;
          mark_[o] = bound;
          ++f.buffers;
          if (n.op != Op::InsertSlice || i != 0)
            f.bytes += bytes_[o];
        }
        bool escapes = exported_[m];
        for (int u : computeUsers_[m])
          escapes |= mark_[u] != inside;
        if (escapes) {
          ++f.buffers;
          f.bytes += bytes_[n.op == Op::InsertSlice ? n.operands[1] : m];
        }
      }
    return f;
  }

  // Whether one kernel of this footprint stays within the profile's limits.
  bool fits(const Footprint &f) const {
    return f.buffers <= profile_.maxKernelBuffers &&
           kernelSharedBytes(f.contractions, f.elementBytes, f.rows) <= profile_.sharedBytes;
  }

  // Whether a path leaves kernel P and reaches kernel C through a third kernel, for P
  // placed before C. Kernels placed after C cannot reach it, so the search stays between
  // the two. `reached` gets the kernels it visited: those P reaches before C.
  bool reachesAround(int P, int C, std::vector<int> &reached) {
    unsigned seen = ++stamp_;
    std::vector<int> stack{P};
    visit_[P] = seen;
    while (!stack.empty()) {
      int k = stack.back();
      stack.pop_back();
      for (int m : members(k))
        for (int u : computeUsers_[m]) {
          int U = find(u);
          if (U == C && k != P)
            return true;
          if (U == C || visit_[U] == seen || ord_[U] > ord_[C])
            continue;
          visit_[U] = seen;
          reached.push_back(U);
          stack.push_back(U);
        }
    }
    return false;
  }

  // Joins kernels P and C (P placed first; no path goes around them) and keeps ord_ a
  // topological order: of the kernels placed between them, those feeding C move before
  // the merged kernel and those P reaches (`reached`) after it, in the places the
  // groups held; the rest feed neither and keep theirs.
  void merge(int P, int C, std::vector<int> reached) {
    unsigned seen = ++stamp_;
    std::vector<int> feeding, stack{C};
    visit_[C] = seen;
    while (!stack.empty()) {
      int k = stack.back();
      stack.pop_back();
      for (int m : members(k))
        for (int o : g_.nodes[m].operands) {
          int p = producer(o);
          if (p < 0)
            continue;
          int K = find(p);
          if (K == P || visit_[K] == seen || ord_[K] < ord_[P])
            continue;
          visit_[K] = seen;
          feeding.push_back(K);
          stack.push_back(K);
        }
    }
    std::vector<int> places{ord_[P], ord_[C]};
    for (int k : feeding)
      places.push_back(ord_[k]);
    for (int k : reached)
      places.push_back(ord_[k]);
    std::sort(places.begin(), places.end());
    auto byPlace = [&](int x, int y) { return ord_[x] < ord_[y]; };
    std::sort(feeding.begin(), feeding.end(), byPlace);
    std::sort(reached.begin(), reached.end(), byPlace);
    size_t i = 0;
    for (int k : feeding)
      ord_[k] = places[i++];
    ord_[join(C, P)] = places[i];
    i = places.size() - reached.size();
    for (int k : reached)
      ord_[k] = places[i++];
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
    // A view left over goes with the kernel that makes its operand: alone, it could sit
    // between two parts of one kernel (made by the kernel, read back by it) as a cycle.
    for (size_t id = 0; id < n; ++id) {
      const Node &v = g_.nodes[id];
      if (unit[id] < 0 && isView(v) && unit[v.operands[0]] >= 0 &&
          unit[v.operands[0]] < static_cast<int>(n))
        unit[id] = unit[v.operands[0]];
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
  const DeviceProfile &profile_;
  std::vector<int64_t> dims_;         // where costs are predicted
  std::vector<double> bytes_, flops_; // per node, at dims_
  std::vector<int> parent_;
  std::vector<Kind> kind_;
  std::vector<std::vector<int>> members_;      // per kernel root
  std::vector<int> ord_;                       // per kernel root: a topological order
  std::vector<Timing> timing_;                 // per kernel root, once predicted
  std::vector<std::vector<int>> users_;        // direct users
  std::vector<std::vector<int>> computeUsers_; // compute users, seen through views
  std::vector<bool> exported_;                 // a graph output, or viewed by one
  std::vector<unsigned> mark_, visit_;         // scratch marks, valid when == a stamp
  unsigned stamp_ = 0;
  std::vector<unsigned> tried_; // fuseSiblings' kernels tried, valid when == triedStamp_
  unsigned triedStamp_ = 0;
  struct Scratch { // makespan()'s, kept between calls to spare the allocations
    std::vector<Timing> time;
    std::vector<double> ready;
    std::vector<int> pending, first, edgeBegin, succ, fill, byFirst, initial;
    std::vector<std::pair<int, int>> edges;
  } scratch_;
};

class FusionPass : public GraphPass {
protected:
  Expected<bool> runOnGraph(Graph &g, const DeviceProfile &profile) override {
    return Fuser(g, profile).run();
  }
};

} // namespace

std::unique_ptr<Pass> createFusionPass() { return std::make_unique<FusionPass>(); }

} // namespace kiln::passes
