// The pointwise template: one invocation per element, every stored value computed at
// that element (broadcast operands read through their coordinates).
#include "compiler/templates.h"

#include <algorithm>

namespace kiln::compiler {

namespace {

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
  std::sort(dims.begin(), dims.end(), [](const ir::Dim &a, const ir::Dim &b) {
    return std::tie(a.sym, a.offset) < std::tie(b.sym, b.offset);
  });
  return {dims, product};
}

} // namespace

bool sameSize(const ir::Shape &a, const ir::Shape &b) { return sizeKey(a) == sizeKey(b); }

Status lowerPointwiseKernel(ElementLowering &el, const KernelStores &stores,
                            runtime::ExecKernel &exec) {
  const ir::Graph &g = el.graph();
  const ir::Shape &shape = g.typeOf(stores.front().first).shape;
  for (auto [node, buffer] : stores)
    if (!sameSize(g.typeOf(node).shape, shape))
      return makeError("a pointwise kernel stores values of different sizes (%" +
                       g.nodes[stores.front().first].name + " and %" + g.nodes[node].name + ")");
  KernelBuilder &b = el.b();
  int gid = b.globalId();
  b.guard(b.op(KOp::ILt, KType::Bool, {gid, el.elements(shape)}));
  for (auto [node, buffer] : stores) {
    const ir::Shape &s = g.typeOf(node).shape;
    b.store(buffer, gid, el.valueAt(node, el.delinearize(gid, s)));
  }
  exec.grid = shape;
  return Status::ok();
}

} // namespace kiln::compiler
