// Dependency analysis: layouts of values in buffers, byte-range accesses, hazards in
// program order, transitive reduction, levels and the critical path.
#include "passes/dependence.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "ir/verifier.h"
#include "passes/cost_model.h"

namespace kiln::passes {

namespace {

using ir::Node;
using ir::Op;

bool isView(const Node &n) { return ir::opCategory(n.op) == ir::Category::Layout; }
bool isRoot(const Node &n) { return !isView(n) && n.op != Op::InsertSlice; }

bool isStaticShape(const ir::TensorType &t) {
  return std::all_of(t.shape.begin(), t.shape.end(), [](const ir::Dim &d) { return d.isStatic(); });
}

// Bytes spanned by an exact layout: from its first element to one past its last.
ByteRange span(int64_t offset, const std::vector<int64_t> &strides, const ir::Extents &extents,
               int elemBytes) {
  int64_t last = offset;
  for (size_t i = 0; i < extents.size(); ++i) {
    if (extents[i] == 0)
      return {offset * elemBytes, offset * elemBytes};
    last += (extents[i] - 1) * strides[i];
  }
  return {offset * elemBytes, (last + 1) * elemBytes};
}

bool isContiguous(const Layout &l, const ir::Extents &extents) {
  std::vector<int64_t> want = ir::contiguousStrides(extents);
  for (size_t i = 0; i < extents.size(); ++i)
    if (extents[i] != 1 && l.strides[i] != want[i])
      return false;
  return true;
}

// The exact layout of view `n` over `parent`, or false when only its range is known.
bool exactView(const ir::Graph &g, const Node &n, const Layout &parent, Layout &out) {
  const ir::TensorType &xt = g.typeOf(n.operands[0]);
  if (!parent.exact || !isStaticShape(n.type) || !isStaticShape(xt))
    return false;
  ir::Extents xe = ir::evalShape(xt.shape, {});
  out.offset = parent.offset;
  out.strides = parent.strides;
  switch (n.op) {
  case Op::Slice: {
    int axis = ir::normalizeAxis(n.attrInt("axis"), xt.rank());
    ir::Dim start = n.attrDim("start");
    if (!start.isStatic())
      return false;
    out.offset += start.offset * parent.strides[axis];
    return true;
  }
  case Op::Permute:
    for (size_t i = 0; i < out.strides.size(); ++i)
      out.strides[i] = parent.strides[n.attrInts("perm")[i]];
    return true;
  case Op::Broadcast: {
    out.strides.assign(n.type.rank(), 0);
    size_t lead = n.type.shape.size() - xe.size();
    for (size_t i = 0; i < xe.size(); ++i)
      out.strides[lead + i] = xe[i] == 1 ? 0 : parent.strides[i];
    return true;
  }
  case Op::Reshape:
    if (!isContiguous(parent, xe))
      return false;
    out.strides = ir::contiguousStrides(ir::evalShape(n.type.shape, {}));
    return true;
  case Op::View:
    if (!isContiguous(parent, xe) || !n.attrDim("offset").isStatic())
      return false;
    out.offset += n.attrDim("offset").offset;
    out.strides = n.attrInts("strides");
    return true;
  default:
    return false;
  }
}

std::string valueName(const ir::Graph &g, int id) { return "%" + g.nodes[id].name; }

} // namespace

std::vector<Layout> analyzeLayouts(const ir::Graph &g) {
  std::vector<int64_t> dims = costDims(g);
  std::vector<Layout> out(g.nodes.size());
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    Layout &l = out[id];
    int elem = ir::dtypeBytes(n.type.dtype);
    if (isRoot(n)) {
      l.buffer = static_cast<int>(id);
      l.range = {0, ir::numElements(ir::evalShape(n.type.shape, dims)) * elem};
      l.exact = isStaticShape(n.type);
      if (l.exact)
        l.strides = ir::contiguousStrides(ir::evalShape(n.type.shape, {}));
      continue;
    }
    const Layout &parent = out[n.operands[0]];
    if (n.op == Op::InsertSlice) { // the result is the destination, updated in place
      l = parent;
      continue;
    }
    l.buffer = parent.buffer;
    l.exact = exactView(g, n, parent, l);
    if (l.exact)
      l.range = span(l.offset, l.strides, ir::evalShape(n.type.shape, {}), elem);
    else
      l = Layout{parent.buffer, false, 0, {}, parent.range};
  }
  return out;
}

Expected<std::vector<Accesses>> nodeAccesses(const ir::Graph &g, std::span<const Layout> layouts) {
  std::vector<Accesses> out(g.nodes.size());
  // The contents of a buffer change at each insert_slice into it: `version` is the
  // node whose write a value sees, so a read of an older version after a newer write
  // can be caught.
  std::vector<int> version(g.nodes.size());
  std::map<int, std::vector<std::pair<int, ByteRange>>> updates; // buffer -> (node, range)
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    version[id] = isView(n) ? version[n.operands[0]] : static_cast<int>(id);
    if (n.op == Op::Input || n.op == Op::Param || n.op == Op::Constant || isView(n))
      continue;
    Accesses &a = out[id];
    for (size_t i = n.op == Op::InsertSlice ? 1 : 0; i < n.operands.size(); ++i) {
      int o = n.operands[i];
      a.reads.push_back({layouts[o].buffer, layouts[o].range});
    }
    if (n.op != Op::InsertSlice) {
      a.writes.push_back({layouts[id].buffer, layouts[id].range});
      continue;
    }
    // The inserted region, exactly where the destination's layout and offsets are known.
    const Layout &dst = layouts[n.operands[0]];
    const ir::TensorType &src = g.typeOf(n.operands[1]);
    ByteRange region = dst.range;
    const auto &offsets = n.attrDims("offsets");
    bool exact =
        dst.exact && isStaticShape(src) &&
        std::all_of(offsets.begin(), offsets.end(), [](ir::Dim d) { return d.isStatic(); });
    if (exact) {
      int64_t offset = dst.offset;
      for (size_t d = 0; d < offsets.size(); ++d)
        offset += offsets[d].offset * dst.strides[d];
      region = span(offset, dst.strides, ir::evalShape(src.shape, {}), ir::dtypeBytes(src.dtype));
    }
    a.writes.push_back({dst.buffer, region});
    updates[dst.buffer].push_back({static_cast<int>(id), region});
  }
  // A read (or a graph output) that sees an older version than an in-place write made
  // before it would see the new bytes instead.
  // `reader` is a node, or g.nodes.size() for the graph's results.
  auto checkRead = [&](size_t reader, int value) -> Status {
    auto it = updates.find(layouts[value].buffer);
    if (it == updates.end())
      return Status::ok();
    for (auto [u, region] : it->second)
      if (u > version[value] && static_cast<size_t>(u) < reader &&
          region.overlaps(layouts[value].range)) {
        std::string who =
            reader < g.nodes.size() ? valueName(g, static_cast<int>(reader)) : "the graph's result";
        return makeError("error: " + who + " reads " + valueName(g, value) + " after " +
                         valueName(g, u) + " overwrote it in place (insert_slice); copy it first");
      }
    return Status::ok();
  };
  if (updates.empty())
    return out;
  for (size_t id = 0; id < g.nodes.size(); ++id)
    for (int o : g.nodes[id].operands)
      if (!isView(g.nodes[id]))
        if (Status s = checkRead(id, o); s.failed())
          return s;
  for (int o : g.outputs)
    if (Status s = checkRead(g.nodes.size(), o); s.failed())
      return s;
  return out;
}

Reachability::Reachability(int n, const std::vector<int> &order,
                           const std::vector<std::pair<int, int>> &edges)
    : words_((static_cast<size_t>(n) + 63) / 64), bits_(static_cast<size_t>(n) * words_, 0),
      used_(n, 0) {
  std::vector<std::vector<int>> in(n);
  for (auto [a, b] : edges)
    in[b].push_back(a);
  for (int v : order) {
    uint64_t *row = &bits_[static_cast<size_t>(v) * words_];
    for (int u : in[v]) {
      const uint64_t *from = &bits_[static_cast<size_t>(u) * words_];
      for (size_t w = 0; w < used_[u]; ++w)
        row[w] |= from[w];
      row[u / 64] |= uint64_t{1} << (u % 64);
      used_[v] = std::max({used_[v], used_[u], static_cast<size_t>(u / 64 + 1)});
    }
  }
}

namespace {
std::vector<std::pair<int, int>> edgeList(const DependenceGraph &d) {
  std::vector<std::pair<int, int>> edges;
  for (int v = 0; v < d.units(); ++v)
    for (int u : d.preds[v])
      edges.push_back({u, v});
  return edges;
}
} // namespace

std::vector<int> programOrder(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i)
    v[i] = i;
  return v;
}

Reachability::Reachability(const DependenceGraph &d)
    : Reachability(d.units(), programOrder(d.units()), edgeList(d)) {}

int DependenceGraph::edges() const {
  int n = 0;
  for (const auto &p : preds)
    n += static_cast<int>(p.size());
  return n;
}

DependenceGraph analyzeDependences(std::span<const Accesses> units, std::vector<double> micros) {
  int n = static_cast<int>(units.size());
  DependenceGraph d;
  d.micros = std::move(micros);
  d.micros.resize(n, 0);

  // Hazards: per buffer, every earlier access against every later one. Touches are
  // gathered in program order (`seq`), then sorted by buffer and range start.
  struct Touch {
    int buffer;
    ByteRange range;
    int seq, unit;
    bool write;
  };
  std::vector<Touch> touches;
  for (int u = 0; u < n; ++u)
    for (bool write : {false, true})
      for (const Access &a : write ? units[u].writes : units[u].reads)
        if (!a.range.empty())
          touches.push_back({a.buffer, a.range, static_cast<int>(touches.size()), u, write});
  std::sort(touches.begin(), touches.end(), [](const Touch &x, const Touch &y) {
    return std::tie(x.buffer, x.range.begin, x.seq) < std::tie(y.buffer, y.range.begin, y.seq);
  });
  std::vector<std::tuple<int, int, int, int>> found; // (to, from, kind, buffer)
  // Overlapping pairs by a sweep over range starts: ranges that miss each other (the
  // arena's buffers, slices of one tensor) are never compared.
  std::vector<const Touch *> active;
  for (size_t j = 0; j < touches.size(); ++j) {
    const Touch &t = touches[j];
    if (j == 0 || touches[j - 1].buffer != t.buffer)
      active.clear();
    std::erase_if(active, [&](const Touch *i) { return i->range.end <= t.range.begin; });
    for (const Touch *i : active) {
      const Touch &a = i->seq < t.seq ? *i : t, &b = i->seq < t.seq ? t : *i;
      if (a.unit == b.unit || !(a.write || b.write))
        continue;
      Hazard kind = a.write && b.write ? Hazard::WAW : a.write ? Hazard::RAW : Hazard::WAR;
      found.push_back({b.unit, a.unit, static_cast<int>(kind), t.buffer});
    }
    active.push_back(&t);
  }
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  std::vector<std::vector<int>> direct(n);
  for (auto [to, from, kind, buffer] : found) {
    d.hazards.push_back({from, to, static_cast<Hazard>(kind), buffer});
    direct[to].push_back(from);
  }

  // Transitive reduction: visiting a unit's predecessors latest first, one already
  // reachable through a kept one is redundant. Only units with a hazard get a row of
  // bits (views and sources have none), numbered in program order, so a row holds bits
  // below its own number alone.
  std::vector<int> row(n, -1);
  int rows = 0;
  for (auto [to, from, kind, buffer] : found)
    row[to] = row[from] = 0;
  for (int u = 0; u < n; ++u)
    if (row[u] == 0)
      row[u] = rows++;
  size_t words = (static_cast<size_t>(rows) + 63) / 64;
  std::vector<uint64_t> reach(static_cast<size_t>(rows) * words, 0);
  d.preds.assign(n, {});
  for (int v = 0; v < n; ++v) {
    std::vector<int> &ps = direct[v];
    if (ps.empty())
      continue;
    std::sort(ps.begin(), ps.end(), std::greater<>());
    ps.erase(std::unique(ps.begin(), ps.end()), ps.end());
    uint64_t *bits = &reach[static_cast<size_t>(row[v]) * words];
    for (int p : ps) {
      int r = row[p];
      if (bits[r / 64] >> (r % 64) & 1)
        continue;
      d.preds[v].push_back(p);
      const uint64_t *from = &reach[static_cast<size_t>(r) * words];
      for (size_t w = 0; w <= static_cast<size_t>(r) / 64; ++w)
        bits[w] |= from[w];
      bits[r / 64] |= uint64_t{1} << (r % 64);
    }
    std::sort(d.preds[v].begin(), d.preds[v].end());
  }

  // Levels and the critical path (the longest chain by predicted time).
  d.asap.assign(n, 0);
  std::vector<double> finish(n, 0);
  std::vector<int> via(n, -1);
  int maxLevel = 0;
  for (int v = 0; v < n; ++v) {
    for (int p : d.preds[v]) {
      d.asap[v] = std::max(d.asap[v], d.asap[p] + 1);
      if (finish[p] > finish[v]) {
        finish[v] = finish[p];
        via[v] = p;
      }
    }
    finish[v] += d.micros[v];
    maxLevel = std::max(maxLevel, d.asap[v]);
  }
  d.alap.assign(n, maxLevel);
  for (int v = n; v-- > 0;)
    for (int p : d.preds[v])
      d.alap[p] = std::min(d.alap[p], d.alap[v] - 1);
  int end = -1;
  for (int v = 0; v < n; ++v)
    if (end < 0 || finish[v] > finish[end])
      end = v;
  for (int v = end; v >= 0; v = via[v])
    d.criticalPath.insert(d.criticalPath.begin(), v);
  d.criticalPathMicros = end >= 0 ? finish[end] : 0;
  return d;
}

std::string printDependences(const ir::Graph &g, std::span<const Layout> layouts,
                             const DependenceGraph &d) {
  static const char *kKinds[] = {"RAW", "WAR", "WAW"};
  std::string s;
  char buf[160];
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Layout &l = layouts[id];
    std::snprintf(buf, sizeof buf, "// layout %s: %s [%lld, %lld)%s\n", valueName(g, id).c_str(),
                  valueName(g, l.buffer).c_str(), static_cast<long long>(l.range.begin),
                  static_cast<long long>(l.range.end), l.exact ? "" : " (range only)");
    s += buf;
  }
  for (const Dependence &h : d.hazards)
    s += "// hazard " + std::string(kKinds[static_cast<int>(h.kind)]) + " " + valueName(g, h.from) +
         " -> " + valueName(g, h.to) + " on " + valueName(g, h.buffer) + "\n";
  for (int v = 0; v < d.units(); ++v)
    for (int p : d.preds[v])
      s += "// edge " + valueName(g, p) + " -> " + valueName(g, v) + "\n";
  for (int v = 0; v < d.units(); ++v) {
    if (d.micros[v] == 0 && d.preds[v].empty())
      continue;
    std::snprintf(buf, sizeof buf, "// level %s: asap %d alap %d, %.2f us\n",
                  valueName(g, v).c_str(), d.asap[v], d.alap[v], d.micros[v]);
    s += buf;
  }
  s += "// critical path:";
  for (size_t i = 0; i < d.criticalPath.size(); ++i)
    s += (i ? " -> " : " ") + valueName(g, d.criticalPath[i]);
  std::snprintf(buf, sizeof buf, " (%.2f us)\n", d.criticalPathMicros);
  return s + buf;
}

} // namespace kiln::passes
