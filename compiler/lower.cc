// Lowering: a fused graph becomes one kernel per kernel block (a computed node outside
// every block is a kernel of its own). Values that leave a kernel go to memory: the
// caller's output buffers, or temporaries; an insert_slice writes into its destination
// input in place. Each kernel is lowered by the template of its kind: pointwise, a row
// kernel around one reduction or normalization, a contraction kernel around sibling
// matmuls, or an attention kernel around two matmuls and the softmax between them.
#include "compiler/lower.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <set>

#include "compiler/element_lowering.h"
#include "compiler/templates.h"

namespace kiln::compiler {

namespace {

using ir::DType;
using ir::Node;
using ir::Op;

bool isView(const Node &n) { return ir::opCategory(n.op) == ir::Category::Layout; }

// The dtype a temporary holds values of dtype `t` in: bool as i32, and f16 and bf16 as
// f32, since the reference rounds floats only at casts and insert_slice writes
// (docs/kir.md): a value that went through a narrower temporary could differ without
// bound after a cancellation.
std::optional<DType> temporaryType(DType t) {
  switch (t) {
  case DType::Bool:
    return DType::I32;
  case DType::F16:
  case DType::BF16:
    return DType::F32;
  case DType::F32:
  case DType::I32:
    return t;
  case DType::I64:
    break;
  }
  return std::nullopt;
}
bool isCompute(const Node &n) { return ir::opCategory(n.op) != ir::Category::Source && !isView(n); }
bool isRowAnchor(const Node &n) {
  return ir::opCategory(n.op) == ir::Category::Reduce ||
         ir::opCategory(n.op) == ir::Category::Normalize;
}
bool isContraction(const Node &n) { return ir::opCategory(n.op) == ir::Category::Contraction; }

// The buffer an insert_slice writes in place: the graph input at the root of its chain
// of destinations, or -1.
int insertRoot(const ir::Graph &g, int id) {
  while (g.nodes[id].op == Op::InsertSlice)
    id = g.nodes[id].operands[0];
  return g.nodes[id].op == Op::Input ? id : -1;
}

std::string identifier(const std::string &s) {
  std::string out;
  for (char c : s)
    out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

// Why node `id` cannot be part of a kernel kiln generates, or empty when it can.
std::string unsupportedReason(const ir::Graph &g, int id) {
  const Node &n = g.nodes[id];
  DType t = n.type.dtype;
  std::string op(ir::opName(n.op));
  switch (ir::opCategory(n.op)) {
  case ir::Category::Source:
    if (n.op == Op::Constant && !n.has("value"))
      return "dense constants";
    if (n.op != Op::Constant && !memTypeOf(t))
      return "inputs of dtype " + std::string(ir::dtypeName(t));
    return "";
  case ir::Category::Layout:
    return "";
  case ir::Category::Reduce:
    if (n.attrInts("axes").size() != 1)
      return op + " over several axes";
    if (!ir::isFloat(t))
      return op + " on " + std::string(ir::dtypeName(t));
    return "";
  case ir::Category::Normalize:
    return "";
  case ir::Category::Rope:
    if (!g.typeOf(n.operands[0]).shape.back().isStatic())
      return "rope over a symbolic last dim";
    if (g.typeOf(n.operands[1]).dtype != DType::I32)
      return "rope with positions of dtype " +
             std::string(ir::dtypeName(g.typeOf(n.operands[1]).dtype));
    break;
  case ir::Category::Contraction:
    if (!ir::isFloat(t))
      return op + " on " + std::string(ir::dtypeName(t));
    break;
  case ir::Category::Gather:
    if (g.typeOf(n.operands[1]).dtype != DType::I32)
      return "gather with indices of dtype " +
             std::string(ir::dtypeName(g.typeOf(n.operands[1]).dtype));
    break;
  case ir::Category::Update:
    if (insertRoot(g, id) < 0)
      return "insert_slice into a value that is not a graph input";
    break;
  case ir::Category::Concat:
  case ir::Category::Unary:
  case ir::Category::Binary:
  case ir::Category::Select:
  case ir::Category::Cast:
    break;
  }
  if (t == DType::I64)
    return op + " on i64";
  if (t == DType::Bool && n.op != Op::Cast)
    return op + " on bool";
  if (!ir::isFloat(t) && (n.op == Op::Div || n.op == Op::Pow))
    return "integer " + op;
  return "";
}

class Lowering {
public:
  Lowering(const ir::Graph &g, const LowerOptions &opts)
      : g_(g), opts_(opts), unit_(g.nodes.size(), -1) {}

  Expected<LoweredGraph> run() {
    groupKernels();
    findEscapes();
    if (Status s = checkSupported(); s.failed())
      return s;
    halfTemps_.assign(g_.nodes.size(), false);
    if (Status s = lowerKernels(); s.failed())
      return s;
    // Temporaries that only tensor cores read are rounded to f16 on their way in: held
    // as f16, they take half the bytes and asynchronous copies, with the same sums.
    if (opts_.matrixUnits && markHalfTemps()) {
      out_ = {};
      if (Status s = lowerKernels(); s.failed())
        return s;
    }
    for (Kernel &k : out_.kernels)
      compactKernel(k);
    for (const Kernel &k : out_.kernels)
      if (Status s = verifyKernel(k); s.failed())
        return makeError("error: kiln bug: lowering made an invalid kernel: " + s.message());
    for (const Group &grp : groups_)
      out_.firstNodes.push_back(grp.nodes.front());
    out_.firstNodes.resize(out_.kernels.size(), -1);
    out_.bufferOfNode = memory_;
    return std::move(out_);
  }

private:
  Status lowerKernels() {
    declareBuffers();
    for (size_t k = 0; k < groups_.size(); ++k)
      if (Status s = lowerKernel(static_cast<int>(k)); s.failed())
        return s;
    for (size_t i = 0; i < g_.outputs.size(); ++i)
      if (!isCompute(g_.nodes[g_.outputs[i]]))
        if (Status s = lowerCopy(static_cast<int>(i)); s.failed())
          return s;
    return Status::ok();
  }

  // Marks in halfTemps_ the f16 values held in f32 temporaries whose every reader is a
  // matmul, reading it as a factor, in a kernel lowered on matrix units (which round
  // their factors to f16); returns whether it marked any.
  bool markHalfTemps() {
    std::vector<bool> onMatrixUnits(groups_.size(), false);
    for (size_t k = 0; k < groups_.size(); ++k)
      onMatrixUnits[k] = usesMatrixUnits(out_.kernels[k].body);
    std::vector<bool> candidate(g_.nodes.size(), false);
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      const runtime::ExecBuffer *b = memory_[id] < 0 ? nullptr : &out_.exe.buffers[memory_[id]];
      candidate[id] = b && b->role == runtime::BufferRole::Temp &&
                      g_.nodes[id].type.dtype == DType::F16 && b->type.dtype == DType::F32;
    }
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      const Node &v = g_.nodes[id];
      if (!isCompute(v))
        continue;
      if (isContraction(v) && onMatrixUnits[unit_[id]])
        continue; // reads its operands as factors on matrix units
      for (int o : v.operands)
        if (unit_[root_[o]] != unit_[id])
          candidate[root_[o]] = false;
    }
    halfTemps_ = std::move(candidate);
    return std::find(halfTemps_.begin(), halfTemps_.end(), true) != halfTemps_.end();
  }

  // Kernels in program order of their first node: the graph's kernel blocks, and each
  // computed node outside every block alone.
  void groupKernels() {
    std::vector<int> groupOfBlock(g_.kernels.size(), -1);
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      const Node &n = g_.nodes[id];
      if (!isCompute(n))
        continue;
      int &gb = n.kernel >= 0 ? groupOfBlock[n.kernel] : unit_[id];
      if (gb < 0 || n.kernel < 0) {
        gb = static_cast<int>(groups_.size());
        groups_.emplace_back();
      }
      unit_[id] = gb;
      groups_[gb].nodes.push_back(static_cast<int>(id));
    }
  }

  // Which computed values leave their kernel: read by another kernel (directly or
  // through views) or returned.
  void findEscapes() {
    size_t n = g_.nodes.size();
    escapes_.assign(n, false);
    readElsewhere_.assign(n, false);
    root_.assign(n, -1);
    for (size_t id = 0; id < n; ++id) {
      const Node &v = g_.nodes[id];
      root_[id] = isView(v) ? root_[v.operands[0]] : static_cast<int>(id);
      if (!isCompute(v))
        continue;
      for (int o : v.operands) {
        int r = root_[o];
        if (isCompute(g_.nodes[r]) && unit_[r] != unit_[id])
          escapes_[r] = readElsewhere_[r] = true;
      }
    }
    for (int o : g_.outputs)
      if (isCompute(g_.nodes[root_[o]]))
        escapes_[root_[o]] = true;
  }

  Status checkSupported() {
    std::set<std::string> refused;
    auto check = [&](int id) {
      std::string why = unsupportedReason(g_, id);
      if (!why.empty())
        refused.insert(why);
    };
    for (size_t id = 0; id < g_.nodes.size(); ++id) {
      const Node &n = g_.nodes[id];
      if (isCompute(n) || ir::opCategory(n.op) == ir::Category::Source)
        check(static_cast<int>(id));
      // Temporaries hold bool as i32; the caller's buffers keep the graph's dtypes.
      bool returned =
          std::find(g_.outputs.begin(), g_.outputs.end(), static_cast<int>(id)) != g_.outputs.end();
      if (isCompute(n) && escapes_[id] && !returned && !temporaryType(n.type.dtype))
        refused.insert(std::string(ir::dtypeName(n.type.dtype)) + " values between kernels");
      if (returned && !memTypeOf(n.type.dtype))
        refused.insert("outputs of dtype " + std::string(ir::dtypeName(n.type.dtype)));
      int64_t elems = 1;
      for (const ir::Dim &d : n.type.shape)
        if (__builtin_mul_overflow(elems, d.max(g_.dims), &elems))
          elems = INT64_MAX;
      if (elems > INT32_MAX)
        refused.insert("more than 2^31-1 elements");
    }
    for (const Group &grp : groups_) {
      int rows = 0, contractions = 0;
      for (int id : grp.nodes) {
        rows += isRowAnchor(g_.nodes[id]);
        contractions += isContraction(g_.nodes[id]);
      }
      if (rows > 1)
        refused.insert("several reductions in one kernel");
      // Two matmuls around a softmax are an attention, whose template checks the rest.
      if (rows > 0 && contractions > 0 && !(rows == 1 && contractions == 2))
        refused.insert("a reduction and a matmul in one kernel");
    }
    if (refused.empty())
      return Status::ok();
    std::string list;
    for (const std::string &r : refused)
      list += (list.empty() ? "" : ", ") + r;
    return makeError("error: graph @" + g_.name + ": no kernel template lowers " + list + " yet");
  }

  // The caller's buffers (inputs and params, then outputs) and a temporary for every
  // other value that leaves its kernel.
  void declareBuffers() {
    runtime::Executable &exe = out_.exe;
    exe.dims = g_.dims;
    memory_.assign(g_.nodes.size(), -1);
    for (int in : g_.inputs) {
      const Node &n = g_.nodes[in];
      memory_[in] = static_cast<int>(exe.buffers.size());
      exe.inputs.push_back(memory_[in]);
      exe.buffers.push_back(
          {n.name, n.type,
           n.op == Op::Param ? runtime::BufferRole::Param : runtime::BufferRole::Input});
    }
    // An insert_slice writes into its destination input in place.
    for (size_t id = 0; id < g_.nodes.size(); ++id)
      if (g_.nodes[id].op == Op::InsertSlice)
        memory_[id] = memory_[insertRoot(g_, static_cast<int>(id))];
    for (int o : g_.outputs) {
      if (g_.nodes[o].op == Op::InsertSlice) {
        exe.outputs.push_back(memory_[o]);
        continue;
      }
      int b = static_cast<int>(exe.buffers.size());
      exe.outputs.push_back(b);
      exe.buffers.push_back({g_.nodes[o].name, g_.typeOf(o), runtime::BufferRole::Output});
      // Other kernels read a returned value from the output buffer, unless it rounds
      // (an f16 output): they read the unrounded value from a temporary.
      DType t = g_.nodes[o].type.dtype;
      if (isCompute(g_.nodes[o]) && memory_[o] < 0 && (!readElsewhere_[o] || temporaryType(t) == t))
        memory_[o] = b;
    }
    for (size_t id = 0; id < g_.nodes.size(); ++id)
      if (escapes_[id] && memory_[id] < 0) {
        memory_[id] = static_cast<int>(exe.buffers.size());
        ir::TensorType t = g_.nodes[id].type;
        t.dtype = halfTemps_[id] ? DType::F16 : *temporaryType(t.dtype);
        exe.buffers.push_back({g_.nodes[id].name, t, runtime::BufferRole::Temp});
      }
  }

  // A new kernel and its ExecKernel, with a lowering whose loads add read buffers.
  struct Open {
    Kernel *kernel;
    runtime::ExecKernel *exec;
    std::unique_ptr<ElementLowering> el;
  };

  Open openKernel(std::vector<bool> inKernel) {
    out_.kernels.emplace_back();
    out_.exe.kernels.emplace_back();
    size_t index = out_.kernels.size() - 1;
    Kernel &k = out_.kernels.back();
    k.name = "kiln_" + identifier(g_.name) + "_" + std::to_string(index);
    out_.exe.kernels.back().name = k.name;
    auto read = [this, index](int node) {
      Kernel &kk = out_.kernels[index];
      runtime::ExecKernel &ek = out_.exe.kernels[index];
      int exeBuffer = memory_[node];
      for (size_t i = 0; i < ek.buffers.size(); ++i)
        if (ek.buffers[i] == exeBuffer && !kk.buffers[i].written)
          return static_cast<int>(i);
      return addBuffer(index, exeBuffer, false);
    };
    auto el = std::make_unique<ElementLowering>(g_, k, std::move(inKernel), read);
    return {&k, &out_.exe.kernels.back(), std::move(el)};
  }

  int addBuffer(size_t kernel, int exeBuffer, bool written) {
    const runtime::ExecBuffer &eb = out_.exe.buffers[exeBuffer];
    Kernel &k = out_.kernels[kernel];
    k.buffers.push_back({eb.name, *memTypeOf(eb.type.dtype), written});
    out_.exe.kernels[kernel].buffers.push_back(exeBuffer);
    out_.exe.kernels[kernel].writes.push_back(written);
    return static_cast<int>(k.buffers.size()) - 1;
  }

  Status lowerKernel(int group) {
    const Group &grp = groups_[group];
    std::vector<bool> inKernel(g_.nodes.size(), false);
    for (int id : grp.nodes)
      inKernel[id] = true;
    Open o = openKernel(std::move(inKernel));
    size_t index = out_.kernels.size() - 1;
    KernelStores stores;
    for (int id : grp.nodes) {
      if (!escapes_[id])
        continue;
      // Its memory buffer, and every further output buffer that returns it.
      std::vector<int> targets{memory_[id]};
      for (size_t i = 0; i < g_.outputs.size(); ++i)
        if (g_.outputs[i] == id && out_.exe.outputs[i] != memory_[id])
          targets.push_back(out_.exe.outputs[i]);
      for (int b : targets)
        stores.push_back({id, addBuffer(index, b, true)});
    }
    int anchor = -1;
    std::vector<int> contractions;
    for (int id : grp.nodes) {
      if (isRowAnchor(g_.nodes[id]))
        anchor = id;
      if (isContraction(g_.nodes[id]))
        contractions.push_back(id);
    }
    AddScratch scratch = [this, index](const std::string &name, const ir::TensorType &type,
                                       runtime::BufferRole role) {
      int b = static_cast<int>(out_.exe.buffers.size());
      out_.exe.buffers.push_back({name, type, role});
      return addBuffer(index, b, true);
    };
    Status s;
    if (anchor >= 0 && contractions.size() == 2) {
      // The output matmul reads the softmax.
      bool first = g_.nodes[contractions[0]].operands[0] == anchor;
      s = lowerAttentionKernel(*o.el, stores, contractions[first ? 1 : 0], anchor,
                               contractions[first ? 0 : 1], scratch, *o.exec);
    } else if (!contractions.empty()) {
      s = lowerContractionKernel(*o.el, stores, contractions, opts_, scratch, *o.exec);
    } else {
      s = anchor >= 0 ? lowerRowKernel(*o.el, stores, anchor, *o.exec)
                      : lowerPointwiseKernel(*o.el, stores, *o.exec);
    }
    if (s.failed())
      return makeError("error: graph @" + g_.name + ": kernel " + o.kernel->name + ": " +
                       s.message());
    return Status::ok();
  }

  // Output i returns a view or a source: a pointwise kernel copies it.
  Status lowerCopy(int i) {
    Open o = openKernel(std::vector<bool>(g_.nodes.size(), false));
    size_t index = out_.kernels.size() - 1;
    KernelStores stores{{g_.outputs[i], addBuffer(index, out_.exe.outputs[i], true)}};
    return lowerPointwiseKernel(*o.el, stores, *o.exec);
  }

  struct Group {
    std::vector<int> nodes; // computed nodes, in program order
  };

  const ir::Graph &g_;
  LowerOptions opts_;
  std::vector<Group> groups_;
  std::vector<int> unit_;           // per node: its kernel, or -1
  std::vector<bool> escapes_;       // per node: its value leaves its kernel
  std::vector<bool> readElsewhere_; // per node: another kernel reads its value
  std::vector<int> root_;           // per node: the computed or source node a view reads
  std::vector<int> memory_;         // per node: the Executable buffer holding it, or -1
  std::vector<bool> halfTemps_;     // per node: its temporary holds f16 (markHalfTemps)
  LoweredGraph out_;
};

} // namespace

Expected<LoweredGraph> lowerGraph(const ir::Graph &g, const LowerOptions &opts) {
  return Lowering(g, opts).run();
}

} // namespace kiln::compiler
