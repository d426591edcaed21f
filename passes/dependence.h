// Dependency analysis on byte ranges: where each value lives, what each unit of work
// reads and writes, the hazards between units, and their levels and critical path.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/support.h"

namespace kiln::passes {

// [begin, end) in bytes of one buffer.
struct ByteRange {
  int64_t begin = 0;
  int64_t end = 0;
  bool empty() const { return begin >= end; }
  bool overlaps(const ByteRange &o) const {
    return !empty() && !o.empty() && begin < o.end && o.begin < end;
  }
};

// Where a value's elements are. Every value lives in the buffer of a root node (an
// input, param, constant or computed value); views (layout ops) and insert_slice
// results alias their operand's buffer. With static shapes the layout is exact (an
// element offset and strides); otherwise only the byte range is known, conservatively.
struct Layout {
  int buffer = -1; // the root node that owns the bytes
  bool exact = false;
  int64_t offset = 0;           // in elements, when exact
  std::vector<int64_t> strides; // in elements, when exact
  ByteRange range;              // bytes of the buffer this value may touch
};

// Layouts of every node, at the largest value of each dim.
std::vector<Layout> analyzeLayouts(const ir::Graph &g);

struct Access {
  int buffer;
  ByteRange range;
};

// What one unit of work (an op, or a fused kernel) reads and writes.
struct Accesses {
  std::vector<Access> reads, writes;
};

// Accesses of each node; views and sources do no work and access nothing. An error
// when an in-place insert_slice overwrites bytes that a later node still reads as the
// old value (the graph would need a copy there).
Expected<std::vector<Accesses>> nodeAccesses(const ir::Graph &g, std::span<const Layout> layouts);

enum class Hazard : uint8_t { RAW, WAR, WAW };

struct Dependence {
  int from, to; // unit indices, from < to in program order
  Hazard kind;
  int buffer;
};

// The ordering the units of a program need, from their accesses in program order.
struct DependenceGraph {
  std::vector<Dependence> hazards;     // every conflicting pair, one per kind and buffer
  std::vector<std::vector<int>> preds; // transitively reduced edges
  std::vector<int> asap, alap;         // levels: earliest and latest wave
  std::vector<double> micros;          // predicted time per unit
  std::vector<int> criticalPath;       // units, first to last
  double criticalPathMicros = 0;

  int units() const { return static_cast<int>(preds.size()); }
  int edges() const;
};

// 0, 1, ..., n-1: units in program order.
std::vector<int> programOrder(int n);

// Happens-before as bitsets: built from edges visited in a topological `order`.
class Reachability {
public:
  Reachability(int n, const std::vector<int> &order, const std::vector<std::pair<int, int>> &edges);
  // From a dependence graph's reduced edges, in program order.
  explicit Reachability(const DependenceGraph &d);
  // Whether `from` happens before `to`.
  bool before(int from, int to) const {
    return bits_[static_cast<size_t>(to) * words_ + from / 64] >> (from % 64) & 1;
  }

private:
  size_t words_;
  std::vector<uint64_t> bits_; // row `to`, bit `from`
  std::vector<size_t> used_;   // per row: words past the last one with a bit set
};

// `micros` gives each unit's predicted time (0 for units that do no work).
DependenceGraph analyzeDependences(std::span<const Accesses> units, std::vector<double> micros);

// For lit tests: the layouts, edges, hazards and the critical path, as `//` lines.
std::string printDependences(const ir::Graph &g, std::span<const Layout> layouts,
                             const DependenceGraph &d);

} // namespace kiln::passes
