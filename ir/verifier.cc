// Shape inference per op category, and the verifier that checks a whole graph with it.
#include "ir/verifier.h"

#include <algorithm>

namespace kiln::ir {

namespace {

// a <= b for every binding of the dims in their ranges.
bool provablyLE(Dim a, Dim b, std::span<const SymDim> dims) {
  if (a.sym == b.sym)
    return a.offset <= b.offset;
  return a.max(dims) <= b.min(dims);
}

bool isStaticOne(const Dim &d) { return d.isStatic() && d.offset == 1; }

struct Ctx {
  const Graph &g;
  const Node &n;
  std::string str(const TensorType &t) const { return typeToString(t, g.dims); }
  std::string str(const Dim &d) const { return dimToString(d, g.dims); }
  const TensorType &operand(int i) const { return g.nodes[n.operands[i]].type; }
};

Error fail(std::string msg) { return makeError(std::move(msg)); }

Expected<TensorType> inferPointwise(const Ctx &c) {
  const OpInfo &info = opInfo(c.n.op);
  switch (info.category) {
  case Category::Unary: {
    const TensorType &x = c.operand(0);
    bool intOk = c.n.op == Op::Neg || c.n.op == Op::Abs || c.n.op == Op::Relu;
    if (!isFloat(x.dtype) && !(intOk && (x.dtype == DType::I32 || x.dtype == DType::I64)))
      return fail(std::string(info.name) + " needs a float operand, got " + c.str(x));
    return x;
  }
  case Category::Binary: {
    const TensorType &a = c.operand(0), &b = c.operand(1);
    if (a.dtype != b.dtype)
      return fail(std::string(info.name) + " operands differ in dtype: " + c.str(a) + " and " +
                  c.str(b));
    if (a.dtype == DType::Bool)
      return fail(std::string(info.name) + " does not take bool operands");
    if (c.n.op == Op::Pow && !isFloat(a.dtype))
      return fail("pow needs float operands");
    auto s = broadcastShapes(a.shape, b.shape);
    if (!s)
      return fail("shapes " + c.str(a) + " and " + c.str(b) + " do not broadcast");
    return TensorType{a.dtype, *s};
  }
  case Category::Select: {
    const TensorType &p = c.operand(0), &a = c.operand(1), &b = c.operand(2);
    if (p.dtype != DType::Bool)
      return fail("select needs a bool condition, got " + c.str(p));
    if (a.dtype != b.dtype)
      return fail("select operands differ in dtype: " + c.str(a) + " and " + c.str(b));
    auto s = broadcastShapes(a.shape, b.shape);
    if (s)
      s = broadcastShapes(p.shape, *s);
    if (!s)
      return fail("select shapes " + c.str(p) + ", " + c.str(a) + ", " + c.str(b) +
                  " do not broadcast");
    return TensorType{a.dtype, *s};
  }
  case Category::Cast:
    if (c.n.type.shape != c.operand(0).shape)
      return fail("cast changes the shape: " + c.str(c.operand(0)) + " to " + c.str(c.n.type));
    return c.n.type;
  case Category::Source:
  case Category::Reduce:
  case Category::Normalize:
  case Category::Rope:
  case Category::Contraction:
  case Category::Gather:
  case Category::Concat:
  case Category::Layout:
  case Category::Update:
    break;
  }
  return fail("not a pointwise op");
}

Expected<TensorType> inferReduce(const Ctx &c) {
  const TensorType &x = c.operand(0);
  if (x.dtype == DType::Bool || (c.n.op == Op::ReduceMean && !isFloat(x.dtype)))
    return fail(std::string(opName(c.n.op)) + " does not take " + c.str(x));
  std::vector<bool> reduced(x.rank(), false);
  for (int64_t a : c.n.attrInts("axes")) {
    int ax = normalizeAxis(a, x.rank());
    if (ax < 0)
      return fail("axis " + std::to_string(a) + " is out of range for " + c.str(x));
    if (reduced[ax])
      return fail("axis " + std::to_string(a) + " is listed twice");
    reduced[ax] = true;
  }
  TensorType out{x.dtype, {}};
  bool keep = c.n.attrBool("keepdims");
  for (int i = 0; i < x.rank(); ++i) {
    if (!reduced[i])
      out.shape.push_back(x.shape[i]);
    else if (keep)
      out.shape.push_back(Dim::of(1));
  }
  return out;
}

Expected<TensorType> inferNormalize(const Ctx &c) {
  const TensorType &x = c.operand(0);
  if (!isFloat(x.dtype))
    return fail(std::string(opName(c.n.op)) + " needs a float operand, got " + c.str(x));
  if (normalizeAxis(c.n.attrInt("axis"), x.rank()) < 0)
    return fail("axis " + std::to_string(c.n.attrInt("axis")) + " is out of range for " + c.str(x));
  if (c.n.op != Op::Softmax && !(c.n.attrFloat("eps") >= 0))
    return fail("eps must be a non-negative number");
  return x;
}

Expected<TensorType> inferRope(const Ctx &c) {
  const TensorType &x = c.operand(0), &pos = c.operand(1);
  if (!isFloat(x.dtype) || x.rank() < 2)
    return fail("rope needs a float tensor of rank 2 or more, got " + c.str(x));
  const Dim &d = x.shape.back();
  if (!d.isStatic() || d.offset % 2 != 0)
    return fail("rope needs an even static last dim, got " + c.str(x));
  if (pos.dtype != DType::I32 && pos.dtype != DType::I64)
    return fail("rope positions must be i32 or i64, got " + c.str(pos));
  Shape rows(x.shape.begin(), x.shape.end() - 1);
  auto s = broadcastShapes(rows, pos.shape);
  if (!s || *s != rows)
    return fail("rope positions " + c.str(pos) + " do not broadcast to the rows of " + c.str(x));
  if (!(c.n.attrFloat("theta") > 0))
    return fail("rope theta must be positive");
  return x;
}

Expected<TensorType> inferMatmul(const Ctx &c) {
  const TensorType &a = c.operand(0), &b = c.operand(1);
  if (a.dtype != b.dtype || a.dtype == DType::Bool)
    return fail("matmul operands must share a numeric dtype: " + c.str(a) + " and " + c.str(b));
  if (a.rank() < 2 || b.rank() < 2)
    return fail("matmul operands need rank 2 or more: " + c.str(a) + " and " + c.str(b));
  bool ta = c.n.attrBool("transpose_a"), tb = c.n.attrBool("transpose_b");
  Dim m = a.shape[a.rank() - (ta ? 1 : 2)], ka = a.shape[a.rank() - (ta ? 2 : 1)];
  Dim kb = b.shape[b.rank() - (tb ? 1 : 2)], n = b.shape[b.rank() - (tb ? 2 : 1)];
  if (!(ka == kb))
    return fail("matmul contraction dims differ: " + c.str(ka) + " and " + c.str(kb));
  auto batch = broadcastShapes(Shape(a.shape.begin(), a.shape.end() - 2),
                               Shape(b.shape.begin(), b.shape.end() - 2));
  if (!batch)
    return fail("matmul batch dims of " + c.str(a) + " and " + c.str(b) + " do not broadcast");
  batch->push_back(m);
  batch->push_back(n);
  return TensorType{a.dtype, *batch};
}

Expected<TensorType> inferGather(const Ctx &c) {
  const TensorType &table = c.operand(0), &idx = c.operand(1);
  if (table.rank() < 1)
    return fail("gather needs a table of rank 1 or more");
  if (idx.dtype != DType::I32 && idx.dtype != DType::I64)
    return fail("gather indices must be i32 or i64, got " + c.str(idx));
  TensorType out{table.dtype, idx.shape};
  out.shape.insert(out.shape.end(), table.shape.begin() + 1, table.shape.end());
  return out;
}

Expected<TensorType> inferConcat(const Ctx &c) {
  const TensorType &first = c.operand(0);
  int axis = normalizeAxis(c.n.attrInt("axis"), first.rank());
  if (axis < 0)
    return fail("axis " + std::to_string(c.n.attrInt("axis")) + " is out of range for " +
                c.str(first));
  TensorType out = first;
  for (size_t i = 1; i < c.n.operands.size(); ++i) {
    const TensorType &t = c.operand(static_cast<int>(i));
    if (t.dtype != first.dtype || t.rank() != first.rank())
      return fail("concat operands differ: " + c.str(first) + " and " + c.str(t));
    for (int d = 0; d < t.rank(); ++d)
      if (d != axis && !(t.shape[d] == first.shape[d]))
        return fail("concat operands differ off the axis: " + c.str(first) + " and " + c.str(t));
    Dim &acc = out.shape[axis];
    const Dim &add = t.shape[axis];
    if (!acc.isStatic() && !add.isStatic())
      return fail("concat of two symbolic extents along the axis is not supported");
    if (__builtin_add_overflow(acc.offset, add.offset, &acc.offset))
      return fail("concat extent overflows");
    if (!add.isStatic())
      acc.sym = add.sym;
  }
  return out;
}

// Symbolic factors of a shape, for comparing element counts.
bool sameElementCount(const Shape &a, const Shape &b) {
  auto split = [](const Shape &s, __int128 &prod, std::vector<std::pair<int, int64_t>> &syms) {
    prod = 1;
    for (const Dim &d : s) {
      if (d.isStatic())
        prod *= d.offset;
      else
        syms.push_back({d.sym, d.offset});
      if (prod > (__int128(1) << 100))
        prod = __int128(1) << 100;
    }
    std::sort(syms.begin(), syms.end());
  };
  __int128 pa, pb;
  std::vector<std::pair<int, int64_t>> sa, sb;
  split(a, pa, sa);
  split(b, pb, sb);
  return pa == pb && sa == sb;
}

// Whether every element of a strided view lies inside the tensor it views: checked at
// each corner of the ranges of the dims involved, or with independent bounds when too
// many dims are involved. Corners catch the usual mistakes but are not a proof for
// every value in between, so the interpreter checks each view again at run time.
bool viewFits(const Graph &g, const Shape &base, const Shape &view, Dim offset,
              const std::vector<int64_t> &strides) {
  std::vector<int> syms;
  auto note = [&](const Dim &d) {
    if (!d.isStatic() && std::find(syms.begin(), syms.end(), d.sym) == syms.end())
      syms.push_back(d.sym);
  };
  for (const Dim &d : base)
    note(d);
  for (const Dim &d : view)
    note(d);
  note(offset);
  auto fitsAt = [&](auto extentOf) {
    __int128 last = extentOf(offset), count = 1;
    for (size_t i = 0; i < view.size(); ++i) {
      __int128 e = extentOf(view[i]);
      if (e == 0)
        return true; // an empty view reads nothing
      last += (e - 1) * strides[i];
    }
    for (const Dim &d : base)
      count *= extentOf(d);
    return last < count;
  };
  if (syms.size() > 10) // independent bounds: conservative
    return fitsAt([&](const Dim &d) -> __int128 { return d.max(g.dims); }) &&
           fitsAt([&](const Dim &d) -> __int128 { return d.min(g.dims); });
  for (uint32_t corner = 0; corner < (1u << syms.size()); ++corner) {
    std::vector<int64_t> bound(g.dims.size(), 0);
    for (size_t i = 0; i < syms.size(); ++i)
      bound[syms[i]] = (corner >> i) & 1 ? g.dims[syms[i]].hi : g.dims[syms[i]].lo;
    if (!fitsAt([&](const Dim &d) -> __int128 { return d.eval(bound); }))
      return false;
  }
  return true;
}

Expected<TensorType> inferLayout(const Ctx &c) {
  const TensorType &x = c.operand(0);
  switch (c.n.op) {
  case Op::Slice: {
    int axis = normalizeAxis(c.n.attrInt("axis"), x.rank());
    if (axis < 0)
      return fail("axis " + std::to_string(c.n.attrInt("axis")) + " is out of range for " +
                  c.str(x));
    Dim start = c.n.attrDim("start"), end = c.n.attrDim("end");
    if (!provablyLE(Dim::of(0), start, c.g.dims) || !provablyLE(start, end, c.g.dims) ||
        !provablyLE(end, x.shape[axis], c.g.dims))
      return fail("slice [" + c.str(start) + ", " + c.str(end) + ") is not within 0.." +
                  c.str(x.shape[axis]) + " for every value of its dims");
    if (!start.isStatic() && start.sym != end.sym)
      return fail("slice extent " + c.str(end) + " - " + c.str(start) + " is not a dim");
    TensorType out = x;
    out.shape[axis] = start.isStatic() ? Dim{end.offset - start.offset, end.sym}
                                       : Dim::of(end.offset - start.offset);
    return out;
  }
  case Op::Reshape:
    if (c.n.type.dtype != x.dtype || !sameElementCount(c.n.type.shape, x.shape))
      return fail("reshape from " + c.str(x) + " to " + c.str(c.n.type) +
                  " changes the element count or dtype");
    return c.n.type;
  case Op::Permute: {
    const auto &perm = c.n.attrInts("perm");
    if (static_cast<int>(perm.size()) != x.rank())
      return fail("perm has " + std::to_string(perm.size()) + " entries for " + c.str(x));
    std::vector<bool> seen(x.rank(), false);
    TensorType out{x.dtype, {}};
    for (int64_t p : perm) {
      if (p < 0 || p >= x.rank() || seen[p])
        return fail("perm is not a permutation of 0.." + std::to_string(x.rank() - 1));
      seen[p] = true;
      out.shape.push_back(x.shape[p]);
    }
    return out;
  }
  case Op::Broadcast: {
    auto s = broadcastShapes(x.shape, c.n.type.shape);
    if (c.n.type.dtype != x.dtype || !s || *s != c.n.type.shape)
      return fail("cannot broadcast " + c.str(x) + " to " + c.str(c.n.type));
    return c.n.type;
  }
  case Op::View: {
    const auto &strides = c.n.attrInts("strides");
    if (c.n.type.dtype != x.dtype)
      return fail("view changes the dtype: " + c.str(x) + " to " + c.str(c.n.type));
    if (static_cast<int>(strides.size()) != c.n.type.rank())
      return fail("view needs one stride per dim of " + c.str(c.n.type));
    for (int64_t st : strides)
      if (st < 0 || st > kMaxDimValue)
        return fail("view strides must be in [0, 2^40]");
    if (!viewFits(c.g, x.shape, c.n.type.shape, c.n.attrDim("offset"), strides))
      return fail("view " + c.str(c.n.type) + " at offset " + c.str(c.n.attrDim("offset")) +
                  " may reach past the end of " + c.str(x));
    return c.n.type;
  }
  default:
    break;
  }
  return fail("not a layout op");
}

Expected<TensorType> inferUpdate(const Ctx &c) {
  const TensorType &dst = c.operand(0), &src = c.operand(1);
  if (dst.dtype != src.dtype || dst.rank() != src.rank())
    return fail("insert_slice of " + c.str(src) + " into " + c.str(dst) +
                " needs the same dtype and rank");
  const auto &offsets = c.n.attrDims("offsets");
  if (static_cast<int>(offsets.size()) != dst.rank())
    return fail("insert_slice needs one offset per dim of " + c.str(dst));
  for (int i = 0; i < dst.rank(); ++i) {
    Dim o = offsets[i], s = src.shape[i], d = dst.shape[i];
    bool fits = o.min(c.g.dims) >= 0 &&
                (o.isStatic()   ? provablyLE(Dim{o.offset + s.offset, s.sym}, d, c.g.dims)
                 : s.isStatic() ? provablyLE(Dim{o.offset + s.offset, o.sym}, d, c.g.dims)
                                : o.max(c.g.dims) + s.max(c.g.dims) <= d.min(c.g.dims));
    if (!fits)
      return fail("insert_slice offset " + c.str(o) + " + " + c.str(s) + " may exceed " + c.str(d) +
                  " in dim " + std::to_string(i));
  }
  return dst;
}

Status checkConstant(const Ctx &c) {
  bool splat = c.n.has("value"), dense = c.n.has("values");
  if (splat == dense)
    return fail("constant needs exactly one of `value` or `values`");
  if (dense) {
    for (const Dim &d : c.n.type.shape)
      if (!d.isStatic())
        return fail("a constant with `values` needs a static shape");
    int64_t n = numElements(evalShape(c.n.type.shape, {}));
    if (static_cast<int64_t>(c.n.attrFloats("values").size()) != n)
      return fail("constant of type " + c.str(c.n.type) + " needs " + std::to_string(n) +
                  " values, got " + std::to_string(c.n.attrFloats("values").size()));
  }
  return Status::ok();
}

} // namespace

int normalizeAxis(int64_t axis, int rank) {
  if (axis < -rank || axis >= rank)
    return -1;
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    Dim da = i < rank - a.size() ? Dim::of(1) : a[i - (rank - a.size())];
    Dim db = i < rank - b.size() ? Dim::of(1) : b[i - (rank - b.size())];
    if (da == db || isStaticOne(db))
      out[i] = da;
    else if (isStaticOne(da))
      out[i] = db;
    else
      return std::nullopt;
  }
  return out;
}

Expected<TensorType> inferType(const Graph &g, const Node &n) {
  Ctx c{g, n};
  const OpInfo &info = opInfo(n.op);
  switch (info.category) {
  case Category::Source:
    if (n.op == Op::Constant)
      if (Status s = checkConstant(c); s.failed())
        return s;
    return n.type;
  case Category::Unary:
  case Category::Binary:
  case Category::Select:
  case Category::Cast:
    return inferPointwise(c);
  case Category::Reduce:
    return inferReduce(c);
  case Category::Normalize:
    return inferNormalize(c);
  case Category::Rope:
    return inferRope(c);
  case Category::Contraction:
    return inferMatmul(c);
  case Category::Gather:
    return inferGather(c);
  case Category::Concat:
    return inferConcat(c);
  case Category::Layout:
    return inferLayout(c);
  case Category::Update:
    return inferUpdate(c);
  }
  return fail("unknown op category");
}

namespace {
std::string at(const Node &n) {
  if (n.loc.line == 0)
    return "error: %" + n.name + ": ";
  return std::to_string(n.loc.line) + ":" + std::to_string(n.loc.col) + ": error: ";
}

Status checkType(const Graph &g, const Node &n) {
  if (n.type.rank() > kMaxRank)
    return fail("rank " + std::to_string(n.type.rank()) + " exceeds the limit of " +
                std::to_string(kMaxRank));
  for (const Dim &d : n.type.shape) {
    if (!d.isStatic() && (d.sym >= static_cast<int>(g.dims.size())))
      return fail("unknown symbolic dim");
    if (d.min(g.dims) < 0)
      return fail("extent " + dimToString(d, g.dims) + " can be negative");
    if (d.max(g.dims) > kMaxDimValue)
      return fail("extent " + dimToString(d, g.dims) + " exceeds 2^40");
  }
  if (auto b = maxBytes(n.type, g.dims); !b)
    return b.status();
  return Status::ok();
}
} // namespace

Status verify(const Graph &g) {
  for (const SymDim &d : g.dims)
    if (d.lo < 0 || d.lo > d.hi || d.hi > kMaxDimValue)
      return fail("error: dim " + d.name + " has an invalid range [" + std::to_string(d.lo) + ", " +
                  std::to_string(d.hi) + "]");
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    const OpInfo &info = opInfo(n.op);
    if (Status s = checkType(g, n); s.failed())
      return fail(at(n) + s.message());
    int count = static_cast<int>(n.operands.size());
    if (info.operands >= 0 ? count != info.operands : count < 1)
      return fail(at(n) + std::string(info.name) + " takes " +
                  (info.operands >= 0 ? std::to_string(info.operands) : "one or more") +
                  " operands, got " + std::to_string(count));
    for (int o : n.operands)
      if (o < 0 || o >= static_cast<int>(id))
        return fail(at(n) + "operand is not defined before its use (cycle?)");
    for (size_t i = 0; i < info.attrs.size(); ++i)
      if (!n.present[i] && !info.attrs[i].optional)
        return fail(at(n) + std::string(info.name) + " needs attribute `" + info.attrs[i].name +
                    "`");
    auto t = inferType(g, n);
    if (!t)
      return fail(at(n) + t.message());
    if (!(*t == n.type))
      return fail(at(n) + "type " + typeToString(n.type, g.dims) + " does not match the inferred " +
                  typeToString(*t, g.dims));
  }
  for (int in : g.inputs)
    if (in < 0 || in >= static_cast<int>(g.nodes.size()) ||
        (g.nodes[in].op != Op::Input && g.nodes[in].op != Op::Param))
      return fail("error: graph input is not an input or param node");
  for (size_t id = 0; id < g.nodes.size(); ++id)
    if ((g.nodes[id].op == Op::Input || g.nodes[id].op == Op::Param) &&
        std::find(g.inputs.begin(), g.inputs.end(), static_cast<int>(id)) == g.inputs.end())
      return fail(at(g.nodes[id]) + "input node is not in the graph's signature");
  // Each kernel's nodes are one contiguous run of computed nodes.
  std::vector<bool> closed(g.kernels.size(), false);
  int current = -1;
  for (const Node &n : g.nodes) {
    if (n.kernel == current)
      continue;
    if (n.kernel >= static_cast<int>(g.kernels.size()) || n.kernel < -1)
      return fail(at(n) + "node names no kernel of the graph");
    if (n.kernel >= 0 && (n.op == Op::Input || n.op == Op::Param))
      return fail(at(n) + "an input cannot be part of a kernel");
    if (n.kernel >= 0 && closed[n.kernel])
      return fail(at(n) + "the nodes of kernel @" + g.kernels[n.kernel] + " are not contiguous");
    if (current >= 0)
      closed[current] = true;
    current = n.kernel;
  }
  if (g.outputs.empty())
    return fail("error: graph @" + g.name + " returns nothing");
  for (int out : g.outputs)
    if (out < 0 || out >= static_cast<int>(g.nodes.size()))
      return fail("error: graph output is not a node");
  return Status::ok();
}

} // namespace kiln::ir
