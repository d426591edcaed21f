// The reference interpreter: one evaluation routine per op category, all in float64.
#include "ir/interpreter.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

#include "ir/float16.h"
#include "ir/verifier.h"

namespace kiln::ir {

namespace {

// Offsets into a tensor, for every element of `out` in row-major order, given the
// tensor's stride for each dim of `out` (0 where it broadcasts).
std::vector<int64_t> stridedIndex(const Extents &out, const std::vector<int64_t> &strides,
                                  int64_t base = 0) {
  int64_t n = numElements(out);
  std::vector<int64_t> idx(n);
  if (n == 0)
    return idx;
  std::vector<int64_t> coord(out.size(), 0);
  int64_t off = base;
  for (int64_t i = 0; i < n; ++i) {
    idx[i] = off;
    for (size_t d = out.size(); d-- > 0;) {
      off += strides[d];
      if (++coord[d] < out[d])
        break;
      off -= strides[d] * out[d];
      coord[d] = 0;
    }
  }
  return idx;
}

// Offsets into a tensor of extents `in` broadcast (numpy, right-aligned) to `out`.
std::vector<int64_t> broadcastIndex(const Extents &out, const Extents &in) {
  std::vector<int64_t> inStrides = contiguousStrides(in);
  std::vector<int64_t> strides(out.size(), 0);
  size_t lead = out.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d)
    strides[lead + d] = in[d] == 1 ? 0 : inStrides[d];
  return stridedIndex(out, strides);
}

// Integer results wrap like two's complement registers; values too large for double
// precision are already approximate, so only their low bits matter here.
double wrap(double x, DType t) {
  if (t == DType::Bool)
    return x != 0;
  if (t != DType::I32)
    return x;
  if (!std::isfinite(x))
    return 0;
  double m = std::fmod(std::trunc(x), 4294967296.0);
  if (m >= 2147483648.0)
    m -= 4294967296.0;
  if (m < -2147483648.0)
    m += 4294967296.0;
  return m;
}

double nanMax(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }
double nanMin(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); }

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double unary(Op op, double x) {
  switch (op) {
  case Op::Neg:
    return -x;
  case Op::Abs:
    return std::fabs(x);
  case Op::Exp:
    return std::exp(x);
  case Op::Log:
    return std::log(x);
  case Op::Sqrt:
    return std::sqrt(x);
  case Op::Rsqrt:
    return 1.0 / std::sqrt(x);
  case Op::Recip:
    return 1.0 / x;
  case Op::Tanh:
    return std::tanh(x);
  case Op::Sigmoid:
    return sigmoid(x);
  case Op::Silu:
    return x * sigmoid(x);
  case Op::Gelu:
    return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
  case Op::GeluTanh: {
    double k = std::sqrt(2.0 / std::numbers::pi);
    return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
  }
  case Op::Relu:
    return std::isnan(x) ? x : (x > 0 ? x : 0.0);
  case Op::Sin:
    return std::sin(x);
  case Op::Cos:
    return std::cos(x);
  case Op::Erf:
    return std::erf(x);
  default:
    break;
  }
  assert(false && "not a unary op");
  return NAN;
}

double binary(Op op, double a, double b, DType t) {
  bool isInt = !isFloat(t);
  switch (op) {
  case Op::Add:
    return a + b;
  case Op::Sub:
    return a - b;
  case Op::Mul:
    return a * b;
  case Op::Div:
    if (!isInt)
      return a / b;
    return b == 0 ? 0 : std::trunc(a / b); // integer division by zero gives 0
  case Op::Max:
    return nanMax(a, b);
  case Op::Min:
    return nanMin(a, b);
  case Op::Pow:
    return std::pow(a, b);
  default:
    break;
  }
  assert(false && "not a binary op");
  return NAN;
}

class Interpreter {
public:
  Interpreter(const Graph &g, std::span<const int64_t> dims) : g_(g), dims_(dims) {}

  Expected<HostTensor> eval(const Node &n, std::vector<HostTensor> &vals) {
    HostTensor out{n.type.dtype, evalShape(n.type.shape, dims_), {}};
    out.data.resize(numElements(out.shape));
    auto arg = [&](int i) -> const HostTensor & { return vals[n.operands[i]]; };
    switch (opCategory(n.op)) {
    case Category::Source:
      if (n.op == Op::Constant) {
        for (size_t i = 0; i < out.data.size(); ++i)
          out.data[i] = roundToDType(
              n.has("value") ? n.attrFloat("value") : n.attrFloats("values")[i], out.dtype);
      }
      break; // inputs are bound before evaluation starts
    case Category::Unary: {
      const HostTensor &x = arg(0);
      for (size_t i = 0; i < out.data.size(); ++i)
        out.data[i] = wrap(unary(n.op, x.data[i]), out.dtype);
      break;
    }
    case Category::Binary: {
      auto ia = broadcastIndex(out.shape, arg(0).shape),
           ib = broadcastIndex(out.shape, arg(1).shape);
      for (size_t i = 0; i < out.data.size(); ++i)
        out.data[i] =
            wrap(binary(n.op, arg(0).data[ia[i]], arg(1).data[ib[i]], out.dtype), out.dtype);
      break;
    }
    case Category::Select: {
      auto ic = broadcastIndex(out.shape, arg(0).shape),
           ia = broadcastIndex(out.shape, arg(1).shape),
           ib = broadcastIndex(out.shape, arg(2).shape);
      for (size_t i = 0; i < out.data.size(); ++i)
        out.data[i] = arg(0).data[ic[i]] != 0 ? arg(1).data[ia[i]] : arg(2).data[ib[i]];
      break;
    }
    case Category::Cast:
      for (size_t i = 0; i < out.data.size(); ++i)
        out.data[i] = roundToDType(arg(0).data[i], out.dtype);
      break;
    case Category::Reduce:
      reduce(n, arg(0), out);
      break;
    case Category::Normalize:
      normalize(n, arg(0), out);
      break;
    case Category::Rope:
      rope(n, arg(0), arg(1), out);
      break;
    case Category::Contraction:
      matmul(n, arg(0), arg(1), out);
      break;
    case Category::Gather:
      if (Status s = gather(arg(0), arg(1), out); s.failed())
        return s;
      break;
    case Category::Concat:
      concat(n, vals, out);
      break;
    case Category::Layout:
      if (n.op == Op::View)
        if (Status s = checkView(n, arg(0), out); s.failed())
          return s;
      layout(n, arg(0), out);
      break;
    case Category::Update:
      insertSlice(n, arg(0), arg(1), out);
      break;
    }
    return out;
  }

private:
  // Splits `x` around axis set `axes`: iterates (outer, inner) pairs for reductions.
  void reduce(const Node &n, const HostTensor &x, HostTensor &out) {
    std::vector<bool> red(x.shape.size(), false);
    for (int64_t a : n.attrInts("axes"))
      red[normalizeAxis(a, static_cast<int>(x.shape.size()))] = true;
    // Output index of each input element: strides of the kept dims, 0 for reduced ones.
    Extents kept;
    for (size_t d = 0; d < x.shape.size(); ++d)
      kept.push_back(red[d] ? 1 : x.shape[d]);
    std::vector<int64_t> ks = contiguousStrides(kept);
    for (size_t d = 0; d < x.shape.size(); ++d)
      if (red[d])
        ks[d] = 0;
    std::vector<int64_t> to = stridedIndex(x.shape, ks);
    bool isMax = n.op == Op::ReduceMax, isMin = n.op == Op::ReduceMin;
    double init = isMax ? -INFINITY : isMin ? INFINITY : 0.0;
    std::fill(out.data.begin(), out.data.end(), init);
    std::vector<int64_t> count(out.data.size(), 0);
    for (size_t i = 0; i < x.data.size(); ++i) {
      double &acc = out.data[to[i]];
      acc = isMax ? nanMax(acc, x.data[i]) : isMin ? nanMin(acc, x.data[i]) : acc + x.data[i];
      ++count[to[i]];
    }
    for (size_t i = 0; i < out.data.size(); ++i) {
      if (n.op == Op::ReduceMean)
        out.data[i] = count[i] ? out.data[i] / count[i] : NAN;
      out.data[i] = wrap(out.data[i], out.dtype);
    }
  }

  // Calls f(base, stride, length) for every row along `axis`.
  template <class F> void forEachRow(const Extents &shape, int axis, F f) {
    int64_t len = shape[axis], inner = 1, outer = 1;
    for (size_t d = axis + 1; d < shape.size(); ++d)
      inner *= shape[d];
    for (int d = 0; d < axis; ++d)
      outer *= shape[d];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        f(o * len * inner + i, inner, len);
  }

  void normalize(const Node &n, const HostTensor &x, HostTensor &out) {
    int axis = normalizeAxis(n.attrInt("axis"), static_cast<int>(x.shape.size()));
    forEachRow(x.shape, axis, [&](int64_t base, int64_t stride, int64_t len) {
      auto at = [&](int64_t j) { return x.data[base + j * stride]; };
      auto set = [&](int64_t j, double v) { out.data[base + j * stride] = v; };
      if (n.op == Op::Softmax) {
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < len; ++j)
          m = nanMax(m, at(j));
        for (int64_t j = 0; j < len; ++j)
          sum += std::exp(at(j) - m);
        for (int64_t j = 0; j < len; ++j)
          set(j, std::exp(at(j) - m) / sum);
        return;
      }
      double mean = 0, sq = 0;
      for (int64_t j = 0; j < len; ++j)
        mean += at(j);
      mean /= len;
      double center = n.op == Op::LayerNorm ? mean : 0.0;
      for (int64_t j = 0; j < len; ++j)
        sq += (at(j) - center) * (at(j) - center);
      double scale = 1.0 / std::sqrt(sq / len + n.attrFloat("eps"));
      for (int64_t j = 0; j < len; ++j)
        set(j, (at(j) - center) * scale);
    });
  }

  void rope(const Node &n, const HostTensor &x, const HostTensor &pos, HostTensor &out) {
    int64_t d = x.shape.back(), rows = d ? numElements(x.shape) / d : 0, half = d / 2;
    Extents rowShape(x.shape.begin(), x.shape.end() - 1);
    std::vector<int64_t> pi = broadcastIndex(rowShape, pos.shape);
    bool interleaved = n.attrEnum("mode") == "interleaved";
    double theta = n.attrFloat("theta");
    for (int64_t r = 0; r < rows; ++r) {
      double p = pos.data[pi[r]];
      for (int64_t i = 0; i < half; ++i) {
        double angle = p * std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
        int64_t ia = r * d + (interleaved ? 2 * i : i),
                ib = r * d + (interleaved ? 2 * i + 1 : i + half);
        double a = x.data[ia], b = x.data[ib], c = std::cos(angle), s = std::sin(angle);
        out.data[ia] = a * c - b * s;
        out.data[ib] = a * s + b * c;
      }
    }
  }

  void matmul(const Node &n, const HostTensor &a, const HostTensor &b, HostTensor &out) {
    int ra = static_cast<int>(a.shape.size()), rb = static_cast<int>(b.shape.size());
    int ro = static_cast<int>(out.shape.size());
    bool ta = n.attrBool("transpose_a"), tb = n.attrBool("transpose_b");
    int64_t m = out.shape[ro - 2], nn = out.shape[ro - 1];
    int64_t k = ta ? a.shape[ra - 2] : a.shape[ra - 1];
    Extents batch(out.shape.begin(), out.shape.end() - 2);
    // Batch offsets of each operand's matrix, broadcast over the output's batch dims.
    auto batchBase = [&](const HostTensor &t, int r) {
      Extents tb(t.shape.begin(), t.shape.end() - 2);
      std::vector<int64_t> idx = broadcastIndex(batch, tb);
      for (int64_t &i : idx)
        i *= t.shape[r - 2] * t.shape[r - 1];
      return idx;
    };
    std::vector<int64_t> ba = batchBase(a, ra), bb = batchBase(b, rb);
    int64_t sam = ta ? 1 : k, sak = ta ? m : 1, sbk = tb ? 1 : nn, sbn = tb ? k : 1;
    for (size_t bi = 0; bi < ba.size(); ++bi)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < nn; ++j) {
          double acc = 0;
          for (int64_t q = 0; q < k; ++q)
            acc += a.data[ba[bi] + i * sam + q * sak] * b.data[bb[bi] + q * sbk + j * sbn];
          out.data[(bi * m + i) * nn + j] = wrap(acc, out.dtype);
        }
  }

  Status gather(const HostTensor &table, const HostTensor &idx, HostTensor &out) {
    int64_t rows = table.shape[0], row = rows ? numElements(table.shape) / rows : 0;
    for (size_t i = 0; i < idx.data.size(); ++i) {
      double r = idx.data[i];
      if (!(r >= 0 && r < static_cast<double>(rows)))
        return makeError("gather index " + std::to_string(static_cast<int64_t>(r)) +
                         " is out of range [0, " + std::to_string(rows) + ")");
      std::copy_n(table.data.begin() + static_cast<int64_t>(r) * row, row,
                  out.data.begin() + static_cast<int64_t>(i) * row);
    }
    return Status::ok();
  }

  void concat(const Node &n, const std::vector<HostTensor> &vals, HostTensor &out) {
    int axis = normalizeAxis(n.attrInt("axis"), static_cast<int>(out.shape.size()));
    std::vector<int64_t> os = contiguousStrides(out.shape);
    int64_t at = 0;
    for (int id : n.operands) {
      const HostTensor &t = vals[id];
      std::vector<int64_t> idx = stridedIndex(t.shape, os, at * os[axis]);
      for (size_t i = 0; i < idx.size(); ++i)
        out.data[idx[i]] = t.data[i];
      at += t.shape[axis];
    }
  }

  Status checkView(const Node &n, const HostTensor &x, const HostTensor &out) {
    if (out.data.empty())
      return Status::ok();
    int64_t last = n.attrDim("offset").eval(dims_);
    const auto &strides = n.attrInts("strides");
    for (size_t d = 0; d < out.shape.size(); ++d)
      last += (out.shape[d] - 1) * strides[d];
    if (last >= static_cast<int64_t>(x.data.size()))
      return makeError("view reaches element " + std::to_string(last) + " of a tensor of " +
                       std::to_string(x.data.size()));
    return Status::ok();
  }

  void layout(const Node &n, const HostTensor &x, HostTensor &out) {
    std::vector<int64_t> xs = contiguousStrides(x.shape), idx;
    switch (n.op) {
    case Op::Slice: {
      int axis = normalizeAxis(n.attrInt("axis"), static_cast<int>(x.shape.size()));
      idx = stridedIndex(out.shape, xs, n.attrDim("start").eval(dims_) * xs[axis]);
      break;
    }
    case Op::Reshape:
      out.data = x.data;
      return;
    case Op::Permute: {
      std::vector<int64_t> s;
      for (int64_t p : n.attrInts("perm"))
        s.push_back(xs[p]);
      idx = stridedIndex(out.shape, s);
      break;
    }
    case Op::Broadcast:
      idx = broadcastIndex(out.shape, x.shape);
      break;
    case Op::View:
      idx = stridedIndex(out.shape, n.attrInts("strides"), n.attrDim("offset").eval(dims_));
      break;
    default:
      assert(false && "not a layout op");
    }
    for (size_t i = 0; i < idx.size(); ++i)
      out.data[i] = x.data[idx[i]];
  }

  void insertSlice(const Node &n, const HostTensor &dst, const HostTensor &src, HostTensor &out) {
    out.data = dst.data;
    std::vector<int64_t> ds = contiguousStrides(dst.shape);
    int64_t base = 0;
    const auto &offsets = n.attrDims("offsets");
    for (size_t d = 0; d < offsets.size(); ++d)
      base += offsets[d].eval(dims_) * ds[d];
    std::vector<int64_t> idx = stridedIndex(src.shape, ds, base);
    // The write lands in the destination's storage, so it takes the storage's dtype.
    for (size_t i = 0; i < idx.size(); ++i)
      out.data[idx[i]] = roundToDType(src.data[i], out.dtype);
  }

  const Graph &g_;
  std::span<const int64_t> dims_;
};

} // namespace

Status checkDims(const Graph &g, std::span<const int64_t> dims) {
  if (dims.size() != g.dims.size())
    return makeError("graph @" + g.name + " has " + std::to_string(g.dims.size()) +
                     " symbolic dims, " + std::to_string(dims.size()) + " bound");
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] < g.dims[i].lo || dims[i] > g.dims[i].hi)
      return makeError("dim " + g.dims[i].name + " = " + std::to_string(dims[i]) +
                       " is outside its range [" + std::to_string(g.dims[i].lo) + ", " +
                       std::to_string(g.dims[i].hi) + "]");
  return Status::ok();
}

Expected<std::vector<HostTensor>> interpret(const Graph &g, std::span<const int64_t> dims,
                                            std::span<const HostTensor> inputs,
                                            const InterpretOptions &opts) {
  if (Status s = checkDims(g, dims); s.failed())
    return s;
  if (inputs.size() != g.inputs.size())
    return makeError("graph @" + g.name + " takes " + std::to_string(g.inputs.size()) +
                     " inputs, got " + std::to_string(inputs.size()));
  // Every value is kept, in float64: refuse graphs that would not fit.
  int64_t total = 0;
  for (const Node &n : g.nodes) {
    int64_t e = numElements(evalShape(n.type.shape, dims));
    if (__builtin_mul_overflow(e, int64_t{8}, &e) || __builtin_add_overflow(total, e, &total) ||
        total > opts.maxBytes)
      return makeError("the reference interpreter needs more than " +
                       std::to_string(opts.maxBytes >> 20) + " MiB for graph @" + g.name);
  }
  std::vector<HostTensor> vals(g.nodes.size());
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Node &n = g.nodes[g.inputs[i]];
    Extents want = evalShape(n.type.shape, dims);
    if (inputs[i].shape != want || inputs[i].dtype != n.type.dtype ||
        static_cast<int64_t>(inputs[i].data.size()) != numElements(want))
      return makeError("input %" + n.name + " does not have type " + typeToString(n.type, g.dims) +
                       " at these dims");
    vals[g.inputs[i]] = inputs[i];
  }
  // Values are dropped after their last use, so peak memory stays near the live set.
  std::vector<size_t> lastUse(g.nodes.size(), g.nodes.size());
  for (size_t id = 0; id < g.nodes.size(); ++id)
    for (int o : g.nodes[id].operands)
      lastUse[o] = id;
  for (int o : g.outputs)
    lastUse[o] = g.nodes.size();
  Interpreter interp(g, dims);
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    const Node &n = g.nodes[id];
    if (n.op == Op::Input || n.op == Op::Param)
      continue;
    auto v = interp.eval(n, vals);
    if (!v)
      return makeError("%" + n.name + ": " + v.message());
    vals[id] = std::move(*v);
    for (int o : n.operands)
      if (lastUse[o] == id)
        vals[o] = HostTensor{};
  }
  std::vector<HostTensor> outs;
  for (int o : g.outputs)
    outs.push_back(vals[o]);
  return outs;
}

} // namespace kiln::ir
