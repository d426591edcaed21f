// The random graph generator: a seeded walk that adds a few nodes at a time, each step
// one op kind with operands drawn from every value made so far.
#include "ir/random_graph.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ir/builder.h"
#include "ir/verifier.h"

namespace kiln::ir {

namespace {

using Attrs = std::vector<std::pair<std::string, AttrValue>>;

// The most nodes one step adds. The last few nodes are single unary ops, so the graph
// has exactly the requested size.
constexpr int kMaxStepNodes = 6;

// A value whose rough magnitude bound passes this goes through tanh before an op that
// would grow it further (add, mul, matmul, sum), so that long chains stay finite.
constexpr double kTame = 8;

// Integer values are kept below this so that i32 arithmetic does not wrap.
constexpr double kIntLimit = 1e6;

constexpr int kMaxGenRank = 6;

enum class In { Input, Param, Index, Position, Cache };

bool isStaticOne(const Dim &d) { return d.isStatic() && d.offset == 1; }

class Generator {
public:
  explicit Generator(const RandomGraphOptions &o) : o_(o), rng_(o.seed), b_("gen") {}

  Expected<Graph> run() {
    if (o_.nodes < 1)
      return makeError("error: a random graph needs at least 1 node");
    if (o_.maxElements < 64)
      return makeError("error: a random graph needs room for tensors of 64 elements");
    if (o_.symbolicDims)
      declareDims();
    input({DType::F32, randomShape(o_.symbolicDims)}, In::Input);
    if (o_.nodes > 1)
      input({DType::F32, randomShape(false)}, In::Input);
    while (count_ < o_.nodes && !failed_) {
      [[maybe_unused]] int before = count_;
      if (o_.nodes - count_ < kMaxStepNodes)
        unaryStep();
      else
        step();
      assert(count_ - before <= kMaxStepNodes && "a generator step added too many nodes");
    }
    for (int id = 0; id < count_; ++id)
      if (!used_[id])
        b_.output(id);
    return b_.finish();
  }

private:
  // Random numbers straight from the engine: std::uniform_int_distribution differs
  // between standard libraries, and a seed must give the same graph everywhere.
  int64_t uniform(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool chance(double p) { return static_cast<double>(rng_() >> 11) * 0x1.0p-53 < p; }
  template <class T> T pick(std::initializer_list<T> choices) {
    return choices.begin()[uniform(0, static_cast<int64_t>(choices.size()) - 1)];
  }

  TensorType type(int id) const { return b_.typeOf(id); }
  std::string key(const TensorType &t) const { return typeToString(t, dims_); }

  // Element count at the dims' upper bounds, saturating just past the limit.
  int64_t elements(const Shape &s) const {
    int64_t n = 1;
    for (const Dim &d : s) {
      int64_t e = d.max(dims_);
      if (e != 0 && n > o_.maxElements / e)
        return o_.maxElements + 1;
      n *= e;
    }
    return n;
  }
  bool fits(const Shape &s) const {
    return static_cast<int>(s.size()) <= kMaxGenRank && elements(s) <= o_.maxElements;
  }

  void declareDims() {
    dims_.push_back({"n", uniform(1, 2), pick<int64_t>({4, 8, 16})});
    if (chance(0.5))
      dims_.push_back({"m", 1, pick<int64_t>({2, 4})});
    for (const SymDim &d : dims_)
      b_.dim(d.name, d.lo, d.hi);
  }

  Dim staticDim() { return Dim::of(pick<int64_t>({1, 2, 3, 4, 5, 8, 16, 32})); }
  Dim anyDim(bool allowOne = true) {
    if (!dims_.empty() && chance(0.3))
      return Dim::symbol(static_cast<int32_t>(uniform(0, static_cast<int64_t>(dims_.size()) - 1)));
    Dim d = staticDim();
    return allowOne || d.offset > 1 ? d : Dim::of(4);
  }

  // An input's shape: a quarter of the element limit leaves room for ops that grow,
  // and no extent 1, which the partners of pointwise ops bring in.
  Shape randomShape(bool wantSymbolic) {
    for (int tries = 0; tries < 16; ++tries) {
      Shape s;
      for (int64_t r = pick<int64_t>({1, 2, 2, 3, 3, 4}); r > 0; --r)
        s.push_back(anyDim(false));
      if (wantSymbolic && !dims_.empty())
        s[uniform(0, static_cast<int64_t>(s.size()) - 1)] = Dim::symbol(0);
      if (elements(s) <= o_.maxElements / 4)
        return s;
    }
    return {wantSymbolic && !dims_.empty() ? Dim::symbol(0) : Dim::of(4)};
  }

  // Broadcasts to `s`: fewer leading dims, some extents 1.
  Shape smallerShape(const Shape &s) {
    Shape out(s.begin() + uniform(0, static_cast<int64_t>(s.size())), s.end());
    for (Dim &d : out)
      if (chance(0.3))
        d = Dim::of(1);
    return out;
  }

  // Broadcasts with `s` to something larger: a new leading dim, or extents 1 stretched.
  Shape largerShape(const Shape &s) {
    Shape out = s;
    if (out.size() < 5 && chance(0.5))
      out.insert(out.begin(), anyDim());
    for (Dim &d : out)
      if (isStaticOne(d) && chance(0.5))
        d = anyDim();
    return out;
  }

  void note(int id, double mag) {
    assert(id == count_ && "the builder numbers values in order");
    ++count_;
    mag_.push_back(mag);
    used_.push_back(false);
  }

  void pool(int id) {
    pool_.push_back(id);
    byType_[key(type(id))].push_back(id);
  }

  int input(TensorType t, In kind) {
    static const char *const kPrefix[] = {"x", "w", "idx", "pos", "cache"};
    std::string name = kPrefix[static_cast<int>(kind)] + std::to_string(inputs_++);
    bool isParam = kind == In::Param;
    double mag = isFloat(t.dtype) ? 1 : 16; // randomTensor's ranges
    int id = isParam ? b_.param(std::move(name), t) : b_.input(std::move(name), t);
    note(id, mag);
    if (kind == In::Input || isParam)
      pool(id);
    return id;
  }

  // Adds an op. After a builder error (a generator bug, which finish() reports) it
  // returns a valid id so the step can finish; the walk then stops.
  int emit(Op op, std::vector<int> operands, double mag, Attrs attrs = {},
           std::optional<TensorType> t = std::nullopt) {
    for (int v : operands)
      used_[v] = true;
    int id = b_.op(op, operands, std::move(attrs), std::move(t));
    if (id < 0) {
      failed_ = true;
      return operands.empty() ? 0 : operands[0];
    }
    note(id, mag);
    // Bools only feed select, and constants only the op they were made for.
    if (op != Op::Constant && type(id).dtype != DType::Bool)
      pool(id);
    return id;
  }

  int tame(int v, double limit = kTame) {
    if (!isFloat(type(v).dtype) || mag_[v] <= limit)
      return v;
    return emit(Op::Tanh, {v}, 1);
  }

  // Any value, half the time one of the latest (for depth), else any earlier one (for
  // fan-out and independent branches); -1 when none of the probes satisfies `ok`.
  template <class Pred> int pickValue(Pred ok) {
    for (int tries = 0; tries < 32; ++tries) {
      int64_t n = static_cast<int64_t>(pool_.size());
      int64_t i = n > 16 && chance(0.5) ? n - 1 - uniform(0, 15) : uniform(0, n - 1);
      if (ok(pool_[i]))
        return pool_[i];
    }
    return -1;
  }
  int anyValue() {
    return pickValue([](int) { return true; });
  }
  bool isFloatValue(int id) const { return isFloat(type(id).dtype); }

  // A value of type `t`: an existing one when there is one, else a new input.
  int valueOf(const TensorType &t, bool asParam) {
    auto it = byType_.find(key(t));
    if (it != byType_.end() && chance(0.7))
      return it->second[uniform(0, static_cast<int64_t>(it->second.size()) - 1)];
    return input(t, asParam && isFloat(t.dtype) ? In::Param : In::Input);
  }

  // A second operand for a pointwise op on `a`: same dtype, broadcasting with it.
  int partner(int a) {
    TensorType t = type(a), p = t;
    int shape = static_cast<int>(uniform(0, 19));
    if (shape >= 9)
      p.shape = shape < 17 ? smallerShape(t.shape) : largerShape(t.shape);
    auto out = broadcastShapes(t.shape, p.shape);
    if (!out || !fits(*out))
      p = t;
    return valueOf(p, shape >= 9 && shape < 17);
  }

  void unaryStep() {
    int v = anyValue();
    if (!isFloatValue(v)) {
      emit(pick({Op::Neg, Op::Abs, Op::Relu}), {v}, mag_[v]);
      return;
    }
    if (chance(0.5))
      emit(pick({Op::Tanh, Op::Sigmoid, Op::Sin, Op::Cos, Op::Erf}), {v}, 1);
    else
      emit(pick({Op::Neg, Op::Abs, Op::Relu, Op::Silu, Op::Gelu, Op::GeluTanh}), {v}, mag_[v]);
  }

  bool unaryOp() {
    unaryStep();
    return true;
  }

  bool binaryOp() {
    int a = anyValue(), b = partner(a);
    bool flt = isFloatValue(a);
    Op op = flt ? pick({Op::Add, Op::Sub, Op::Mul, Op::Max, Op::Min})
                : pick({Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Max, Op::Min});
    bool grows = op == Op::Add || op == Op::Sub || op == Op::Mul;
    if (flt && grows) {
      a = tame(a);
      b = tame(b);
    }
    double mag = op == Op::Mul ? mag_[a] * mag_[b]
                 : grows       ? mag_[a] + mag_[b]
                               : std::max(mag_[a], mag_[b]);
    if (!flt && mag > kIntLimit) {
      op = Op::Max;
      mag = std::max(mag_[a], mag_[b]);
    }
    if (op == Op::Div)
      mag = mag_[a];
    if (chance(0.5))
      std::swap(a, b);
    emit(op, {a, b}, mag);
    return true;
  }

  // Ops defined only on part of the line get operands inside their domain: log, sqrt,
  // rsqrt, recip and pow of a sigmoid; exp of a tamed value; division by an exp.
  bool guardedOp() {
    int a = pickValue([&](int id) { return isFloatValue(id); });
    if (a < 0)
      return false;
    int kind = static_cast<int>(uniform(0, 6));
    if (kind == 0) {
      int d = tame(partner(a), 1);
      d = emit(Op::Exp, {d}, std::exp(1.0));
      emit(Op::Div, {a, d}, mag_[a] * std::exp(1.0));
      return true;
    }
    int t = tame(a, 4);
    if (kind == 1) {
      emit(Op::Exp, {t}, std::exp(mag_[t]));
      return true;
    }
    double low = 1 / (1 + std::exp(mag_[t])); // the smallest sigmoid of t
    int s = emit(Op::Sigmoid, {t}, 1);
    switch (kind) {
    case 2:
      emit(Op::Log, {s}, -std::log(low));
      break;
    case 3:
      emit(Op::Sqrt, {s}, 1);
      break;
    case 4:
      emit(Op::Rsqrt, {s}, 1 / std::sqrt(low));
      break;
    case 5:
      emit(Op::Recip, {s}, 1 / low);
      break;
    default: // s^e <= 1/s for e in [-1, 1]
      emit(Op::Pow, {s, tame(partner(s), 1)}, 1 / low);
      break;
    }
    return true;
  }

  bool selectOp() {
    int a = anyValue(), b = partner(a);
    TensorType ab{type(a).dtype, *broadcastShapes(type(a).shape, type(b).shape)};
    int c = valueOf({ab.dtype, smallerShape(ab.shape)}, false);
    // Half the conditions go through relu, so that about half their elements are false.
    if (chance(0.5))
      c = emit(Op::Relu, {c}, mag_[c]);
    int cond = emit(Op::Cast, {c}, 1, {}, TensorType{DType::Bool, type(c).shape});
    if (chance(0.5))
      std::swap(a, b);
    emit(Op::Select, {cond, a, b}, std::max(mag_[a], mag_[b]));
    return true;
  }

  int castTo(int v, DType d) {
    TensorType t = type(v);
    t.dtype = d;
    return emit(Op::Cast, {v}, mag_[v], {}, t);
  }

  // Casts between the float types and i32, half the time straight back (round trips).
  bool castOp() {
    int v = anyValue();
    DType from = type(v).dtype;
    if (from == DType::I32) {
      castTo(v, pick({DType::F32, DType::F16, DType::BF16}));
      return true;
    }
    int c;
    if (chance(0.3)) {
      // Scaled first: truncating values in [-1, 1) to integers gives mostly zeros.
      v = tame(v);
      int k = emit(Op::Constant, {}, 8, {{"value", 8.0}}, TensorType{from, {}});
      int m = emit(Op::Mul, {v, k}, 8 * mag_[v]);
      c = castTo(m, DType::I32);
    } else {
      DType to = from;
      while (to == from)
        to = pick({DType::F32, DType::F16, DType::BF16});
      c = castTo(v, to);
    }
    if (chance(0.5))
      castTo(c, from);
    return true;
  }

  bool reduceOp() {
    int v = pickValue(
        [&](int id) { return type(id).rank() >= 1 && (!o_.loweredOpsOnly || isFloatValue(id)); });
    if (v < 0)
      return false;
    TensorType t = type(v);
    std::vector<int64_t> axes;
    double count = 1;
    for (int i = 0; i < t.rank() && !o_.loweredOpsOnly; ++i)
      if (chance(0.4)) {
        axes.push_back(chance(0.5) ? i : i - t.rank());
        count *= static_cast<double>(t.shape[i].max(dims_));
      }
    if (axes.empty()) {
      int i = static_cast<int>(uniform(0, t.rank() - 1));
      axes.push_back(i);
      count = static_cast<double>(t.shape[i].max(dims_));
    }
    bool flt = isFloat(t.dtype);
    Op op = flt ? pick({Op::ReduceSum, Op::ReduceMax, Op::ReduceMin, Op::ReduceMean})
                : pick({Op::ReduceSum, Op::ReduceMax, Op::ReduceMin});
    if (op == Op::ReduceSum && flt)
      v = tame(v);
    if (op == Op::ReduceSum && !flt && mag_[v] * count > kIntLimit)
      op = Op::ReduceMax;
    Attrs attrs{{"axes", axes}};
    if (chance(0.5))
      attrs.push_back({"keepdims", true});
    emit(op, {v}, op == Op::ReduceSum ? mag_[v] * count : mag_[v], std::move(attrs));
    return true;
  }

  bool normalizeOp() {
    int v = pickValue([&](int id) { return isFloatValue(id) && type(id).rank() >= 1; });
    if (v < 0)
      return false;
    TensorType t = type(v);
    int64_t axis = uniform(-t.rank(), t.rank() - 1);
    Op op = pick({Op::Softmax, Op::RmsNorm, Op::LayerNorm});
    Attrs attrs;
    if (axis != -1)
      attrs.push_back({"axis", axis});
    if (op != Op::Softmax && chance(0.3))
      attrs.push_back({"eps", pick({1e-5, 1e-3})});
    double rows = static_cast<double>(t.shape[normalizeAxis(axis, t.rank())].max(dims_));
    emit(op, {v}, op == Op::Softmax ? 1 : std::sqrt(rows), std::move(attrs));
    return true;
  }

  bool matmulOp() {
    int a = pickValue([&](int id) { return isFloatValue(id) && type(id).rank() >= 2; });
    if (a < 0)
      return false;
    TensorType at = type(a);
    int r = at.rank();
    bool ta = chance(0.3), tb = false;
    Dim m = at.shape[r - (ta ? 1 : 2)], k = at.shape[r - (ta ? 2 : 1)];
    Shape batch(at.shape.begin(), at.shape.end() - 2);
    auto result = [&](const Shape &bBatch, Dim n) -> std::optional<Shape> {
      auto s = broadcastShapes(batch, bBatch);
      if (!s)
        return std::nullopt;
      s->push_back(m);
      s->push_back(n);
      return fits(*s) ? s : std::nullopt;
    };
    auto matches = [&](int c, bool t) {
      TensorType ct = type(c);
      int rc = ct.rank();
      return ct.dtype == at.dtype && rc >= 2 && ct.shape[rc - (t ? 1 : 2)] == k &&
             result(Shape(ct.shape.begin(), ct.shape.end() - 2), ct.shape[rc - (t ? 2 : 1)]);
    };
    int b = pickValue([&](int c) {
      for (bool t : {false, true})
        if (matches(c, t)) {
          tb = t;
          return true;
        }
      return false;
    });
    if (b < 0) {
      // A new weight, batched like `a` or not; its columns are cut to 1 if too large.
      Shape bs = chance(0.5) ? smallerShape(batch) : Shape{};
      Dim n = staticDim();
      tb = chance(0.3);
      auto shapeOf = [&](Dim cols) {
        Shape s = bs;
        s.push_back(tb ? cols : k);
        s.push_back(tb ? k : cols);
        return s;
      };
      if (!result(bs, n) || !fits(shapeOf(n)))
        n = Dim::of(1);
      b = input({at.dtype, shapeOf(n)}, In::Param);
    }
    a = tame(a);
    b = tame(b);
    Attrs attrs;
    if (ta)
      attrs.push_back({"transpose_a", true});
    if (tb)
      attrs.push_back({"transpose_b", true});
    emit(Op::Matmul, {a, b}, mag_[a] * mag_[b] * static_cast<double>(k.max(dims_)),
         std::move(attrs));
    return true;
  }

  bool ropeOp() {
    int x = pickValue([&](int id) {
      TensorType t = type(id);
      return isFloat(t.dtype) && t.rank() >= 2 && t.shape.back().isStatic() &&
             t.shape.back().offset % 2 == 0;
    });
    if (x < 0)
      return false;
    TensorType t = type(x);
    Shape rows(t.shape.begin(), t.shape.end() - 1);
    int pos = input({DType::I32, smallerShape(rows)}, In::Position);
    Attrs attrs{{"mode", std::string(chance(0.5) ? "interleaved" : "half")}};
    if (chance(0.3))
      attrs.push_back({"theta", 500.0});
    emit(Op::Rope, {x, pos}, mag_[x] * std::sqrt(2.0), std::move(attrs));
    return true;
  }

  // Indices are always a fresh input: the interpreter rejects an index outside the
  // table, and randomInputs bounds only inputs that feed gather.
  bool gatherOp() {
    int table = pickValue([&](int id) { return type(id).rank() >= 1; });
    if (table < 0 || chance(0.3))
      table = input({DType::F32, {Dim::of(pick<int64_t>({8, 16, 32})), staticDim()}}, In::Param);
    TensorType t = type(table);
    Shape idx;
    for (int64_t r = uniform(1, 2); r > 0; --r)
      idx.push_back(anyDim());
    Shape out = idx;
    out.insert(out.end(), t.shape.begin() + 1, t.shape.end());
    if (!fits(out))
      idx = {Dim::of(1)};
    emit(Op::Gather, {table, input({DType::I32, idx}, In::Index)}, mag_[table]);
    return true;
  }

  bool concatOp() {
    int a = pickValue([&](int id) { return type(id).rank() >= 1; });
    if (a < 0)
      return false;
    TensorType t = type(a);
    int axis = static_cast<int>(uniform(0, t.rank() - 1));
    // The other parts are static along the axis: at most one extent there may be symbolic.
    std::vector<TensorType> parts;
    Shape out = t.shape;
    for (int64_t i = uniform(1, 2); i > 0; --i) {
      TensorType p = t;
      if (!t.shape[axis].isStatic() || chance(0.6))
        p.shape[axis] = staticDim();
      out[axis].offset += p.shape[axis].offset;
      parts.push_back(p);
    }
    if (!fits(out))
      return false;
    std::vector<int> operands{a};
    double mag = mag_[a];
    for (const TensorType &p : parts) {
      operands.push_back(valueOf(p, false));
      mag = std::max(mag, mag_[operands.back()]);
    }
    if (chance(0.5))
      std::swap(operands[0], operands.back());
    emit(Op::Concat, operands, mag, {{"axis", int64_t{chance(0.5) ? axis : axis - t.rank()}}});
    return true;
  }

  bool sliceOp() {
    int x = pickValue([&](int id) { return type(id).rank() >= 1; });
    if (x < 0)
      return false;
    TensorType t = type(x);
    int axis = static_cast<int>(uniform(0, t.rank() - 1));
    Dim d = t.shape[axis], start = Dim::of(0), end;
    int64_t lo = d.min(dims_);
    if (d.isStatic()) {
      if (lo < 2)
        return false;
      int64_t s = uniform(0, lo - 1), e = uniform(s + 1, lo);
      start = Dim::of(s);
      end = Dim::of(s == 0 && e == lo ? lo - 1 : e);
    } else if (lo >= 2 && chance(0.5)) {
      start = Dim::of(uniform(1, lo - 1)); // [s, d): a symbolic extent d - s, at least 1
      end = d;
    } else {
      end = Dim::of(uniform(1, lo));
    }
    emit(Op::Slice, {x}, mag_[x], {{"axis", int64_t{axis}}, {"start", start}, {"end", end}});
    return true;
  }

  // Regroups the static extents into 1 to 3 new ones; symbolic dims move as they are.
  bool reshapeOp() {
    int x = anyValue();
    TensorType t = type(x);
    int64_t rest = 1;
    Shape syms, s;
    for (const Dim &d : t.shape) {
      if (d.isStatic())
        rest *= d.offset;
      else
        syms.push_back(d);
    }
    for (int64_t parts = uniform(1, 3); parts > 1; --parts) {
      std::vector<int64_t> divisors;
      for (int64_t f = 1; f * f <= rest; ++f)
        if (rest % f == 0)
          divisors.insert(divisors.end(), {f, rest / f});
      int64_t f = divisors[uniform(0, static_cast<int64_t>(divisors.size()) - 1)];
      s.push_back(Dim::of(f));
      rest /= f;
    }
    s.push_back(Dim::of(rest));
    for (const Dim &d : syms)
      s.insert(s.begin() + uniform(0, static_cast<int64_t>(s.size())), d);
    if (static_cast<int>(s.size()) > kMaxGenRank || s == t.shape)
      return false;
    emit(Op::Reshape, {x}, mag_[x], {}, TensorType{t.dtype, s});
    return true;
  }

  bool permuteOp() {
    int x = pickValue([&](int id) { return type(id).rank() >= 2; });
    if (x < 0)
      return false;
    int r = type(x).rank();
    std::vector<int64_t> perm(r);
    for (int i = 0; i < r; ++i)
      perm[i] = i;
    for (int i = r - 1; i > 0; --i)
      std::swap(perm[i], perm[uniform(0, i)]);
    if (perm[0] == 0 && perm[1] == 1)
      std::swap(perm[0], perm[1]);
    emit(Op::Permute, {x}, mag_[x], {{"perm", perm}});
    return true;
  }

  bool broadcastOp() {
    int x = anyValue();
    TensorType t = type(x);
    Shape s = t.shape;
    for (Dim &d : s)
      if (isStaticOne(d) && chance(0.5))
        d = anyDim();
    if (s == t.shape || chance(0.3))
      s.insert(s.begin(), anyDim());
    if (s == t.shape || !fits(s))
      return false;
    emit(Op::Broadcast, {x}, mag_[x], {}, TensorType{t.dtype, s});
    return true;
  }

  // A strided window: per dim a start, a step of 1 or 2 and a count that stay inside
  // the dim, perhaps a stride-0 dim, perhaps the dims reordered. The strides are static,
  // so only the leading dim may be symbolic.
  bool viewOp() {
    int x = pickValue([&](int id) {
      TensorType t = type(id);
      for (int i = 1; i < t.rank(); ++i)
        if (!t.shape[i].isStatic())
          return false;
      return t.rank() >= 1;
    });
    if (x < 0)
      return false;
    TensorType t = type(x);
    int r = t.rank();
    std::vector<int64_t> pitch(r, 1);
    for (int i = r - 2; i >= 0; --i)
      pitch[i] = pitch[i + 1] * t.shape[i + 1].offset;
    std::vector<std::pair<Dim, int64_t>> axes; // extent, stride
    int64_t offset = 0;
    for (int i = 0; i < r; ++i) {
      Dim d = t.shape[i];
      if (!d.isStatic()) {
        axes.push_back({chance(0.5) ? d : Dim::of(uniform(1, d.min(dims_))), pitch[i]});
        continue;
      }
      int64_t step = d.offset >= 2 && chance(0.4) ? 2 : 1;
      int64_t start = uniform(0, d.offset - 1);
      int64_t count = uniform(1, (d.offset - 1 - start) / step + 1);
      offset += start * pitch[i];
      axes.push_back({Dim::of(count), step * pitch[i]});
    }
    if (r < 5 && chance(0.3))
      axes.insert(axes.begin() + uniform(0, r), {Dim::of(uniform(2, 3)), 0});
    if (chance(0.3))
      for (int64_t i = static_cast<int64_t>(axes.size()) - 1; i > 0; --i)
        std::swap(axes[i], axes[uniform(0, i)]);
    TensorType out{t.dtype, {}};
    std::vector<int64_t> strides;
    for (const auto &[extent, stride] : axes) {
      out.shape.push_back(extent);
      strides.push_back(stride);
    }
    if (!fits(out.shape))
      return false;
    emit(Op::View, {x}, mag_[x], {{"offset", Dim::of(offset)}, {"strides", strides}}, out);
    return true;
  }

  // The destination is a fresh input that nothing else reads, so the in-place write
  // never makes a later read stale.
  bool insertSliceOp() {
    int src = pickValue([&](int id) { return type(id).rank() >= 1; });
    if (src < 0)
      return false;
    TensorType st = type(src);
    Shape dst;
    std::vector<Dim> offsets;
    for (const Dim &s : st.shape) {
      if (!s.isStatic() && chance(0.5)) {
        dst.push_back(s);
        offsets.push_back(Dim::of(0));
      } else if (s.isStatic() && !dims_.empty() && chance(0.3)) {
        // A KV-cache write at a position that moves with a symbolic dim, from 0 up.
        int32_t sym = static_cast<int32_t>(uniform(0, static_cast<int64_t>(dims_.size()) - 1));
        const SymDim &sd = dims_[sym];
        dst.push_back(Dim::of(s.offset + sd.hi - sd.lo + uniform(0, 2)));
        offsets.push_back(Dim::symbol(sym, -sd.lo));
      } else {
        int64_t extra = uniform(0, 3);
        dst.push_back(Dim::of(s.max(dims_) + extra));
        offsets.push_back(Dim::of(uniform(0, extra)));
      }
    }
    if (!fits(dst))
      return false;
    int d = input({st.dtype, dst}, In::Cache);
    emit(Op::InsertSlice, {d, src}, std::max(1.0, mag_[src]), {{"offsets", offsets}});
    return true;
  }

  // A new root: the start of an independent branch.
  bool newInput() {
    input({pick({DType::F32, DType::F32, DType::F16, DType::BF16}), randomShape(false)}, In::Input);
    return true;
  }

  void step() {
    static const std::pair<bool (Generator::*)(), int> kSteps[] = {
        {&Generator::unaryOp, 12},    {&Generator::binaryOp, 14},     {&Generator::guardedOp, 7},
        {&Generator::selectOp, 4},    {&Generator::castOp, 5},        {&Generator::reduceOp, 5},
        {&Generator::normalizeOp, 5}, {&Generator::matmulOp, 6},      {&Generator::ropeOp, 3},
        {&Generator::gatherOp, 3},    {&Generator::concatOp, 3},      {&Generator::sliceOp, 4},
        {&Generator::reshapeOp, 4},   {&Generator::permuteOp, 3},     {&Generator::broadcastOp, 2},
        {&Generator::viewOp, 3},      {&Generator::insertSliceOp, 2}, {&Generator::newInput, 3},
    };
    int total = 0;
    for (const auto &[fn, weight] : kSteps)
      total += weight;
    for (;;) { // unaryOp always applies, so this ends
      int64_t r = uniform(0, total - 1);
      for (const auto &[fn, weight] : kSteps) {
        if (r < weight) {
          if ((this->*fn)())
            return;
          break;
        }
        r -= weight;
      }
    }
  }

  const RandomGraphOptions &o_;
  std::mt19937_64 rng_;
  Builder b_;
  std::vector<SymDim> dims_;
  int count_ = 0;  // nodes so far; the builder numbers them 0, 1, ...
  int inputs_ = 0; // names the inputs
  bool failed_ = false;
  std::vector<int> pool_;                          // values that ops may read
  std::vector<double> mag_;                        // per node: a rough bound on |element|
  std::vector<bool> used_;                         // per node: read by some node
  std::map<std::string, std::vector<int>> byType_; // pool values by type
};

} // namespace

Expected<Graph> randomGraph(const RandomGraphOptions &o) { return Generator(o).run(); }

} // namespace kiln::ir
