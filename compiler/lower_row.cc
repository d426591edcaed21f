// The row template: one workgroup per row of the anchor's input. Each invocation walks a
// strided part of the row (kWorkgroupSize apart), the workgroup combines the partial
// results through shared memory, and a last pass over the row computes the normalized
// values and the epilogue; a reduction's result is stored by the first invocation.
// Prologue values are recomputed in every pass instead of being kept.
#include <cmath>
#include <functional>
#include <limits>

#include "compiler/templates.h"
#include "ir/verifier.h"

namespace kiln::compiler {

namespace {

using ir::Node;
using ir::Op;

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
  }

  Status run(const KernelStores &stores, runtime::ExecKernel &exec) {
    bool reduce = ir::opCategory(a_.op) == ir::Category::Reduce;
    KernelStores perRow, perElement;
    for (auto store : stores) {
      const ir::Shape &s = g_.typeOf(store.first).shape;
      bool rowResult = reduce && dependsOnAnchor(store.first);
      if (rowResult ? !sameSize(s, outer_) : !sameSize(s, xs_))
        return makeError("%" + g_.nodes[store.first].name + " is neither one value per row nor " +
                         "one per element of the rows of %" + a_.name);
      (rowResult ? perRow : perElement).push_back(store);
    }
    el_.kernel().shared = {{KType::F32, kWorkgroupSize}};
    length_ = el_.extent(xs_[axis_]);
    int rows = el_.elements(outer_);
    lane_ = b_.localId();
    row_ = b_.groupId();
    // Workgroups past the last row (a grid dispatched as rows of workgroups) do nothing;
    // the condition is the same for the whole workgroup, so barriers inside are reached
    // by all of its invocations.
    b_.ifBegin(b_.op(KOp::ILt, KType::Bool, {row_, rows}));
    el_.pushScope();
    rowCoords_ = el_.delinearize(row_, outer_);
    std::function<int(const std::vector<int> &)> normalized = statistics();
    if (!perRow.empty()) {
      b_.ifBegin(b_.op(KOp::ILt, KType::Bool, {lane_, b_.constI(1)}));
      el_.pushScope();
      el_.setValue(anchor_, result_);
      for (auto [node, buffer] : perRow)
        b_.store(buffer, row_, el_.valueAt(node, el_.delinearize(row_, g_.typeOf(node).shape)));
      el_.popScope();
      b_.ifEnd();
    }
    if (!perElement.empty())
      pass([&](const std::vector<int> &x) {
        if (normalized)
          el_.setValue(anchor_, normalized(x));
        int idx = el_.linearize(x, xs_);
        for (auto [node, buffer] : perElement) {
          const ir::Shape &s = g_.typeOf(node).shape;
          b_.store(buffer, idx, el_.valueAt(node, s == xs_ ? x : el_.delinearize(idx, s)));
        }
      });
    el_.popScope();
    b_.ifEnd();
    exec.grid = outer_;
    exec.grid.push_back(ir::Dim{kWorkgroupSize});
    return Status::ok();
  }

private:
  // Whether the node's value depends on the anchor's (through the kernel's nodes).
  bool dependsOnAnchor(int id) {
    if (id == anchor_)
      return true;
    if (id < anchor_)
      return false;
    for (int o : g_.nodes[id].operands)
      if (dependsOnAnchor(o))
        return true;
    return false;
  }

  // Runs `body` at each element of the row this invocation walks, in a loop.
  void pass(const std::function<void(const std::vector<int> &)> &body) {
    int c = b_.loopBegin(lane_, length_, b_.constI(kWorkgroupSize));
    el_.pushScope();
    std::vector<int> x = rowCoords_;
    x.insert(x.begin() + axis_, c);
    body(x);
    el_.popScope();
    b_.loopEnd();
  }

  // The workgroup's combination of every invocation's `v` by `op`, in every invocation:
  // a tree over shared memory, halving the active invocations at each step.
  int workgroupReduce(KOp op, int v) {
    b_.sharedStore(0, lane_, v);
    b_.barrier();
    for (int half = kWorkgroupSize / 2; half >= 1; half /= 2) {
      b_.ifBegin(b_.op(KOp::ILt, KType::Bool, {lane_, b_.constI(half)}));
      int other =
          b_.sharedLoad(0, KType::F32, b_.op(KOp::IAdd, KType::I32, {lane_, b_.constI(half)}));
      b_.sharedStore(0, lane_, el_.fop(op, {b_.sharedLoad(0, KType::F32, lane_), other}));
      b_.ifEnd();
      b_.barrier();
    }
    int r = b_.sharedLoad(0, KType::F32, b_.constI(0));
    b_.barrier(); // every invocation has read it before the array is reused
    return r;
  }

  // `op` over the row of `valueOf(x)`, starting from `init`.
  int rowReduce(KOp op, float init, const std::function<int(const std::vector<int> &)> &valueOf) {
    int acc = b_.varNew(KType::F32, el_.f(init));
    pass([&](const std::vector<int> &x) {
      b_.varSet(acc, el_.fop(op, {b_.varGet(KType::F32, acc), valueOf(x)}));
    });
    return workgroupReduce(op, b_.varGet(KType::F32, acc));
  }

  int x(const std::vector<int> &coords) { return el_.valueAt(input_, coords); }
  int overLength(int v) { return el_.fop(KOp::FDiv, {v, b_.op(KOp::Cast, KType::F32, {length_})}); }

  // The row's statistics; for a reduction, its result (result_) and no element function;
  // for a normalization, the function that gives each normalized element.
  std::function<int(const std::vector<int> &)> statistics() {
    constexpr float inf = std::numeric_limits<float>::infinity();
    auto xOf = [&](const std::vector<int> &c) { return x(c); };
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
      auto e = [this, m](const std::vector<int> &c) {
        return el_.fop(KOp::FExp, {el_.fop(KOp::FSub, {x(c), m})});
      };
      int sum = rowReduce(KOp::FAdd, 0, e);
      return [this, e, sum](const std::vector<int> &c) { return el_.fop(KOp::FDiv, {e(c), sum}); };
    }
    case Op::RmsNorm:
    case Op::LayerNorm: {
      // As the reference does: scale = 1 / sqrt(mean((x - center)^2) + eps).
      int center = a_.op == Op::LayerNorm ? overLength(rowReduce(KOp::FAdd, 0, xOf)) : el_.f(0);
      auto d = [this, center](const std::vector<int> &c) {
        return el_.fop(KOp::FSub, {x(c), center});
      };
      int sq = rowReduce(KOp::FAdd, 0, [&](const std::vector<int> &c) {
        int v = d(c);
        return el_.fop(KOp::FMul, {v, v});
      });
      int var =
          el_.fop(KOp::FAdd, {overLength(sq), el_.f(static_cast<float>(a_.attrFloat("eps")))});
      int scale = el_.fop(KOp::FDiv, {el_.f(1), el_.fop(KOp::FSqrt, {var})});
      return [this, d, scale](const std::vector<int> &c) {
        return el_.fop(KOp::FMul, {d(c), scale});
      };
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
  int length_ = -1, lane_ = -1, row_ = -1, result_ = -1;
  std::vector<int> rowCoords_;
};

} // namespace

Status lowerRowKernel(ElementLowering &el, const KernelStores &stores, int anchor,
                      runtime::ExecKernel &exec) {
  return RowLowering(el, anchor).run(stores, exec);
}

} // namespace kiln::compiler
