// Kernel program, barrier placement in three forms, and the schedule checker.
#include "passes/schedule.h"

#include <algorithm>
#include <climits>
#include <map>

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::Node;

// Up to this many kernels, redundant stream events are pruned one by one.
constexpr int kMaxPruneKernels = 512;

// Streams the stream form uses at most: CUDA maps streams onto 8 hardware queues by
// default (CUDA_DEVICE_MAX_CONNECTIONS), so more streams would only share them.
constexpr int kMaxStreams = 8;

bool isCompute(const Node &n) {
  ir::Category c = ir::opCategory(n.op);
  return c != ir::Category::Source && c != ir::Category::Layout;
}

Error unordered(const KernelProgram &prog, const Dependence &h, const char *form) {
  static const char *kKinds[] = {"RAW", "WAR", "WAW"};
  return makeError(std::string(form) + ": " + kKinds[static_cast<int>(h.kind)] + " hazard " +
                   prog.kernels[h.from].name + " -> " + prog.kernels[h.to].name +
                   " is not ordered");
}

// The accesses of `k` on `buffer`.
std::vector<ByteRange> rangesOn(const KernelInfo &k, int buffer) {
  std::vector<ByteRange> out;
  for (const auto *list : {&k.accesses.reads, &k.accesses.writes})
    for (const Access &a : *list)
      if (a.buffer == buffer)
        out.push_back(a.range);
  return out;
}

bool byStart(const Access &x, const Access &y) {
  return std::tie(x.buffer, x.range.begin, x.range.end) <
         std::tie(y.buffer, y.range.begin, y.range.end);
}

// One barrier's guards sorted by buffer and start, with the furthest end reached so
// far within each buffer, so that "does it guard this range" is one binary search.
class GuardIndex {
public:
  explicit GuardIndex(const Barrier &b) : sorted_(b.guards) {
    std::sort(sorted_.begin(), sorted_.end(), byStart);
    reach_.resize(sorted_.size());
    for (size_t i = 0; i < sorted_.size(); ++i) {
      bool same = i > 0 && sorted_[i - 1].buffer == sorted_[i].buffer;
      int64_t end = sorted_[i].range.empty() ? INT64_MIN : sorted_[i].range.end;
      reach_[i] = same ? std::max(reach_[i - 1], end) : end;
    }
  }
  bool guards(int buffer, const std::vector<ByteRange> &ranges) const {
    for (const ByteRange &r : ranges) {
      if (r.empty())
        continue;
      // The last guard on `buffer` that starts before r ends; an earlier one reaching
      // past r's start overlaps it.
      auto it = std::lower_bound(sorted_.begin(), sorted_.end(), Access{buffer, {r.end, INT64_MIN}},
                                 byStart);
      if (it == sorted_.begin())
        continue;
      size_t i = static_cast<size_t>(it - sorted_.begin()) - 1;
      if (sorted_[i].buffer == buffer && reach_[i] > r.begin)
        return true;
    }
    return false;
  }

private:
  std::vector<Access> sorted_;
  std::vector<int64_t> reach_;
};

} // namespace

Expected<KernelProgram> buildKernelProgram(const Graph &g, const DeviceProfile &p) {
  KernelProgram prog;
  prog.layouts = analyzeLayouts(g);
  prog.callerOwned.assign(g.nodes.size(), false);
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    prog.valueNames.push_back("%" + g.nodes[id].name);
    prog.callerOwned[id] =
        !isCompute(g.nodes[id]) && ir::opCategory(g.nodes[id].op) == ir::Category::Source;
  }
  for (int o : g.outputs)
    prog.callerOwned[prog.layouts[o].buffer] = true;
  auto accesses = nodeAccesses(g, prog.layouts);
  if (!accesses)
    return accesses.error();

  // Kernels in program order of their first node.
  std::map<int, int> kernelIndex; // graph kernel id -> program kernel
  std::vector<int> kernelOfNode(g.nodes.size(), -1);
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    if (!isCompute(n))
      continue;
    int k;
    if (n.kernel >= 0 && kernelIndex.count(n.kernel)) {
      k = kernelIndex[n.kernel];
    } else {
      k = static_cast<int>(prog.kernels.size());
      prog.kernels.push_back({n.kernel >= 0 ? g.kernels[n.kernel] : "%" + n.name, {}, {}, {}, 0});
      if (n.kernel >= 0)
        kernelIndex[n.kernel] = k;
    }
    prog.kernels[k].nodes.push_back(static_cast<int>(id));
    kernelOfNode[id] = k;
  }

  // A buffer is internal to a kernel when the kernel makes it and nothing outside the
  // kernel (another kernel, or the caller through an output) looks at its bytes.
  // Per buffer: the one kernel that touches it, or kShared when more than one does.
  constexpr int kNone = -1, kShared = -2;
  std::vector<int> touchedBy(g.nodes.size(), kNone);
  auto touch = [&](int buffer, int k) {
    int &t = touchedBy[buffer];
    t = t == kNone || t == k ? k : kShared;
  };
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    if (kernelOfNode[id] < 0)
      continue;
    for (const Access &a : (*accesses)[id].reads)
      touch(a.buffer, kernelOfNode[id]);
    for (const Access &a : (*accesses)[id].writes)
      touch(a.buffer, kernelOfNode[id]);
  }
  std::vector<bool> outputBuffer(g.nodes.size(), false);
  for (int o : g.outputs)
    outputBuffer[prog.layouts[o].buffer] = true;
  auto internal = [&](int buffer, int k) {
    return kernelOfNode[buffer] == k && touchedBy[buffer] == k && !outputBuffer[buffer];
  };
  std::vector<int64_t> dims = costDims(g);
  for (size_t k = 0; k < prog.kernels.size(); ++k) {
    KernelInfo &info = prog.kernels[k];
    bool f16 = false;
    for (int id : info.nodes) {
      for (const Access &a : (*accesses)[id].reads)
        if (kernelOfNode[a.buffer] != static_cast<int>(k))
          info.accesses.reads.push_back(a);
      for (const Access &a : (*accesses)[id].writes)
        if (!internal(a.buffer, static_cast<int>(k)))
          info.accesses.writes.push_back(a);
      // The ops' own traffic, less the values that stay inside the kernel (written
      // once and read once by the ops' count, never by the kernel).
      Cost c = nodeCost(g, id, dims);
      info.cost.flops += c.flops;
      info.cost.bytes += c.bytes;
      if (internal(id, static_cast<int>(k)))
        info.cost.bytes -= 2.0 * static_cast<double>(prog.layouts[id].range.end);
      f16 |= g.nodes[id].type.dtype == ir::DType::F16 || g.nodes[id].type.dtype == ir::DType::BF16;
    }
    info.cost.bytes = std::max(info.cost.bytes, 0.0);
    info.micros = predictMicros(p, info.cost, f16);
  }
  analyzeKernelDependences(prog);
  return prog;
}

void analyzeKernelDependences(KernelProgram &prog) {
  std::vector<Accesses> units;
  std::vector<double> micros;
  for (const KernelInfo &k : prog.kernels) {
    units.push_back(k.accesses);
    micros.push_back(k.micros);
  }
  prog.deps = analyzeDependences(units, micros);
}

Schedule placeBarriers(const KernelProgram &prog, const DeviceProfile &p) {
  Schedule s;
  const DependenceGraph &d = prog.deps;
  int n = d.units();

  // Queue form: kernels by their earliest wave; one barrier before each wave but the
  // first, which is the fewest any order allows (the longest chain needs that many).
  std::vector<int> order = programOrder(n);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return d.asap[a] < d.asap[b]; });
  s.queue.order = order;
  std::map<int, int> barrierOfWave;
  for (int pos = 0; pos < n; ++pos) {
    int w = d.asap[order[pos]];
    s.waves = std::max(s.waves, w + 1);
    if (w > 0 && !barrierOfWave.count(w)) {
      barrierOfWave[w] = static_cast<int>(s.queue.barriers.size());
      s.queue.barriers.push_back({pos, {}});
    }
  }
  for (const Dependence &h : d.hazards) {
    Barrier &b = s.queue.barriers[barrierOfWave[d.asap[h.to]]];
    for (const ByteRange &r : rangesOn(prog.kernels[h.to], h.buffer))
      b.guards.push_back({h.buffer, r});
  }
  // Each barrier's guards, sorted, with overlapping or touching ranges of a buffer merged.
  for (Barrier &b : s.queue.barriers) {
    std::sort(b.guards.begin(), b.guards.end(), byStart);
    std::vector<Access> merged;
    for (const Access &a : b.guards)
      if (!merged.empty() && merged.back().buffer == a.buffer &&
          a.range.begin <= merged.back().range.end)
        merged.back().range.end = std::max(merged.back().range.end, a.range.end);
      else
        merged.push_back(a);
    b.guards = std::move(merged);
  }

  // Graph form: the reduced DAG itself.
  for (int v = 0; v < n; ++v)
    for (int u : d.preds[v])
      s.graph.edges.push_back({u, v});

  // Stream form: a kernel continues the stream of a predecessor that ends it (the one
  // finishing last), else starts a stream, or once there are kMaxStreams, continues the
  // stream that frees up first; cross-stream edges become events unless an earlier wait
  // on the same stream already covers them.
  s.streams.streamOf.assign(n, -1);
  std::vector<double> finish(n, 0);
  s.start.assign(n, 0);
  for (int v : order) {
    int best = -1;
    for (int u : d.preds[v]) {
      int st = s.streams.streamOf[u];
      if (s.streams.streams[st].back() == u && (best < 0 || finish[u] > finish[best]))
        best = u;
    }
    int st = best >= 0 ? s.streams.streamOf[best] : static_cast<int>(s.streams.streams.size());
    if (best < 0 && st == kMaxStreams) {
      auto freesFirst = [&](const std::vector<int> &a, const std::vector<int> &b) {
        return finish[a.back()] < finish[b.back()];
      };
      st = static_cast<int>(
          std::min_element(s.streams.streams.begin(), s.streams.streams.end(), freesFirst) -
          s.streams.streams.begin());
    }
    if (st == static_cast<int>(s.streams.streams.size()))
      s.streams.streams.emplace_back();
    else
      s.start[v] = finish[s.streams.streams[st].back()];
    s.streams.streams[st].push_back(v);
    s.streams.streamOf[v] = st;
    for (int u : d.preds[v])
      s.start[v] = std::max(s.start[v], finish[u]);
    finish[v] = s.start[v] + d.micros[v];
  }
  std::map<std::pair<int, int>, int> waited; // (waiting stream, source stream) -> latest kernel
  std::vector<int> posInStream(n, 0);
  for (const auto &kernels : s.streams.streams)
    for (size_t i = 0; i < kernels.size(); ++i)
      posInStream[kernels[i]] = static_cast<int>(i);
  for (int v : order)
    for (int u : d.preds[v]) {
      int su = s.streams.streamOf[u], sv = s.streams.streamOf[v];
      if (su == sv)
        continue;
      auto key = std::make_pair(sv, su);
      auto it = waited.find(key);
      if (it != waited.end() && posInStream[it->second] >= posInStream[u])
        continue;
      waited[key] = u;
      s.streams.events.push_back({u, v});
    }

  // An event that other waits already imply is dropped (for graphs small enough that
  // re-checking after each removal stays cheap), so every event left is needed.
  if (n <= kMaxPruneKernels)
    for (size_t i = s.streams.events.size(); i-- > 0;) {
      StreamForm without = s.streams;
      without.events.erase(without.events.begin() + static_cast<std::ptrdiff_t>(i));
      if (!checkStreams(prog, without).failed())
        s.streams = std::move(without);
    }

  // Predicted time: waves run one after another; kernels in a wave share bandwidth.
  for (int w = 0; w < s.waves; ++w) {
    double longest = 0, bytes = 0;
    for (int k = 0; k < n; ++k)
      if (d.asap[k] == w) {
        longest = std::max(longest, d.micros[k]);
        bytes += prog.kernels[k].cost.bytes;
      }
    s.predictedMicros += std::max(longest, p.launchMicros + bytes / (p.bandwidthGBs * 1e3));
  }
  return s;
}

Status checkQueue(const KernelProgram &prog, const QueueForm &q) {
  int n = static_cast<int>(prog.kernels.size());
  if (static_cast<int>(q.order.size()) != n)
    return makeError("queue: the order does not hold every kernel once");
  std::vector<int> pos(n, -1);
  for (int i = 0; i < n; ++i)
    pos[q.order[i]] = i;
  std::vector<GuardIndex> index(q.barriers.begin(), q.barriers.end());
  std::vector<int> byPosition(q.barriers.size());
  for (size_t i = 0; i < byPosition.size(); ++i)
    byPosition[i] = static_cast<int>(i);
  std::sort(byPosition.begin(), byPosition.end(),
            [&](int a, int b) { return q.barriers[a].position < q.barriers[b].position; });
  for (const Dependence &h : prog.deps.hazards) {
    if (pos[h.from] >= pos[h.to])
      return unordered(prog, h, "queue");
    std::vector<ByteRange> ranges = rangesOn(prog.kernels[h.to], h.buffer);
    // The barriers between the two kernels: position in (pos[from], pos[to]].
    auto it = std::upper_bound(byPosition.begin(), byPosition.end(), pos[h.from],
                               [&](int p, int b) { return p < q.barriers[b].position; });
    bool ok = false;
    for (; !ok && it != byPosition.end() && q.barriers[*it].position <= pos[h.to]; ++it)
      ok = index[*it].guards(h.buffer, ranges);
    if (!ok)
      return unordered(prog, h, "queue");
  }
  return Status::ok();
}

Status checkGraph(const KernelProgram &prog, const GraphForm &f) {
  int n = static_cast<int>(prog.kernels.size());
  for (auto [a, b] : f.edges)
    if (a >= b)
      return makeError("graph: edge " + prog.kernels[a].name + " -> " + prog.kernels[b].name +
                       " goes against program order");
  Reachability reach(n, programOrder(n), f.edges);
  for (const Dependence &h : prog.deps.hazards)
    if (!reach.before(h.from, h.to))
      return unordered(prog, h, "graph");
  return Status::ok();
}

Status checkStreams(const KernelProgram &prog, const StreamForm &s) {
  int n = static_cast<int>(prog.kernels.size());
  std::vector<std::pair<int, int>> edges = s.events;
  for (const auto &kernels : s.streams)
    for (size_t i = 1; i < kernels.size(); ++i)
      edges.push_back({kernels[i - 1], kernels[i]});
  // A topological order of the happens-before edges (Kahn); none means a cycle, which
  // would deadlock the streams.
  std::vector<std::vector<int>> out(n);
  std::vector<int> pending(n, 0), order;
  for (auto [a, b] : edges) {
    out[a].push_back(b);
    ++pending[b];
  }
  for (int v = 0; v < n; ++v)
    if (pending[v] == 0)
      order.push_back(v);
  for (size_t i = 0; i < order.size(); ++i)
    for (int b : out[order[i]])
      if (--pending[b] == 0)
        order.push_back(b);
  if (static_cast<int>(order.size()) != n)
    return makeError("streams: the events and stream orders form a cycle");
  Reachability reach(n, order, edges);
  for (const Dependence &h : prog.deps.hazards)
    if (!reach.before(h.from, h.to))
      return unordered(prog, h, "streams");
  return Status::ok();
}

} // namespace kiln::passes
