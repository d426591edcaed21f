// Lowers a pointwise graph to one kernel: every node is evaluated at the output
// element of each invocation, and broadcast operands are read through their strides.
#include "compiler/lower.h"

#include <cctype>
#include <cmath>
#include <map>
#include <numbers>
#include <set>

namespace kiln::compiler {

namespace {

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

// Why a node cannot be part of the pointwise kernel, or empty when it can.
std::string unsupportedReason(const ir::Graph &g, const Node &n, const std::set<int> &storedOnly,
                              int id) {
  if (n.op == Op::Input || n.op == Op::Param)
    return memTypeOf(n.type.dtype) ? ""
                                   : "inputs of dtype " + std::string(ir::dtypeName(n.type.dtype));
  if (n.op == Op::Constant)
    return n.has("value") ? "" : "dense constants";
  bool pointwise = ir::isPointwise(n.op) || n.op == Op::Broadcast;
  if (!pointwise)
    return std::string(ir::opName(n.op));
  DType t = n.type.dtype;
  if (t == DType::I64)
    return std::string(ir::opName(n.op)) + " on i64";
  if (t == DType::Bool && n.op != Op::Cast && n.op != Op::Broadcast)
    return std::string(ir::opName(n.op)) + " on bool";
  if (!ir::isFloat(t) && (n.op == Op::Div || n.op == Op::Pow))
    return "integer " + std::string(ir::opName(n.op));
  // Registers hold floats as f32: a narrowing cast is exact only where it is stored.
  if (n.op == Op::Cast && (t == DType::F16 || t == DType::BF16) && !storedOnly.count(id))
    return "a cast to " + std::string(ir::dtypeName(t)) + " that feeds other ops";
  return "";
}

class PointwiseLowering {
public:
  PointwiseLowering(const ir::Graph &g, Kernel &k, runtime::Executable &exe)
      : g_(g), k_(k), exe_(exe), b_(k) {}

  void run() {
    const ir::Shape &out = g_.typeOf(g_.outputs[0]).shape;
    shape_ = out;
    gid_ = b_.globalId();
    int total = b_.constI(1);
    for (const ir::Dim &d : out)
      total = b_.op(KOp::IMul, KType::I32, {total, extent(d)});
    b_.guard(b_.op(KOp::ILt, KType::Bool, {gid_, total}));
    for (size_t i = 0; i < g_.outputs.size(); ++i) {
      int node = g_.outputs[i];
      int buf = addBuffer(exe_.outputs[i], true);
      b_.store(buf, gid_, value(node));
    }
  }

private:
  // The extent of a dim as an I32 value.
  int extent(const ir::Dim &d) {
    if (d.isStatic())
      return b_.constI(d.offset);
    int v = b_.dim(d.sym);
    return d.offset ? b_.op(KOp::IAdd, KType::I32, {v, b_.constI(d.offset)}) : v;
  }

  int addBuffer(int exeBuffer, bool written) {
    const runtime::ExecBuffer &eb = exe_.buffers[exeBuffer];
    k_.buffers.push_back({eb.name, *memTypeOf(eb.type.dtype), written});
    exe_.kernels.back().buffers.push_back(exeBuffer);
    return static_cast<int>(k_.buffers.size()) - 1;
  }

  // Coordinate d of the output element, computed once.
  int coord(size_t d) {
    if (coords_.empty()) {
      coords_.assign(shape_.size(), -1);
      int rest = gid_;
      for (size_t i = shape_.size(); i-- > 0;) {
        int e = extent(shape_[i]);
        coords_[i] = b_.op(KOp::IRem, KType::I32, {rest, e});
        rest = b_.op(KOp::IDiv, KType::I32, {rest, e});
      }
    }
    return coords_[d];
  }

  // Element index into a tensor of `shape` broadcast to the output shape.
  int index(const ir::Shape &shape) {
    if (shape == shape_)
      return gid_;
    size_t lead = shape_.size() - shape.size();
    int idx = b_.constI(0), stride = -1;
    for (size_t i = shape.size(); i-- > 0;) {
      const ir::Dim &d = shape[i];
      if (!(d.isStatic() && d.offset == 1)) {
        int term =
            stride < 0 ? coord(lead + i) : b_.op(KOp::IMul, KType::I32, {coord(lead + i), stride});
        idx = b_.op(KOp::IAdd, KType::I32, {idx, term});
      }
      int e = extent(d);
      stride = stride < 0 ? e : b_.op(KOp::IMul, KType::I32, {stride, e});
    }
    return idx;
  }

  int f(float x) { return b_.constF(x); }
  int fop(KOp op, std::vector<int> args) { return b_.op(op, KType::F32, std::move(args)); }

  int sigmoid(int x) {
    return fop(KOp::FDiv, {f(1), fop(KOp::FAdd, {f(1), fop(KOp::FExp, {fop(KOp::FNeg, {x})})})});
  }

  int unaryFloat(Op op, int x) {
    switch (op) {
    case Op::Neg:
      return fop(KOp::FNeg, {x});
    case Op::Abs:
      return fop(KOp::FAbs, {x});
    case Op::Exp:
      return fop(KOp::FExp, {x});
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
      return sigmoid(x);
    case Op::Silu:
      return fop(KOp::FMul, {x, sigmoid(x)});
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
    return -1;
  }

  int unaryInt(Op op, int x) {
    int zero = b_.constI(0);
    switch (op) {
    case Op::Neg:
      return b_.op(KOp::ISub, KType::I32, {zero, x});
    case Op::Abs:
      return b_.op(
          KOp::Select, KType::I32,
          {b_.op(KOp::ILt, KType::Bool, {x, zero}), b_.op(KOp::ISub, KType::I32, {zero, x}), x});
    case Op::Relu:
      return b_.op(KOp::Select, KType::I32, {b_.op(KOp::ILt, KType::Bool, {zero, x}), x, zero});
    default:
      break;
    }
    return -1;
  }

  int binary(Op op, int a, int b, bool isInt) {
    KType t = isInt ? KType::I32 : KType::F32;
    switch (op) {
    case Op::Add:
      return b_.op(isInt ? KOp::IAdd : KOp::FAdd, t, {a, b});
    case Op::Sub:
      return b_.op(isInt ? KOp::ISub : KOp::FSub, t, {a, b});
    case Op::Mul:
      return b_.op(isInt ? KOp::IMul : KOp::FMul, t, {a, b});
    case Op::Div:
      return fop(KOp::FDiv, {a, b});
    case Op::Pow:
      return fop(KOp::FPow, {a, b});
    case Op::Max:
    case Op::Min:
      if (!isInt)
        return fop(op == Op::Max ? KOp::FMax : KOp::FMin, {a, b});
      return b_.op(
          KOp::Select, t,
          {b_.op(KOp::ILt, KType::Bool, op == Op::Max ? std::vector{b, a} : std::vector{a, b}), a,
           b});
    default:
      break;
    }
    return -1;
  }

  KType regType(DType t) {
    return t == DType::Bool ? KType::Bool : ir::isFloat(t) ? KType::F32 : KType::I32;
  }

  int cast(int x, DType from, DType to) {
    KType a = regType(from), b = regType(to);
    if (a == b)
      return x; // float to float: rounding happens at the store
    return b_.op(KOp::Cast, b, {x});
  }

  // The node's value at this invocation's output element.
  int value(int id) {
    if (auto it = memo_.find(id); it != memo_.end())
      return it->second;
    const Node &n = g_.nodes[id];
    bool isInt = !ir::isFloat(n.type.dtype);
    auto arg = [&](int i) { return value(n.operands[i]); };
    int v = -1;
    switch (ir::opCategory(n.op)) {
    case ir::Category::Source:
      if (n.op == Op::Constant) {
        double c = n.attrFloat("value");
        if (n.type.dtype == DType::Bool)
          v = b_.emit({KOp::ConstB, KType::Bool, {}, c != 0});
        else
          v = isInt ? b_.constI(static_cast<int64_t>(c)) : b_.constF(static_cast<float>(c));
      } else {
        int buf = addBuffer(inputBuffer(id), false);
        v = b_.load(buf, regType(n.type.dtype), index(n.type.shape));
      }
      break;
    case ir::Category::Unary:
      v = isInt ? unaryInt(n.op, arg(0)) : unaryFloat(n.op, arg(0));
      break;
    case ir::Category::Binary:
      v = binary(n.op, arg(0), arg(1), isInt);
      break;
    case ir::Category::Select:
      v = b_.op(KOp::Select, regType(n.type.dtype), {arg(0), arg(1), arg(2)});
      break;
    case ir::Category::Cast:
      v = cast(arg(0), g_.typeOf(n.operands[0]).dtype, n.type.dtype);
      break;
    case ir::Category::Layout: // broadcast: the same element, read through strides
      v = arg(0);
      break;
    default:
      break;
    }
    memo_[id] = v;
    return v;
  }

  int inputBuffer(int node) {
    for (size_t i = 0; i < g_.inputs.size(); ++i)
      if (g_.inputs[i] == node)
        return exe_.inputs[i];
    return -1;
  }

  const ir::Graph &g_;
  Kernel &k_;
  runtime::Executable &exe_;
  KernelBuilder b_;
  ir::Shape shape_;
  int gid_ = -1;
  std::vector<int> coords_;
  std::map<int, int> memo_;
};

std::string kernelName(const ir::Graph &g) {
  std::string s = "kiln_";
  for (char c : g.name)
    s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s + "_0";
}

} // namespace

Expected<LoweredGraph> lowerGraph(const ir::Graph &g) {
  // Nodes whose only use is a graph output: a narrowing cast there is a store.
  std::vector<int> uses(g.nodes.size(), 0);
  for (const Node &n : g.nodes)
    for (int o : n.operands)
      ++uses[o];
  std::set<int> storedOnly(g.outputs.begin(), g.outputs.end());
  for (int o : g.outputs)
    if (uses[o] > 0)
      storedOnly.erase(o);

  std::set<std::string> refused;
  std::vector<bool> needed(g.nodes.size(), false);
  for (int o : g.outputs)
    needed[o] = true;
  for (size_t id = g.nodes.size(); id-- > 0;)
    if (needed[id])
      for (int o : g.nodes[id].operands)
        needed[o] = true;
  for (size_t id = 0; id < g.nodes.size(); ++id) {
    std::string why = unsupportedReason(g, g.nodes[id], storedOnly, static_cast<int>(id));
    if (!why.empty() && (needed[id] || g.nodes[id].op == Op::Input || g.nodes[id].op == Op::Param))
      refused.insert(why);
  }
  const ir::Shape &shape = g.typeOf(g.outputs[0]).shape;
  for (int o : g.outputs)
    if (!(g.typeOf(o).shape == shape))
      refused.insert("outputs of different shapes");
  for (int o : g.outputs)
    if (!memTypeOf(g.typeOf(o).dtype))
      refused.insert("outputs of dtype " + std::string(ir::dtypeName(g.typeOf(o).dtype)));
  int64_t maxElems = 1;
  for (const ir::Dim &d : shape)
    if (__builtin_mul_overflow(maxElems, d.max(g.dims), &maxElems))
      maxElems = INT64_MAX;
  if (maxElems > INT32_MAX)
    refused.insert("more than 2^31-1 elements");
  if (!refused.empty()) {
    std::string list;
    for (const std::string &r : refused)
      list += (list.empty() ? "" : ", ") + r;
    return makeError("error: graph @" + g.name +
                     ": no kernel template lowers this group yet (only pointwise graphs are "
                     "lowered today): " +
                     list);
  }

  LoweredGraph out;
  runtime::Executable &exe = out.exe;
  exe.dims = g.dims;
  for (int in : g.inputs) {
    const Node &n = g.nodes[in];
    exe.inputs.push_back(static_cast<int>(exe.buffers.size()));
    exe.buffers.push_back(
        {n.name, n.type,
         n.op == Op::Param ? runtime::BufferRole::Param : runtime::BufferRole::Input});
  }
  for (int o : g.outputs) {
    exe.outputs.push_back(static_cast<int>(exe.buffers.size()));
    exe.buffers.push_back({g.nodes[o].name, g.typeOf(o), runtime::BufferRole::Output});
  }
  out.kernels.emplace_back();
  Kernel &k = out.kernels.back();
  k.name = kernelName(g);
  k.numDims = static_cast<int>(g.dims.size());
  exe.kernels.push_back({k.name, {}, {}, {}, shape});
  PointwiseLowering(g, k, exe).run();
  if (Status s = verifyKernel(k); s.failed())
    return makeError("error: kiln bug: lowering made an invalid kernel: " + s.message());
  return out;
}

} // namespace kiln::compiler
