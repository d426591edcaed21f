// The row template: T invocations per row of the anchor's input (T a power of two
// dividing the workgroup, so a workgroup holds 256 / T rows). The row's invocations
// combine their partial results by shuffles within each subgroup and, for rows wider
// than a subgroup, through shared memory; a last pass computes the normalized values and
// the epilogue, and a reduction's result is stored by invocation 0.
//
// When the row length is static and short enough, each invocation keeps its elements in
// registers ("slots", unrolled), so the input is read once: chunks of V consecutive
// elements (16 bytes of the input's dtype), invocation t taking chunk t, t + T, ..., so
// that loads and stores become vector accesses. Otherwise the passes are loops over
// elements t, t + T, ..., and the prologue is recomputed in each. Every invocation of a
// workgroup takes part in the reductions (rows past the last are computed as the last row
// and not stored), so shuffles and barriers are reached by all of them.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <tuple>

#include "compiler/templates.h"
#include "ir/verifier.h"

namespace kiln::compiler {

namespace {

using ir::Node;
using ir::Op;

// Elements an invocation keeps in registers at most.
constexpr int64_t kMaxSlots = 32;
// Elements per invocation the row width aims for when rows are short: 16 gives rows of
// 512 to one 32-wide subgroup, which then needs no shared memory or barrier.
constexpr int64_t kSlotsPerInvocation = 16;
// Bytes of the input a chunk of consecutive slots spans: one 128-bit access.
constexpr int64_t kChunkBytes = 16;

using Coords = std::vector<int>;
using ElementFn = std::function<int(const Coords &)>;

class RowLowering {
public:
  RowLowering(ElementLowering &el, int anchor)
      : el_(el), b_(el.b()), g_(el.graph()), a_(g_.nodes[anchor]), anchor_(anchor),
        input_(a_.operands[0]), xs_(g_.typeOf(input_).shape) {
    int rank = static_cast<int>(xs_.size());
    axis_ = ir::normalizeAxis(ir::opCategory(a_.op) == ir::Category::Reduce ? a_.attrInts("axes")[0]
                                                                            : a_.attrInt("axis"),
                              rank);
    for (int i = 0; i < rank; ++i)
      if (i != axis_)
        outer_.push_back(xs_[i]);
    // Invocations per row: about kSlotsPerInvocation elements each, a power of two, at
    // most a workgroup; registers hold the row when it has at most kMaxSlots per
    // invocation.
    const ir::Dim &len = xs_[axis_];
    if (len.isStatic()) {
      int64_t want = (len.offset + kSlotsPerInvocation - 1) / kSlotsPerInvocation;
      while (width_ < want && width_ < kWorkgroupSize)
        width_ *= 2;
      vec_ = std::min<int64_t>(8, kChunkBytes / ir::dtypeBytes(g_.typeOf(input_).dtype));
      while (vec_ > len.offset)
        vec_ /= 2;
      int64_t chunks = (len.offset + width_ * vec_ - 1) / (width_ * vec_);
      slots_ = chunks * vec_ <= kMaxSlots ? static_cast<int>(chunks * vec_) : 0;
    }
    if (slots_ == 0) {
      width_ = kWorkgroupSize;
      vec_ = 1;
    }
  }

  Status run(const KernelStores &stores, runtime::ExecKernel &exec) {
    bool reduce = ir::opCategory(a_.op) == ir::Category::Reduce;
    KernelStores perRow, perElement;
    for (auto store : stores) {
      const ir::Shape &s = el_.storedShape(store.first);
      bool rowResult = reduce && el_.dependsOn(store.first, anchor_);
      if (rowResult ? !sameSize(s, outer_) : !sameSize(s, xs_))
        return makeError("%" + g_.nodes[store.first].name + " is neither one value per row nor " +
                         "one per element of the rows of %" + a_.name);
      (rowResult ? perRow : perElement).push_back(store);
    }
    int64_t invocations = width_;
    for (const ir::Dim &d : outer_)
      if (__builtin_mul_overflow(invocations, d.max(g_.dims), &invocations) ||
          invocations > INT32_MAX)
        return makeError("more than 2^31-1 invocations for the rows of %" + a_.name);

    // Two regions, used by turns: see treeReduce.
    el_.kernel().shared = {{MemType::F32, 2 * kWorkgroupSize}};
    length_ = el_.extent(xs_[axis_]);
    int rows = el_.elements(outer_);
    int gid = b_.globalId();
    int width = b_.constI(width_);
    lane_ = b_.localId();
    t_ = iop(KOp::IRem, {gid, width});
    int row = iop(KOp::IDiv, {gid, width});
    rowValid_ = b_.op(KOp::ILt, KType::Bool, {row, rows});
    // Rows past the last compute the last row again, and store nothing.
    row_ = b_.op(KOp::Select, KType::I32, {rowValid_, row, iop(KOp::ISub, {rows, b_.constI(1)})});
    rowCoords_ = el_.delinearize(row_, outer_);
    if (slots_ > 0)
      makeSlots();

    ElementFn normalized = statistics();
    if (!perRow.empty()) {
      b_.ifBegin(b_.op(KOp::And, KType::Bool,
                       {rowValid_, b_.op(KOp::ILt, KType::Bool, {t_, b_.constI(1)})}));
      el_.pushScope();
      el_.setValue(anchor_, result_);
      for (auto [node, buffer] : perRow)
        el_.store(buffer, row_, node,
                  el_.valueAt(node, el_.delinearize(row_, el_.storedShape(node))));
      el_.popScope();
      b_.ifEnd();
    }
    if (!perElement.empty())
      storeElements(perElement, normalized);
    exec.grid = outer_;
    exec.grid.push_back(ir::Dim{width_});
    return Status::ok();
  }

private:
  struct Slot {
    Coords x;       // coordinates in the input (clamped into the row)
    int valid = -1; // Bool, or -1 when always inside the row
  };

  int iop(KOp op, std::vector<int> args) { return el_.iop(op, std::move(args)); }
  int fop(KOp op, std::vector<int> args) { return el_.fop(op, std::move(args)); }

  Coords at(int c) const {
    Coords x = rowCoords_;
    x.insert(x.begin() + axis_, c);
    return x;
  }

  // Slot j holds element (j / V) * T * V + t * V + j % V of the row; only the last chunk
  // can fall past the end, and its slots there read the last element (the value is
  // masked where it matters).
  void makeSlots() {
    int64_t len = xs_[axis_].offset;
    int last = b_.constI(len - 1);
    int first = iop(KOp::IMul, {t_, b_.constI(vec_)});
    for (int j = 0; j < slots_; ++j) {
      int64_t offset = j / vec_ * width_ * vec_ + j % vec_;
      int c = iop(KOp::IAdd, {first, b_.constI(offset)});
      Slot s;
      if (offset + (width_ - 1) * vec_ >= len) {
        s.valid = b_.op(KOp::ILt, KType::Bool, {c, length_});
        c = b_.op(KOp::Select, KType::I32, {s.valid, c, last});
      }
      s.x = at(c);
      slotList_.push_back(s);
    }
  }

  // `op` over the row of `valueOf`, starting from (and padded with) `init`, combined
  // across the row's invocations.
  int rowReduce(KOp op, float init, const ElementFn &valueOf) {
    if (slots_ > 0) {
      int acc = -1; // starts from the first slot: init + v is not v for v = -0
      for (const Slot &s : slotList_) {
        int v = valueOf(s.x);
        if (s.valid >= 0)
          v = b_.op(KOp::Select, KType::F32, {s.valid, v, el_.f(init)});
        acc = acc < 0 ? v : fop(op, {acc, v});
      }
      return treeReduce(op, acc);
    }
    int acc = b_.varNew(KType::F32, el_.f(init));
    int c = b_.loopBegin(t_, length_, b_.constI(width_));
    el_.pushScope();
    b_.varSet(acc, fop(op, {b_.varGet(KType::F32, acc), valueOf(at(c))}));
    el_.popScope();
    b_.loopEnd();
    return treeReduce(op, b_.varGet(KType::F32, acc));
  }

  // Combines `v` over the row's invocations, the reductions taking the two halves of
  // shared array 0 by turns (see combineLanes).
  int treeReduce(KOp op, int v) {
    return combineLanes(el_, op, v, width_, t_, 0, reductions_++ % 2 * kWorkgroupSize);
  }

  // Stores the per-element values: in registers, slot by slot; otherwise in a loop.
  void storeElements(const KernelStores &stores, const ElementFn &normalized) {
    auto storeAt = [&](const Coords &x) {
      if (normalized)
        el_.setValue(anchor_, normalized(x));
      int idx = el_.linearize(x, xs_);
      std::vector<std::tuple<int, int, int>> values; // (buffer, node, value)
      for (auto [node, buffer] : stores) {
        const ir::Shape &s = el_.storedShape(node);
        values.push_back({buffer, node, el_.valueAt(node, s == xs_ ? x : el_.delinearize(idx, s))});
      }
      return std::make_pair(idx, values);
    };
    if (slots_ > 0) {
      // Every value first; then the slots inside the row in one region, so that their
      // stores can become vector stores, and the masked slots each in its own.
      struct Pending {
        int buffer, index, node, value, valid;
      };
      std::vector<Pending> pending;
      for (const Slot &s : slotList_) {
        el_.pushScope(); // the anchor's value belongs to this slot
        auto [idx, values] = storeAt(s.x);
        el_.popScope();
        for (auto [buffer, node, v] : values)
          pending.push_back({buffer, idx, node, v, s.valid});
      }
      std::stable_partition(pending.begin(), pending.end(),
                            [](const Pending &p) { return p.valid < 0; });
      b_.ifBegin(rowValid_);
      for (const Pending &p : pending) {
        if (p.valid >= 0)
          b_.ifBegin(p.valid);
        el_.store(p.buffer, p.index, p.node, p.value);
        if (p.valid >= 0)
          b_.ifEnd();
      }
      b_.ifEnd();
      return;
    }
    b_.ifBegin(rowValid_);
    int c = b_.loopBegin(t_, length_, b_.constI(width_));
    el_.pushScope();
    auto [idx, values] = storeAt(at(c));
    for (auto [buffer, node, v] : values)
      el_.store(buffer, idx, node, v);
    el_.popScope();
    b_.loopEnd();
    b_.ifEnd();
  }

  int x(const Coords &c) { return el_.valueAt(input_, c); }
  int overLength(int v) { return fop(KOp::FDiv, {v, b_.op(KOp::Cast, KType::F32, {length_})}); }

  // A function of the element, computed once per element in registers (slots), where
  // values live at the kernel's top level.
  ElementFn once(ElementFn fn) {
    if (slots_ == 0)
      return fn;
    auto memo = std::make_shared<std::map<Coords, int>>();
    return [fn, memo](const Coords &c) {
      auto it = memo->find(c);
      return it != memo->end() ? it->second : (*memo)[c] = fn(c);
    };
  }

  // The row's statistics; for a reduction, its result (result_) and no element function;
  // for a normalization, the function that gives each normalized element.
  ElementFn statistics() {
    constexpr float inf = std::numeric_limits<float>::infinity();
    ElementFn xOf = [this](const Coords &c) { return x(c); };
    switch (a_.op) {
    case Op::ReduceSum:
      result_ = rowReduce(KOp::FAdd, 0, xOf);
      return nullptr;
    case Op::ReduceMean:
      result_ = overLength(rowReduce(KOp::FAdd, 0, xOf));
      return nullptr;
    case Op::ReduceMax:
      result_ = rowReduce(KOp::FMax, -inf, xOf);
      return nullptr;
    case Op::ReduceMin:
      result_ = rowReduce(KOp::FMin, inf, xOf);
      return nullptr;
    case Op::Softmax: {
      int m = rowReduce(KOp::FMax, -inf, xOf);
      KOp exp = ElementLowering::expOp(a_.type.dtype);
      ElementFn e = once([this, m, exp](const Coords &c) {
        return fop(exp, {fop(KOp::FSub, {x(c), m})});
      });
      // One division a row: e * (1 / sum) is within 1.5 ulp of e / sum.
      int inverse = fop(KOp::FDiv, {el_.f(1), rowReduce(KOp::FAdd, 0, e)});
      return [this, e, inverse](const Coords &c) { return fop(KOp::FMul, {e(c), inverse}); };
    }
    case Op::RmsNorm:
    case Op::LayerNorm: {
      // As the reference does: scale = 1 / sqrt(mean((x - center)^2) + eps).
      int center = a_.op == Op::LayerNorm ? overLength(rowReduce(KOp::FAdd, 0, xOf)) : el_.f(0);
      ElementFn d = once([this, center](const Coords &c) {
        return fop(KOp::FSub, {x(c), center});
      });
      int sq = rowReduce(KOp::FAdd, 0, [&](const Coords &c) {
        int v = d(c);
        return fop(KOp::FMul, {v, v});
      });
      int var = fop(KOp::FAdd, {overLength(sq), el_.f(static_cast<float>(a_.attrFloat("eps")))});
      int scale = fop(KOp::FDiv, {el_.f(1), fop(KOp::FSqrt, {var})});
      return [this, d, scale](const Coords &c) { return fop(KOp::FMul, {d(c), scale}); };
    }
    default:
      break;
    }
    return nullptr;
  }

  ElementLowering &el_;
  KernelBuilder &b_;
  const ir::Graph &g_;
  const Node &a_;
  int anchor_, input_;
  const ir::Shape &xs_;
  int axis_ = 0;
  ir::Shape outer_;
  int64_t width_ = 1; // invocations per row
  int64_t vec_ = 1;   // consecutive elements per chunk of slots
  int slots_ = 0;     // elements per invocation kept in registers; 0: loops
  int reductions_ = 0;
  std::vector<Slot> slotList_;
  int length_ = -1, lane_ = -1, t_ = -1, row_ = -1, rowValid_ = -1, result_ = -1;
  Coords rowCoords_;
};

} // namespace

int combineLanes(ElementLowering &el, KOp op, int v, int64_t width, int t, int shared,
                 int64_t region) {
  if (width == 1)
    return v;
  KernelBuilder &b = el.b();
  auto lt = [&](int x, int y) { return b.op(KOp::ILt, KType::Bool, {x, y}); };
  int size = b.subgroupSize(), lane = b.localId();
  int acc = b.varNew(KType::F32, v);
  for (int64_t mask = 1; mask < width; mask *= 2) {
    b.ifBegin(lt(b.constI(mask), size));
    int mine = b.varGet(KType::F32, acc);
    b.varSet(acc, el.fop(op, {mine, b.shuffleXor(mine, static_cast<int>(mask))}));
    b.ifEnd();
  }
  b.ifBegin(lt(size, b.constI(width)));
  int base = b.constI(region);
  b.ifBegin(lt(el.iop(KOp::IRem, {lane, size}), b.constI(1)));
  b.sharedStore(shared, el.iop(KOp::IAdd, {base, el.iop(KOp::IDiv, {lane, size})}),
                b.varGet(KType::F32, acc));
  b.ifEnd();
  b.barrier();
  int first = el.iop(KOp::IAdd, {base, el.iop(KOp::IDiv, {el.iop(KOp::ISub, {lane, t}), size})});
  int folded = b.varNew(KType::F32, b.sharedLoad(shared, KType::F32, first));
  int i = b.loopBegin(b.constI(1), el.iop(KOp::IDiv, {b.constI(width), size}), b.constI(1));
  int other = b.sharedLoad(shared, KType::F32, el.iop(KOp::IAdd, {first, i}));
  b.varSet(folded, el.fop(op, {b.varGet(KType::F32, folded), other}));
  b.loopEnd();
  b.varSet(acc, b.varGet(KType::F32, folded));
  b.ifEnd();
  return b.varGet(KType::F32, acc);
}

Status lowerRowKernel(ElementLowering &el, const KernelStores &stores, int anchor,
                      runtime::ExecKernel &exec) {
  return RowLowering(el, anchor).run(stores, exec);
}

} // namespace kiln::compiler
