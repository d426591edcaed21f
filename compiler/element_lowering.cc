// Element-wise lowering: pointwise ops become kernel IR math, views become coordinate
// maps, and values that live in memory become loads.
#include "compiler/element_lowering.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <numbers>

#include "ir/verifier.h"

namespace kiln::compiler {

using ir::DType;
using ir::Node;
using ir::Op;

std::optional<MemType> memTypeOf(DType t) {
  switch (t) {
  case DType::F32:
    return MemType::F32;
  case DType::F16:
    return MemType::F16;
  case DType::BF16:
    return MemType::BF16;
  case DType::I32:
    return MemType::I32;
  case DType::I64:
  case DType::Bool:
    return std::nullopt;
  }
  return std::nullopt;
}

KType regType(DType t) {
  return t == DType::Bool ? KType::Bool : ir::isFloat(t) ? KType::F32 : KType::I32;
}

ElementLowering::ElementLowering(const ir::Graph &g, Kernel &k, std::vector<bool> inKernel,
                                 std::function<int(int)> readBuffer)
    : g_(g), k_(k), b_(k), inKernel_(std::move(inKernel)), readBuffer_(std::move(readBuffer)) {
  k_.numDims = static_cast<int>(g.dims.size());
  for (size_t i = 0; i < g.dims.size(); ++i)
    dims_.push_back(b_.dim(static_cast<int>(i)));
}

int ElementLowering::extent(const ir::Dim &d) {
  if (d.isStatic())
    return b_.constI(d.offset);
  int v = dims_[d.sym];
  return d.offset ? iop(KOp::IAdd, {v, b_.constI(d.offset)}) : v;
}

int ElementLowering::elements(const ir::Shape &shape) {
  int n = b_.constI(1);
  for (const ir::Dim &d : shape)
    n = iop(KOp::IMul, {n, extent(d)});
  return n;
}

std::vector<int> ElementLowering::delinearize(int linear, const ir::Shape &shape) {
  if (const std::vector<int> *known = find(&Scope::delinearized, std::pair{linear, shape}))
    return *known;
  // `base + c` (0 < c < m), where base and the innermost extent past unit dims are both
  // multiples of m = 2^k as far as their low zero bits show: base's coordinates with c
  // added to the innermost one, which cannot carry. An unrolled loop's neighbouring
  // elements then share a base through views (the emitter merges their loads), and the
  // index arithmetic is done once.
  if (const KInst &def = k_.body[linear];
      def.op == KOp::IAdd && k_.body[def.args[1]].op == KOp::ConstI) {
    int base = def.args[0], offset = def.args[1]; // copied: the body grows below
    int64_t c = k_.body[offset].imm;
    size_t inner = shape.size();
    while (inner > 0 && shape[inner - 1].isStatic() && shape[inner - 1].offset == 1)
      --inner;
    if (inner > 0 && shape[inner - 1].isStatic()) {
      int bits = std::min(lowZeroBits(k_.body, base, zeroBits_),
                          std::countr_zero(static_cast<uint64_t>(shape[inner - 1].offset)));
      if (c > 0 && c < int64_t{1} << bits) {
        std::vector<int> coords = delinearize(base, shape);
        coords[inner - 1] = iop(KOp::IAdd, {coords[inner - 1], offset});
        scopes_.back().delinearized[{linear, shape}] = coords;
        scopes_.back().linearized[{coords, shape}] = linear;
        return coords;
      }
    }
  }
  std::vector<int> coords(shape.size());
  int rest = linear;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i].isStatic() && shape[i].offset == 1) {
      coords[i] = b_.constI(0);
      continue;
    }
    if (i == 0) { // the leading coordinate is what is left
      coords[i] = rest;
      break;
    }
    int e = extent(shape[i]);
    coords[i] = iop(KOp::IRem, {rest, e});
    rest = iop(KOp::IDiv, {rest, e});
  }
  scopes_.back().delinearized[{linear, shape}] = coords;
  scopes_.back().linearized[{coords, shape}] = linear;
  return coords;
}

int ElementLowering::linearize(const std::vector<int> &coords, const ir::Shape &shape) {
  // Coordinates made by delinearize in the same shape come from a linear index already:
  // reusing it keeps loads of consecutive elements visibly consecutive.
  if (const int *known = find(&Scope::linearized, std::pair{coords, shape}))
    return *known;
  // A constant offset on the last coordinate goes last: index + k (consecutive elements
  // then visibly share a base; see the PTX emitter's addressing).
  if (!coords.empty()) {
    const KInst &last = k_.body[coords.back()];
    if (last.op == KOp::IAdd && k_.body[last.args[1]].op == KOp::ConstI) {
      int offset = last.args[1]; // copied: linearize adds instructions, moving the body
      std::vector<int> inner = coords;
      inner.back() = last.args[0];
      int base = linearize(inner, shape);
      return iop(KOp::IAdd, {base, offset});
    }
  }
  int idx = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (idx < 0) {
      idx = coords[i];
      continue;
    }
    idx = iop(KOp::IAdd, {iop(KOp::IMul, {idx, extent(shape[i])}), coords[i]});
  }
  return idx < 0 ? b_.constI(0) : idx;
}

int ElementLowering::lookup(const Key &key) const {
  for (size_t s = scopes_.size(); s-- > 0;) {
    const std::map<Key, int> &values = scopes_[s].values;
    if (auto it = values.find({key.first, {}}); it != values.end())
      return it->second;
    if (auto it = values.find(key); it != values.end())
      return it->second;
  }
  return -1;
}

int ElementLowering::valueAt(int id, const std::vector<int> &coords) {
  Key key{id, coords};
  if (int v = lookup(key); v >= 0)
    return v;
  int v = compute(id, coords);
  scopes_.back().values[key] = v;
  return v;
}

// Coordinates in `from` (an operand's shape) of the element at `coords` in `to`, under
// broadcasting: trailing dims line up, and extent-1 dims read index 0.
std::vector<int> ElementLowering::broadcastCoords(const ir::Shape &from, const ir::Shape &to,
                                                  const std::vector<int> &coords) {
  if (from == to)
    return coords;
  std::vector<int> out(from.size());
  size_t lead = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i)
    out[i] = from[i].isStatic() && from[i].offset == 1 ? b_.constI(0) : coords[lead + i];
  return out;
}

// Coordinates in a view's operand of the element at `coords` in the view.
std::vector<int> ElementLowering::operandCoords(const Node &view, const std::vector<int> &coords) {
  const ir::Shape &in = g_.typeOf(view.operands[0]).shape;
  switch (view.op) {
  case Op::Broadcast:
    return broadcastCoords(in, view.type.shape, coords);
  case Op::Slice: {
    std::vector<int> out = coords;
    int axis = ir::normalizeAxis(view.attrInt("axis"), static_cast<int>(in.size()));
    out[axis] = iop(KOp::IAdd, {out[axis], extent(view.attrDim("start"))});
    return out;
  }
  case Op::Permute: {
    std::vector<int> out(in.size());
    const std::vector<int64_t> &perm = view.attrInts("perm");
    for (size_t i = 0; i < perm.size(); ++i)
      out[perm[i]] = coords[i];
    return out;
  }
  case Op::Reshape:
    return delinearize(linearize(coords, view.type.shape), in);
  case Op::View: { // element offset + sum(coord * stride) of the operand's storage
    int idx = extent(view.attrDim("offset"));
    const std::vector<int64_t> &strides = view.attrInts("strides");
    for (size_t i = 0; i < coords.size(); ++i)
      if (strides[i] != 0)
        idx = iop(KOp::IAdd, {idx, iop(KOp::IMul, {coords[i], b_.constI(strides[i])})});
    return delinearize(idx, in);
  }
  default:
    break;
  }
  assert(false && "not a view");
  return coords;
}

const ir::Shape &ElementLowering::storedShape(int id) const {
  const Node &n = g_.nodes[id];
  return n.op == Op::InsertSlice ? g_.typeOf(n.operands[1]).shape : n.type.shape;
}

void ElementLowering::store(int buffer, int index, int id, int v) {
  const Node &n = g_.nodes[id];
  if (n.type.dtype == DType::Bool)
    v = b_.op(KOp::Cast, KType::I32, {v});
  if (n.op == Op::InsertSlice) {
    std::vector<int> at = delinearize(index, storedShape(id));
    const std::vector<ir::Dim> &offsets = n.attrDims("offsets");
    for (size_t i = 0; i < at.size(); ++i)
      if (!(offsets[i].isStatic() && offsets[i].offset == 0))
        at[i] = iop(KOp::IAdd, {at[i], extent(offsets[i])});
    index = linearize(at, n.type.shape);
  }
  b_.store(buffer, index, v);
}

bool ElementLowering::dependsOn(int id, int a) {
  if (id == a)
    return true;
  const Node &n = g_.nodes[id];
  if (!inKernel_[id] && ir::opCategory(n.op) != ir::Category::Layout)
    return false;
  std::vector<int8_t> &known = depends_[a];
  if (known.empty())
    known.assign(g_.nodes.size(), -1);
  if (known[id] < 0) {
    known[id] = 0;
    for (int o : n.operands)
      if (dependsOn(o, a)) {
        known[id] = 1;
        break;
      }
  }
  return known[id] == 1;
}

void ElementLowering::loadInputs(int id, const std::vector<int> &coords) {
  Key key{id, coords};
  if (lookup(key) >= 0 || find(&Scope::loaded, key))
    return;
  scopes_.back().loaded[key] = true;
  const Node &n = g_.nodes[id];
  ir::Category c = ir::opCategory(n.op);
  if (c == ir::Category::Layout) {
    loadInputs(n.operands[0], operandCoords(n, coords));
    return;
  }
  if (c == ir::Category::Source && n.op == Op::Constant)
    return;
  if (inKernel_[id]) {
    // Only pointwise ops read their operands at the same element; the others load
    // where they compute.
    if (n.op == Op::InsertSlice)
      loadInputs(n.operands[1], coords);
    if (!ir::isPointwise(n.op))
      return;
    for (int o : n.operands)
      loadInputs(o, broadcastCoords(g_.typeOf(o).shape, n.type.shape, coords));
    return;
  }
  valueAt(id, coords); // a load
}

int ElementLowering::compute(int id, const std::vector<int> &coords) {
  const Node &n = g_.nodes[id];
  bool isInt = !ir::isFloat(n.type.dtype);
  auto arg = [&](int i) {
    int o = n.operands[i];
    return valueAt(o, broadcastCoords(g_.typeOf(o).shape, n.type.shape, coords));
  };
  switch (ir::opCategory(n.op)) {
  case ir::Category::Source:
    if (n.op == Op::Constant) { // splat; the driver refuses dense constants
      double c = n.attrFloat("value");
      if (n.type.dtype == DType::Bool)
        return b_.emit({KOp::ConstB, KType::Bool, {}, c != 0});
      return isInt ? b_.constI(static_cast<int64_t>(c)) : b_.constF(static_cast<float>(c));
    }
    break;
  case ir::Category::Layout:
    return valueAt(n.operands[0], operandCoords(n, coords));
  case ir::Category::Unary:
    if (inKernel_[id])
      return isInt ? unaryInt(n.op, arg(0)) : unaryFloat(n.op, n.type.dtype, arg(0));
    break;
  case ir::Category::Binary:
    if (inKernel_[id])
      return binary(n.op, arg(0), arg(1), isInt);
    break;
  case ir::Category::Select:
    if (inKernel_[id])
      return b_.op(KOp::Select, regType(n.type.dtype), {arg(0), arg(1), arg(2)});
    break;
  case ir::Category::Cast:
    if (inKernel_[id]) {
      int x = arg(0);
      KType from = regType(g_.typeOf(n.operands[0]).dtype), to = regType(n.type.dtype);
      int v = from == to ? x : b_.op(KOp::Cast, to, {x});
      // Registers hold f32: a narrower float keeps only the values it can represent.
      if (n.type.dtype == DType::F16)
        return fop(KOp::RoundF16, {v});
      if (n.type.dtype == DType::BF16)
        return fop(KOp::RoundBF16, {v});
      return v;
    }
    break;
  case ir::Category::Rope:
    if (inKernel_[id])
      return rope(n, coords);
    break;
  case ir::Category::Gather:
    if (inKernel_[id])
      return gather(n, coords);
    break;
  case ir::Category::Concat:
    if (inKernel_[id])
      return concat(n, coords);
    break;
  case ir::Category::Update: // only stored: its value at the slice's coordinates
    if (inKernel_[id])
      return valueAt(n.operands[1], coords);
    break;
  case ir::Category::Contraction:
    if (inKernel_[id]) {
      assert(anchorValue_ && "a contraction in a kernel without its template");
      return anchorValue_(id, coords);
    }
    break;
  case ir::Category::Reduce:
  case ir::Category::Normalize:
    // Computed here only by a template, which sets the value first.
    assert(!inKernel_[id] && "an anchor's value was not set");
    break;
  }
  // A value in memory: contiguous and row-major in its own shape (a bool as i32).
  int buffer = readBuffer_(id);
  int index = linearize(coords, n.type.shape);
  if (n.type.dtype == DType::Bool)
    return b_.op(KOp::Cast, KType::Bool, {b_.load(buffer, KType::I32, index)});
  return b_.load(buffer, regType(n.type.dtype), index);
}

int ElementLowering::bufferHolding(int id) {
  const Node &n = g_.nodes[id];
  ir::Category cat = ir::opCategory(n.op);
  if (inKernel_[id] || cat == ir::Category::Layout || n.op == Op::Constant)
    return -1;
  return readBuffer_(id);
}

// Views whose elements an index in their operand's storage reaches directly: all but an
// explicit view, whose strides say nothing of how its operand is stored.
static bool isPlainView(const Node &n) {
  return ir::opCategory(n.op) == ir::Category::Layout && n.op != Op::View;
}

int ElementLowering::viewedBuffer(int id) {
  while (isPlainView(g_.nodes[id]) && !inKernel_[id])
    id = g_.nodes[id].operands[0];
  return bufferHolding(id);
}

int ElementLowering::viewedIndex(int id, const std::vector<int> &coords) {
  std::vector<int> at = coords;
  while (isPlainView(g_.nodes[id]) && !inKernel_[id]) {
    at = operandCoords(g_.nodes[id], at);
    id = g_.nodes[id].operands[0];
  }
  return linearize(at, g_.typeOf(id).shape);
}

int ElementLowering::clamp(int v, int lo, int hi) {
  v = b_.op(KOp::Select, KType::I32, {b_.op(KOp::ILt, KType::Bool, {v, lo}), lo, v});
  return b_.op(KOp::Select, KType::I32, {b_.op(KOp::ILt, KType::Bool, {hi, v}), hi, v});
}

// Element i of a row of D (static, even) turns with its partner p by the angle
// pos * theta^(-2j/D) of their pair j: x[i] cos - x[p] sin for the pair's first element,
// x[i] cos + x[p] sin for its second. The angle is computed in f32, as inference engines
// do; docs/codegen.md says what that costs in precision.
int ElementLowering::rope(const Node &n, const std::vector<int> &coords) {
  const ir::Shape &xs = g_.typeOf(n.operands[0]).shape;
  int64_t d = xs.back().offset, half = d / 2;
  int i = coords.back();
  bool interleaved = n.attrEnum("mode") == "interleaved";
  int first, j, partner;
  if (interleaved) {
    j = iop(KOp::IDiv, {i, b_.constI(2)});
    first = b_.op(KOp::ILt, KType::Bool, {iop(KOp::IRem, {i, b_.constI(2)}), b_.constI(1)});
    partner = b_.op(KOp::Select, KType::I32,
                    {first, iop(KOp::IAdd, {i, b_.constI(1)}), iop(KOp::ISub, {i, b_.constI(1)})});
  } else {
    first = b_.op(KOp::ILt, KType::Bool, {i, b_.constI(half)});
    j = b_.op(KOp::Select, KType::I32, {first, i, iop(KOp::ISub, {i, b_.constI(half)})});
    partner = b_.op(KOp::Select, KType::I32, {first, iop(KOp::IAdd, {i, b_.constI(half)}), j});
  }
  std::vector<int> rowCoords(coords.begin(), coords.end() - 1);
  ir::Shape rowShape(xs.begin(), xs.end() - 1);
  int p = n.operands[1];
  int pos = b_.op(KOp::Cast, KType::F32,
                  {valueAt(p, broadcastCoords(g_.typeOf(p).shape, rowShape, rowCoords))});
  int exponent =
      fop(KOp::FMul, {b_.op(KOp::Cast, KType::F32, {j}), f(-2.0f / static_cast<float>(d))});
  int freq = fop(KOp::FPow, {f(static_cast<float>(n.attrFloat("theta"))), exponent});
  int angle = fop(KOp::FMul, {pos, freq});
  std::vector<int> pc = coords;
  pc.back() = partner;
  int self = valueAt(n.operands[0], coords), other = valueAt(n.operands[0], pc);
  int s = fop(KOp::FMul, {other, fop(KOp::FSin, {angle})});
  s = b_.op(KOp::Select, KType::F32, {first, fop(KOp::FNeg, {s}), s});
  return fop(KOp::FAdd, {fop(KOp::FMul, {self, fop(KOp::FCos, {angle})}), s});
}

// Row idx[...] of the table; an index outside the table (an error for the reference)
// reads its nearest row instead of memory past it.
int ElementLowering::gather(const Node &n, const std::vector<int> &coords) {
  int table = n.operands[0], idx = n.operands[1];
  size_t ri = g_.typeOf(idx).shape.size();
  int row = valueAt(idx, std::vector<int>(coords.begin(), coords.begin() + ri));
  int rows = extent(g_.typeOf(table).shape[0]);
  std::vector<int> at{clamp(row, b_.constI(0), iop(KOp::ISub, {rows, b_.constI(1)}))};
  at.insert(at.end(), coords.begin() + ri, coords.end());
  return valueAt(table, at);
}

// The operand whose range along the axis holds the coordinate, read under an if: the
// others are not read at all (an operand may be empty at some dims).
int ElementLowering::concat(const Node &n, const std::vector<int> &coords) {
  int axis = ir::normalizeAxis(n.attrInt("axis"), n.type.rank());
  KType t = regType(n.type.dtype);
  int result = b_.varNew(t, t == KType::F32 ? f(0) : b_.constI(0));
  int c = coords[axis], start = b_.constI(0);
  for (size_t i = 0; i < n.operands.size(); ++i) {
    int o = n.operands[i];
    int end = iop(KOp::IAdd, {start, extent(g_.typeOf(o).shape[axis])});
    int inside = b_.op(KOp::And, KType::Bool,
                       {b_.op(KOp::Not, KType::Bool, {b_.op(KOp::ILt, KType::Bool, {c, start})}),
                        b_.op(KOp::ILt, KType::Bool, {c, end})});
    b_.ifBegin(inside);
    pushScope();
    std::vector<int> at = coords;
    at[axis] = iop(KOp::ISub, {c, start});
    b_.varSet(result, valueAt(o, at));
    popScope();
    b_.ifEnd();
    start = end;
  }
  return b_.varGet(t, result);
}

int ElementLowering::sigmoid(DType t, int x) {
  return fop(KOp::FDiv, {f(1), fop(KOp::FAdd, {f(1), fop(expOp(t), {fop(KOp::FNeg, {x})})})});
}

int ElementLowering::unaryFloat(Op op, DType t, int x) {
  switch (op) {
  case Op::Neg:
    return fop(KOp::FNeg, {x});
  case Op::Abs:
    return fop(KOp::FAbs, {x});
  case Op::Exp:
    return fop(expOp(t), {x});
  case Op::Log:
    return fop(KOp::FLog, {x});
  case Op::Sqrt:
    return fop(KOp::FSqrt, {x});
  case Op::Rsqrt:
    return fop(KOp::FRsqrt, {x});
  case Op::Recip:
    return fop(KOp::FDiv, {f(1), x});
  case Op::Tanh:
    return fop(KOp::FTanh, {x});
  case Op::Sigmoid:
    return sigmoid(t, x);
  case Op::Silu:
    return fop(KOp::FMul, {x, sigmoid(t, x)});
  case Op::Gelu: {
    int e = fop(KOp::FErf, {fop(KOp::FMul, {x, f(static_cast<float>(1 / std::numbers::sqrt2))})});
    return fop(KOp::FMul, {fop(KOp::FMul, {f(0.5f), x}), fop(KOp::FAdd, {f(1), e})});
  }
  case Op::GeluTanh: {
    int x3 = fop(KOp::FMul, {x, fop(KOp::FMul, {x, x})});
    int inner = fop(KOp::FAdd, {x, fop(KOp::FMul, {f(0.044715f), x3})});
    float k = static_cast<float>(std::sqrt(2 / std::numbers::pi));
    int t = fop(KOp::FTanh, {fop(KOp::FMul, {f(k), inner})});
    return fop(KOp::FMul, {fop(KOp::FMul, {f(0.5f), x}), fop(KOp::FAdd, {f(1), t})});
  }
  case Op::Relu:
    return fop(KOp::FMax, {x, f(0)});
  case Op::Sin:
    return fop(KOp::FSin, {x});
  case Op::Cos:
    return fop(KOp::FCos, {x});
  case Op::Erf:
    return fop(KOp::FErf, {x});
  default:
    break;
  }
  assert(false && "unary op without a float lowering");
  return -1;
}

int ElementLowering::unaryInt(Op op, int x) {
  int zero = b_.constI(0);
  switch (op) {
  case Op::Neg:
    return iop(KOp::ISub, {zero, x});
  case Op::Abs:
    return b_.op(KOp::Select, KType::I32,
                 {b_.op(KOp::ILt, KType::Bool, {x, zero}), iop(KOp::ISub, {zero, x}), x});
  case Op::Relu:
    return b_.op(KOp::Select, KType::I32, {b_.op(KOp::ILt, KType::Bool, {zero, x}), x, zero});
  default:
    break;
  }
  assert(false && "unary op without an integer lowering");
  return -1;
}

int ElementLowering::binary(Op op, int a, int c, bool isInt) {
  KType t = isInt ? KType::I32 : KType::F32;
  switch (op) {
  case Op::Add:
    return b_.op(isInt ? KOp::IAdd : KOp::FAdd, t, {a, c});
  case Op::Sub:
    return b_.op(isInt ? KOp::ISub : KOp::FSub, t, {a, c});
  case Op::Mul:
    return b_.op(isInt ? KOp::IMul : KOp::FMul, t, {a, c});
  case Op::Div:
    return fop(KOp::FDiv, {a, c});
  case Op::Pow:
    return fop(KOp::FPow, {a, c});
  case Op::Max:
  case Op::Min:
    if (!isInt)
      return fop(op == Op::Max ? KOp::FMax : KOp::FMin, {a, c});
    return b_.op(
        KOp::Select, t,
        {b_.op(KOp::ILt, KType::Bool, op == Op::Max ? std::vector{c, a} : std::vector{a, c}), a,
         c});
  default:
    break;
  }
  assert(false && "binary op without a lowering");
  return -1;
}

} // namespace kiln::compiler
