// The pointwise template: each invocation computes kGrain consecutive elements of every
// stored value (broadcast operands read through their coordinates), so that loads and
// stores of consecutive elements can become vector accesses; the last invocation checks
// each element against the end.
#include "compiler/templates.h"

#include <algorithm>
#include <tuple>

namespace kiln::compiler {

namespace {

// Elements per invocation: four f32 make one 128-bit access.
constexpr int kGrain = 4;

// The extents of a shape other than 1, sorted, with the product of its static ones:
// two shapes with equal keys have as many elements for every value of the dims.
std::pair<std::vector<ir::Dim>, int64_t> sizeKey(const ir::Shape &shape) {
  std::vector<ir::Dim> dims;
  int64_t product = 1;
  for (const ir::Dim &d : shape)
    if (d.isStatic())
      product *= d.offset;
    else
      dims.push_back(d);
  std::sort(dims.begin(), dims.end());
  return {dims, product};
}

} // namespace

bool sameSize(const ir::Shape &a, const ir::Shape &b) { return sizeKey(a) == sizeKey(b); }

Status lowerPointwiseKernel(ElementLowering &el, const KernelStores &stores,
                            runtime::ExecKernel &exec) {
  const ir::Graph &g = el.graph();
  const ir::Shape &shape = el.storedShape(stores.front().first);
  for (auto [node, buffer] : stores)
    if (!sameSize(el.storedShape(node), shape))
      return makeError("a pointwise kernel stores values of different sizes (%" +
                       g.nodes[stores.front().first].name + " and %" + g.nodes[node].name + ")");
  KernelBuilder &b = el.b();
  int total = el.elements(shape);
  int first = el.iop(KOp::IMul, {b.globalId(), b.constI(kGrain)});
  b.guard(b.op(KOp::ILt, KType::Bool, {first, total}));
  // Every store of elements `es`, its value computed before any store.
  auto compute = [&](const std::vector<int> &es) {
    for (auto [node, buffer] : stores)
      for (int e : es)
        el.loadInputs(node, el.delinearize(e, el.storedShape(node)));
    std::vector<std::tuple<int, int, int, int>> out; // (buffer, element, node, value)
    for (auto [node, buffer] : stores)
      for (int e : es)
        out.push_back({buffer, e, node, el.valueAt(node, el.delinearize(e, el.storedShape(node)))});
    return out;
  };
  std::vector<int> elements;
  for (int j = 0; j < kGrain; ++j)
    elements.push_back(j == 0 ? first : el.iop(KOp::IAdd, {first, b.constI(j)}));
  // Every element inside: all loads, then all stores, with no checks between them.
  int whole = b.op(KOp::ILt, KType::Bool, {elements.back(), total});
  b.ifBegin(whole);
  el.pushScope();
  for (auto [buffer, e, node, v] : compute(elements))
    el.store(buffer, e, node, v);
  el.popScope();
  b.ifEnd();
  b.ifBegin(b.op(KOp::Not, KType::Bool, {whole}));
  for (int e : elements) {
    b.ifBegin(b.op(KOp::ILt, KType::Bool, {e, total}));
    el.pushScope();
    for (auto [buffer, e2, node, v] : compute({e}))
      el.store(buffer, e2, node, v);
    el.popScope();
    b.ifEnd();
  }
  b.ifEnd();
  exec.grid = shape;
  exec.grain = kGrain;
  return Status::ok();
}

} // namespace kiln::compiler
