// Element-wise lowering shared by the kernel templates: the value of a graph node at
// one element (given as coordinates in the node's shape), through pointwise ops, views
// and loads of values that live in memory.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "compiler/kernel_ir.h"
#include "ir/graph.h"

namespace kiln::compiler {

// The storage type of a dtype, or none when buffers of it are not supported.
std::optional<MemType> memTypeOf(ir::DType t);

// The register type values of a dtype compute in.
KType regType(ir::DType t);

class ElementLowering {
public:
  // `inKernel[n]`: node n is computed by this kernel. `readBuffer(n)`: the kernel
  // buffer that holds node n's value (contiguous, row-major in n's shape), for a node
  // computed elsewhere or a source; it adds the buffer to the kernel on first use.
  ElementLowering(const ir::Graph &g, Kernel &k, std::vector<bool> inKernel,
                  std::function<int(int)> readBuffer);

  KernelBuilder &b() { return b_; }
  Kernel &kernel() { return k_; }
  const ir::Graph &graph() const { return g_; }
  bool inKernel(int id) const { return inKernel_[id]; }
  // Whether node `id`'s value reads node `a`'s, through the kernel's nodes and views;
  // remembered per `a` and node, so that a DAG is walked once.
  bool dependsOn(int id, int a);

  // An extent as an I32 value (symbolic dims are read once, at the kernel's top).
  int extent(const ir::Dim &d);
  int elements(const ir::Shape &shape);
  // Row-major coordinates of `linear` in `shape`, and back.
  std::vector<int> delinearize(int linear, const ir::Shape &shape);
  int linearize(const std::vector<int> &coords, const ir::Shape &shape);

  // Node `id`'s value at `coords` (one I32 value per dim of its shape).
  int valueAt(int id, const std::vector<int> &coords);
  // The kernel buffer that holds node `id`'s value as the kernel reads it (contiguous,
  // row-major in its shape), or -1 where the kernel computes the value or views another.
  int bufferHolding(int id);
  // Through views alone (no view op but reshape, permute, broadcast and slice), the
  // node whose buffer holds the elements of node `id`, and the buffer (bufferHolding),
  // or -1 where another op stands between them.
  int viewedBuffer(int id);
  // The index in viewedBuffer(id) of node `id`'s element at `coords`.
  int viewedIndex(int id, const std::vector<int> &coords);
  // The shape a template iterates to store node `id`: its own, or for an insert_slice
  // the shape of the slice it writes (inside a kernel an insert_slice is only stored,
  // and its value at coordinates of the slice is the slice's).
  const ir::Shape &storedShape(int id) const;
  // Stores node `id`'s value `v` at element `index` (row-major in storedShape(id)) of
  // `buffer` (a bool as i32); an insert_slice's element goes to its place in the
  // destination.
  void store(int buffer, int index, int id, int v);
  // Issues the loads valueAt(id, coords) will need, and nothing else: a template that
  // loads several elements before computing any keeps the loads side by side, where
  // the code generator can merge them into vector loads.
  void loadInputs(int id, const std::vector<int> &coords);
  // From here on (in the current scope), `id` has value `v` at the element being
  // computed: how a template hands its anchor's result to the epilogue.
  void setValue(int id, int v) { scopes_.back().values[{id, {}}] = v; }
  // How a template gives the values of its contractions (computed by the template, not
  // element by element) at any coordinates of their results.
  void setAnchorValues(std::function<int(int, const std::vector<int> &)> fn) {
    anchorValue_ = std::move(fn);
  }

  // Values computed inside a loop or an if are not used after it: a template opens a
  // scope where it opens a region and closes it with the region.
  void pushScope() { scopes_.emplace_back(); }
  void popScope() { scopes_.pop_back(); }

  int f(float x) { return b_.constF(x); }
  // exp for a value of dtype `t`: to 16-bit precision for f16 and bf16, which round it
  // far more coarsely.
  static KOp expOp(ir::DType t) {
    return t == ir::DType::F16 || t == ir::DType::BF16 ? KOp::FExp16 : KOp::FExp;
  }
  int fop(KOp op, std::vector<int> args) { return b_.op(op, KType::F32, std::move(args)); }
  int iop(KOp op, std::vector<int> args) { return b_.op(op, KType::I32, std::move(args)); }

private:
  using Key = std::pair<int, std::vector<int>>;
  int lookup(const Key &key) const;
  int compute(int id, const std::vector<int> &coords);
  std::vector<int> operandCoords(const ir::Node &view, const std::vector<int> &coords);
  std::vector<int> broadcastCoords(const ir::Shape &from, const ir::Shape &to,
                                   const std::vector<int> &coords);
  int unaryFloat(ir::Op op, ir::DType t, int x);
  int unaryInt(ir::Op op, int x);
  int binary(ir::Op op, int a, int c, bool isInt);
  int sigmoid(ir::DType t, int x);
  int rope(const ir::Node &n, const std::vector<int> &coords);
  int gather(const ir::Node &n, const std::vector<int> &coords);
  int concat(const ir::Node &n, const std::vector<int> &coords);
  int clamp(int v, int lo, int hi);

  const ir::Graph &g_;
  Kernel &k_;
  KernelBuilder b_;
  std::vector<bool> inKernel_;
  std::map<int, std::vector<int8_t>> depends_; // per a, per node: dependsOn, or -1
  std::function<int(int)> readBuffer_;
  std::function<int(int, const std::vector<int> &)> anchorValue_;
  std::vector<int> dims_; // per symbolic dim: its value
  // What is known in a scope: values of nodes at coordinates, and index arithmetic done
  // (both ways: coordinates of a linear index, and the index of those coordinates).
  struct Scope {
    std::map<Key, int> values;
    std::map<Key, bool> loaded; // loadInputs done (a DAG's shared operands walked once)
    std::map<std::pair<int, ir::Shape>, std::vector<int>> delinearized;
    std::map<std::pair<std::vector<int>, ir::Shape>, int> linearized;
  };
  template <class K, class V> const V *find(std::map<K, V> Scope::*table, const K &key) const {
    for (size_t s = scopes_.size(); s-- > 0;)
      if (auto it = (scopes_[s].*table).find(key); it != (scopes_[s].*table).end())
        return &it->second;
    return nullptr;
  }
  std::vector<Scope> scopes_{1};
  std::vector<int> zeroBits_; // lowZeroBits' memo
};

} // namespace kiln::compiler
