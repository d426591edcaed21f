// Kernel IR verifier and text printer.
#include "compiler/kernel_ir.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>
#include <unordered_map>

namespace kiln::compiler {
namespace {

const char *opName(KOp op) {
  switch (op) {
  case KOp::GlobalId:
    return "global_id";
  case KOp::LocalId:
    return "local_id";
  case KOp::GroupId:
    return "group_id";
  case KOp::SharedLoad:
    return "shared_load";
  case KOp::SharedStore:
    return "shared_store";
  case KOp::Barrier:
    return "barrier";
  case KOp::MatZero:
    return "mat_zero";
  case KOp::MatLoad:
    return "mat_load";
  case KOp::MatLoadT:
    return "mat_load_t";
  case KOp::MatStore:
    return "mat_store";
  case KOp::MatMulAdd:
    return "mat_mul_add";
  case KOp::WgZero:
    return "wg_zero";
  case KOp::WgDesc:
    return "wg_desc";
  case KOp::WgMulAdd:
    return "wg_mul_add";
  case KOp::WgFence:
    return "wg_fence";
  case KOp::WgCommit:
    return "wg_commit";
  case KOp::WgWait:
    return "wg_wait";
  case KOp::WgStore:
    return "wg_store";
  case KOp::ProxyFence:
    return "proxy_fence";
  case KOp::CopyAsync:
    return "copy_async";
  case KOp::CopyCommit:
    return "copy_commit";
  case KOp::CopyWait:
    return "copy_wait";
  case KOp::SubgroupSize:
    return "subgroup_size";
  case KOp::ShuffleXor:
    return "shuffle_xor";
  case KOp::VarNew:
    return "var";
  case KOp::VarGet:
    return "get";
  case KOp::VarSet:
    return "set";
  case KOp::LoopBegin:
    return "loop";
  case KOp::LoopEnd:
    return "end_loop";
  case KOp::IfBegin:
    return "if";
  case KOp::IfEnd:
    return "end_if";
  case KOp::Dim:
    return "dim";
  case KOp::ConstI:
  case KOp::ConstF:
  case KOp::ConstB:
    return "const";
  case KOp::IAdd:
    return "iadd";
  case KOp::ISub:
    return "isub";
  case KOp::IMul:
    return "imul";
  case KOp::IDiv:
    return "idiv";
  case KOp::IRem:
    return "irem";
  case KOp::ILt:
    return "ilt";
  case KOp::FAdd:
    return "fadd";
  case KOp::FSub:
    return "fsub";
  case KOp::FMul:
    return "fmul";
  case KOp::FDiv:
    return "fdiv";
  case KOp::FNeg:
    return "fneg";
  case KOp::FAbs:
    return "fabs";
  case KOp::FMax:
    return "fmax";
  case KOp::FMin:
    return "fmin";
  case KOp::FSqrt:
    return "fsqrt";
  case KOp::FRsqrt:
    return "frsqrt";
  case KOp::FExp:
    return "fexp";
  case KOp::FExp16:
    return "fexp16";
  case KOp::FLog:
    return "flog";
  case KOp::FSin:
    return "fsin";
  case KOp::FCos:
    return "fcos";
  case KOp::FTanh:
    return "ftanh";
  case KOp::FPow:
    return "fpow";
  case KOp::FErf:
    return "ferf";
  case KOp::RoundF16:
    return "round_f16";
  case KOp::RoundBF16:
    return "round_bf16";
  case KOp::FLt:
    return "flt";
  case KOp::FLe:
    return "fle";
  case KOp::FEq:
    return "feq";
  case KOp::FNe:
    return "fne";
  case KOp::And:
    return "and";
  case KOp::Or:
    return "or";
  case KOp::Not:
    return "not";
  case KOp::Select:
    return "select";
  case KOp::Cast:
    return "cast";
  case KOp::Load:
    return "load";
  case KOp::Store:
    return "store";
  case KOp::AtomicAdd:
    return "atomic_add";
  case KOp::Fence:
    return "fence";
  }
  return "?";
}

const char *typeName(KType t) {
  switch (t) {
  case KType::Bool:
    return "bool";
  case KType::I32:
    return "i32";
  case KType::F32:
    return "f32";
  case KType::MatA:
    return "mat_a";
  case KType::MatB:
    return "mat_b";
  case KType::MatC:
    return "mat_c";
  case KType::MatW:
    return "mat_w";
  case KType::MatDesc:
    return "mat_desc";
  }
  return "?";
}

bool isMatrix(KType t) {
  return t == KType::MatA || t == KType::MatB || t == KType::MatC || t == KType::MatW ||
         t == KType::MatDesc;
}

const char *memTypeName(MemType m) {
  switch (m) {
  case MemType::F32:
    return "f32";
  case MemType::F16:
    return "f16";
  case MemType::BF16:
    return "bf16";
  case MemType::I32:
    return "i32";
  }
  return "?";
}

// Operand and result types an op requires. `Any` marks the operands of Select and Cast, and the
// value of Store, which are checked separately.
enum class Want : uint8_t { Bool, I32, F32, MatA, MatB, MatC, MatW, MatDesc, Any };

struct Signature {
  std::vector<Want> operands;
  Want result;
};

Signature signatureOf(KOp op) {
  constexpr Want B = Want::Bool, I = Want::I32, F = Want::F32, A = Want::Any;
  constexpr Want MA = Want::MatA, MB = Want::MatB, MC = Want::MatC;
  constexpr Want MW = Want::MatW, MD = Want::MatDesc;
  switch (op) {
  case KOp::GlobalId:
  case KOp::LocalId:
  case KOp::GroupId:
  case KOp::SubgroupSize:
  case KOp::Dim:
  case KOp::ConstI:
    return {{}, I};
  case KOp::ConstF:
    return {{}, F};
  case KOp::ConstB:
    return {{}, B};
  case KOp::IAdd:
  case KOp::ISub:
  case KOp::IMul:
  case KOp::IDiv:
  case KOp::IRem:
    return {{I, I}, I};
  case KOp::ILt:
    return {{I, I}, B};
  case KOp::FAdd:
  case KOp::FSub:
  case KOp::FMul:
  case KOp::FDiv:
  case KOp::FMax:
  case KOp::FMin:
  case KOp::FPow:
    return {{F, F}, F};
  case KOp::FNeg:
  case KOp::FAbs:
  case KOp::FSqrt:
  case KOp::FRsqrt:
  case KOp::FExp:
  case KOp::FExp16:
  case KOp::FLog:
  case KOp::FSin:
  case KOp::FCos:
  case KOp::FTanh:
  case KOp::FErf:
  case KOp::RoundF16:
  case KOp::RoundBF16:
  case KOp::ShuffleXor:
    return {{F}, F};
  case KOp::FLt:
  case KOp::FLe:
  case KOp::FEq:
  case KOp::FNe:
    return {{F, F}, B};
  case KOp::And:
  case KOp::Or:
    return {{B, B}, B};
  case KOp::Not:
    return {{B}, B};
  case KOp::Select:
    return {{B, A, A}, A};
  case KOp::Cast:
    return {{A}, A};
  case KOp::Load:
    return {{I}, A};
  case KOp::Store:
  case KOp::SharedStore:
    return {{I, A}, A};
  case KOp::AtomicAdd:
    return {{I, I}, I};
  case KOp::Fence:
    return {{}, A};
  case KOp::SharedLoad:
    return {{I}, A};
  case KOp::Barrier:
  case KOp::LoopEnd:
  case KOp::IfEnd:
    return {{}, A};
  case KOp::MatZero:
    return {{}, MC};
  case KOp::MatLoad:
  case KOp::MatLoadT:
    return {{I}, A};
  case KOp::MatStore:
    return {{I, MC}, A};
  case KOp::MatMulAdd:
    return {{MA, MB, MC}, MC};
  case KOp::WgZero:
    return {{}, MW};
  case KOp::WgDesc:
    return {{I}, MD};
  case KOp::WgMulAdd:
    return {{MD, MD, MW}, MW};
  case KOp::WgFence:
  case KOp::WgCommit:
  case KOp::WgWait:
  case KOp::ProxyFence:
    return {{}, A};
  case KOp::WgStore:
    return {{I, MW}, A};
  case KOp::CopyAsync:
    return {{I, I, B}, A};
  case KOp::CopyCommit:
  case KOp::CopyWait:
    return {{}, A};
  case KOp::VarNew:
  case KOp::VarGet:
    return {{A}, A};
  case KOp::VarSet:
    return {{A, A}, A};
  case KOp::LoopBegin:
    return {{I, I, I}, I};
  case KOp::IfBegin:
    return {{B}, A};
  }
  return {{}, A};
}

bool matches(Want w, KType t) {
  switch (w) {
  case Want::Bool:
    return t == KType::Bool;
  case Want::I32:
    return t == KType::I32;
  case Want::F32:
    return t == KType::F32;
  case Want::MatA:
    return t == KType::MatA;
  case Want::MatB:
    return t == KType::MatB;
  case Want::MatC:
    return t == KType::MatC;
  case Want::MatW:
    return t == KType::MatW;
  case Want::MatDesc:
    return t == KType::MatDesc;
  case Want::Any:
    return true;
  }
  return false;
}

const char *wantName(Want w) {
  switch (w) {
  case Want::Bool:
    return "bool";
  case Want::I32:
    return "i32";
  case Want::F32:
    return "f32";
  case Want::MatA:
    return "mat_a";
  case Want::MatB:
    return "mat_b";
  case Want::MatC:
    return "mat_c";
  case Want::MatW:
    return "mat_w";
  case Want::MatDesc:
    return "mat_desc";
  case Want::Any:
    return "any";
  }
  return "?";
}

bool isIdentifier(const std::string &s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9'))
    return false;
  for (char c : s)
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return false;
  return true;
}

class Verifier {
public:
  explicit Verifier(const Kernel &k) : k_(k) {}

  Status run() {
    if (!isIdentifier(k_.name))
      return fail("name is not a valid identifier");
    if (k_.numDims < 0)
      return fail("numDims is negative");
    if (k_.resident < 0)
      return fail("resident is negative");
    int n = static_cast<int>(k_.body.size());
    if (k_.guardEnd < 0 || k_.guardEnd > n)
      return fail("guardEnd " + std::to_string(k_.guardEnd) + " is outside the body (" +
                  std::to_string(n) + " instructions)");
    if (k_.guard < 0 && k_.guardEnd != 0)
      return fail("a kernel without a guard has a prologue (guardEnd " +
                  std::to_string(k_.guardEnd) + ")");
    if (k_.guard >= 0) {
      if (k_.guard >= k_.guardEnd)
        return fail("guard %" + std::to_string(k_.guard) + " is not in the prologue [0, " +
                    std::to_string(k_.guardEnd) + ")");
      const KInst &g = k_.body[k_.guard];
      if (hasNoResult(g.op) || g.type != KType::Bool)
        return fail("guard %" + std::to_string(k_.guard) + " (" + opName(g.op) + ") is not a bool");
    }
    for (size_t i = 0; i < k_.shared.size(); ++i)
      if (k_.shared[i].size <= 0)
        return fail("shared array " + std::to_string(i) + " is empty");
    region_.assign(n, -1);
    open_.assign(n, false);
    for (int id = 0; id < n; ++id) {
      if (id == k_.guardEnd && !stack_.empty())
        return failAt(stack_.back(), "region is still open where the prologue ends");
      if (Status s = verifyInst(id); s.failed())
        return s;
      if (Status s = enterOrLeave(id); s.failed())
        return s;
    }
    if (!stack_.empty())
      return failAt(stack_.back(), "region is never closed");
    return Status::ok();
  }

private:
  Status fail(const std::string &msg) const { return makeError("kernel @" + k_.name + ": " + msg); }
  Status failAt(int id, const std::string &msg) const {
    return fail("%" + std::to_string(id) + " (" + opName(k_.body[id].op) + "): " + msg);
  }

  // Keeps the stack of open regions; a value belongs to the innermost region open where
  // it is defined (a loop's induction variable to the loop itself).
  Status enterOrLeave(int id) {
    const KInst &in = k_.body[id];
    region_[id] = stack_.empty() ? -1 : stack_.back();
    if (in.op == KOp::LoopBegin || in.op == KOp::IfBegin) {
      stack_.push_back(id);
      open_[id] = true;
      region_[id] = id;
      return Status::ok();
    }
    if (in.op != KOp::LoopEnd && in.op != KOp::IfEnd)
      return Status::ok();
    KOp want = in.op == KOp::LoopEnd ? KOp::LoopBegin : KOp::IfBegin;
    if (stack_.empty() || k_.body[stack_.back()].op != want)
      return failAt(id, std::string("closes no open ") + opName(want));
    open_[stack_.back()] = false;
    stack_.pop_back();
    return Status::ok();
  }

  Status verifyInst(int id) {
    const KInst &in = k_.body[id];
    Signature sig = signatureOf(in.op);
    if (in.args.size() != sig.operands.size())
      return failAt(id, "expects " + std::to_string(sig.operands.size()) + " operands, has " +
                            std::to_string(in.args.size()));
    for (size_t i = 0; i < in.args.size(); ++i) {
      int a = in.args[i];
      if (a < 0 || a >= id)
        return failAt(id, "operand " + std::to_string(i) + " is %" + std::to_string(a) +
                              ", not an earlier instruction");
      if (hasNoResult(k_.body[a].op))
        return failAt(id, "operand " + std::to_string(i) + " is %" + std::to_string(a) + ", a " +
                              opName(k_.body[a].op) + ", which has no result");
      if (region_[a] >= 0 && !open_[region_[a]])
        return failAt(id, "operand " + std::to_string(i) + " %" + std::to_string(a) +
                              " is defined inside a region that has ended");
      KType t = k_.body[a].type;
      if (!matches(sig.operands[i], t))
        return failAt(id, "operand " + std::to_string(i) + " %" + std::to_string(a) + " is " +
                              typeName(t) + ", expected " + wantName(sig.operands[i]));
    }
    if (!hasNoResult(in.op) && !matches(sig.result, in.type))
      return failAt(id, std::string("result type is ") + typeName(in.type) + ", expected " +
                            wantName(sig.result));
    return verifySpecific(id, in);
  }

  // The checks a signature cannot express.
  Status verifySpecific(int id, const KInst &in) {
    auto argType = [&](int i) { return k_.body[in.args[i]].type; };
    switch (in.op) {
    case KOp::Dim:
      if (in.imm < 0 || in.imm >= k_.numDims)
        return failAt(id, "dim index " + std::to_string(in.imm) + " is outside [0, " +
                              std::to_string(k_.numDims) + ")");
      return Status::ok();
    case KOp::ConstI:
      if (in.imm < std::numeric_limits<int32_t>::min() ||
          in.imm > std::numeric_limits<int32_t>::max())
        return failAt(id, "constant " + std::to_string(in.imm) + " does not fit in i32");
      return Status::ok();
    case KOp::Select:
      if (isMatrix(in.type))
        return failAt(id, "selects a matrix");
      if (argType(1) != argType(2) || argType(1) != in.type)
        return failAt(id, std::string("operands are ") + typeName(argType(1)) + " and " +
                              typeName(argType(2)) + ", result is " + typeName(in.type) +
                              "; all must agree");
      return Status::ok();
    case KOp::Cast:
      // Every pair of distinct types converts; a same-type cast is a lowering bug.
      if (argType(0) == in.type)
        return failAt(id, std::string("casts ") + typeName(in.type) + " to itself");
      if (isMatrix(in.type) || isMatrix(argType(0)))
        return failAt(id, "casts a matrix");
      return Status::ok();
    case KOp::Load:
    case KOp::Store:
    case KOp::AtomicAdd:
      return verifyMemory(id, in);
    case KOp::Fence:
      return Status::ok();
    case KOp::SharedLoad:
    case KOp::SharedStore:
      return verifyShared(id, in);
    case KOp::MatZero:
    case KOp::MatLoad:
    case KOp::MatLoadT:
    case KOp::MatStore:
    case KOp::MatMulAdd:
      return verifyMatrix(id, in);
    case KOp::WgZero:
    case KOp::WgDesc:
    case KOp::WgMulAdd:
    case KOp::WgFence:
    case KOp::WgCommit:
    case KOp::WgWait:
    case KOp::WgStore:
    case KOp::ProxyFence:
      return verifyWarpgroup(id, in);
    case KOp::CopyAsync:
    case KOp::CopyCommit:
    case KOp::CopyWait:
      return verifyCopy(id, in);
    case KOp::Barrier:
      if (k_.guard >= 0)
        return failAt(id, "barrier in a guarded kernel (some invocations would not arrive)");
      return Status::ok();
    case KOp::ShuffleXor:
      if (k_.guard >= 0)
        return failAt(id, "shuffle in a guarded kernel (some invocations would not take part)");
      if (in.imm < 1 || in.imm >= (int64_t{1} << 30))
        return failAt(id, "lane mask " + std::to_string(in.imm) + " is outside [1, 2^30)");
      return Status::ok();
    case KOp::VarNew:
      if (in.type == KType::MatA || in.type == KType::MatB || in.type == KType::MatDesc)
        return failAt(id, std::string("a variable of ") + typeName(in.type) +
                              " (only sums, mat_c and mat_w, live in variables)");
      if (argType(0) != in.type)
        return failAt(id, std::string("variable of ") + typeName(in.type) + " starts as " +
                              typeName(argType(0)));
      return Status::ok();
    case KOp::VarGet:
    case KOp::VarSet: {
      const KInst &var = k_.body[in.args[0]];
      if (var.op != KOp::VarNew)
        return failAt(id, "operand 0 %" + std::to_string(in.args[0]) + " is not a variable");
      KType t = in.op == KOp::VarGet ? in.type : argType(1);
      if (t != var.type)
        return failAt(id, std::string(in.op == KOp::VarGet ? "reads " : "writes ") + typeName(t) +
                              " from a variable of " + typeName(var.type));
      if (in.op == KOp::VarSet && id < k_.guardEnd)
        return failAt(id, "side effect in the prologue");
      return Status::ok();
    }
    case KOp::LoopBegin:
    case KOp::LoopEnd:
    case KOp::IfBegin:
    case KOp::IfEnd:
    case KOp::LocalId:
    case KOp::GroupId:
    case KOp::SubgroupSize:
    case KOp::GlobalId:
    case KOp::ConstF:
    case KOp::ConstB:
    case KOp::IAdd:
    case KOp::ISub:
    case KOp::IMul:
    case KOp::IDiv:
    case KOp::IRem:
    case KOp::ILt:
    case KOp::FAdd:
    case KOp::FSub:
    case KOp::FMul:
    case KOp::FDiv:
    case KOp::FNeg:
    case KOp::FAbs:
    case KOp::FMax:
    case KOp::FMin:
    case KOp::FSqrt:
    case KOp::FRsqrt:
    case KOp::FExp:
    case KOp::FExp16:
    case KOp::FLog:
    case KOp::FSin:
    case KOp::FCos:
    case KOp::FTanh:
    case KOp::FPow:
    case KOp::FErf:
    case KOp::RoundF16:
    case KOp::RoundBF16:
    case KOp::FLt:
    case KOp::FLe:
    case KOp::FEq:
    case KOp::FNe:
    case KOp::And:
    case KOp::Or:
    case KOp::Not:
      return Status::ok();
    }
    return Status::ok();
  }

  // Whether `what` `index` names one of `count` (buffers or shared arrays).
  Status inRange(int id, const char *what, int64_t index, size_t count) const {
    if (index < 0 || index >= static_cast<int64_t>(count))
      return failAt(id, std::string(what) + " " + std::to_string(index) + " is outside [0, " +
                            std::to_string(count) + ")");
    return Status::ok();
  }

  Status verifyShared(int id, const KInst &in) {
    if (Status s = inRange(id, "shared array", in.buffer, k_.shared.size()); s.failed())
      return s;
    MemType elem = k_.shared[in.buffer].elem;
    KType t = in.op == KOp::SharedLoad ? in.type : k_.body[in.args[1]].type;
    if (t != registerType(elem))
      return failAt(id, std::string(in.op == KOp::SharedLoad ? "loads " : "stores ") + typeName(t) +
                            " with shared array " + std::to_string(in.buffer) + " of " +
                            memTypeName(elem));
    if (in.op == KOp::SharedStore && id < k_.guardEnd)
      return failAt(id, "side effect in the prologue");
    return Status::ok();
  }

  // Matrix ops: the whole subgroup takes part (no guard), loads and stores name shared
  // arrays of the right element type, and products read their factors from loads.
  Status verifyMatrix(int id, const KInst &in) {
    if (k_.guard >= 0)
      return failAt(id, "matrix op in a guarded kernel (some invocations would not take part)");
    if (in.op == KOp::MatMulAdd) {
      for (int i = 0; i < 2; ++i) {
        KOp def = k_.body[in.args[i]].op;
        if (def != KOp::MatLoad && def != KOp::MatLoadT)
          return failAt(id, "operand " + std::to_string(i) + " %" + std::to_string(in.args[i]) +
                                " is not a mat_load");
      }
      return Status::ok();
    }
    if (in.op == KOp::MatZero)
      return Status::ok();
    if (Status s = inRange(id, "shared array", in.buffer, k_.shared.size()); s.failed())
      return s;
    if (in.imm <= 0)
      return failAt(id, "row distance " + std::to_string(in.imm) + " is not positive");
    MemType want = in.op == KOp::MatStore ? MemType::F32 : MemType::F16;
    if (k_.shared[in.buffer].elem != want)
      return failAt(id, std::string("shared array ") + std::to_string(in.buffer) + " is " +
                            memTypeName(k_.shared[in.buffer].elem) + ", expected " +
                            memTypeName(want));
    if (in.op != KOp::MatStore && in.type != KType::MatA && in.type != KType::MatB)
      return failAt(id, std::string("loads a ") + typeName(in.type) + ", expected mat_a or mat_b");
    return Status::ok();
  }

  // Warpgroup ops: the whole warpgroup takes part (no guard), descriptors name f16 arrays
  // at whole core matrices with offsets the descriptor's 14-bit fields hold, and stores
  // name an f32 array.
  Status verifyWarpgroup(int id, const KInst &in) {
    if (k_.guard >= 0)
      return failAt(id, "warpgroup op in a guarded kernel (some invocations would not take part)");
    switch (in.op) {
    case KOp::WgDesc: {
      if (Status s = inRange(id, "shared array", in.buffer, k_.shared.size()); s.failed())
        return s;
      if (k_.shared[in.buffer].elem != MemType::F16)
        return failAt(id, std::string("shared array ") + std::to_string(in.buffer) + " is " +
                              memTypeName(k_.shared[in.buffer].elem) + ", expected f16");
      for (int64_t bytes : {in.imm & 0xffffffff, in.imm >> 32})
        if (bytes <= 0 || bytes % 16 != 0 || bytes >= (int64_t{1} << 18))
          return failAt(id, "core matrices lie " + std::to_string(bytes) +
                                " bytes apart, not a positive multiple of 16 below 2^18");
      return Status::ok();
    }
    case KOp::WgMulAdd:
      if (in.imm != 0 && in.imm != 1)
        return failAt(id, "B's layout " + std::to_string(in.imm) + " is neither 0 nor 1");
      return Status::ok();
    case KOp::WgWait:
      if (in.imm < 0 || in.imm > 7)
        return failAt(id, "waits for " + std::to_string(in.imm) + " batches, not 0 to 7");
      return Status::ok();
    case KOp::WgStore:
      if (Status s = inRange(id, "shared array", in.buffer, k_.shared.size()); s.failed())
        return s;
      if (k_.shared[in.buffer].elem != MemType::F32)
        return failAt(id, std::string("shared array ") + std::to_string(in.buffer) + " is " +
                              memTypeName(k_.shared[in.buffer].elem) + ", expected f32");
      if (in.imm < 0 || in.imm >= 8)
        return failAt(id, "column block " + std::to_string(in.imm) + " is outside [0, 8)");
      return Status::ok();
    default:
      return Status::ok();
    }
  }

  Status verifyCopy(int id, const KInst &in) {
    if (id < k_.guardEnd)
      return failAt(id, "side effect in the prologue");
    if (in.op == KOp::CopyWait && in.imm < 0)
      return failAt(id, "waits for " + std::to_string(in.imm) + " groups");
    if (in.op != KOp::CopyAsync)
      return Status::ok();
    if (Status s = inRange(id, "buffer", in.buffer, k_.buffers.size()); s.failed())
      return s;
    if (Status s = inRange(id, "shared array", in.imm, k_.shared.size()); s.failed())
      return s;
    MemType from = k_.buffers[in.buffer].elem, to = k_.shared[in.imm].elem;
    if (from != to)
      return failAt(id, std::string("copies ") + memTypeName(from) + " into shared array " +
                            std::to_string(in.imm) + " of " + memTypeName(to));
    return Status::ok();
  }

  Status verifyMemory(int id, const KInst &in) {
    if (Status s = inRange(id, "buffer", in.buffer, k_.buffers.size()); s.failed())
      return s;
    const KBuffer &b = k_.buffers[in.buffer];
    KType reg = registerType(b.elem);
    std::string buf = "buffer " + std::to_string(in.buffer) + " (" + memTypeName(b.elem) + ")";
    if (in.op == KOp::Load) {
      if (in.type != reg)
        return failAt(id, std::string("loads ") + typeName(in.type) + " from " + buf +
                              ", expected " + typeName(reg));
      return Status::ok();
    }
    if (id < k_.guardEnd)
      return failAt(id, "store in the prologue (guardEnd is " + std::to_string(k_.guardEnd) + ")");
    if (!b.written)
      return failAt(id, "stores to read-only " + buf);
    if (in.op == KOp::AtomicAdd && b.elem != MemType::I32)
      return failAt(id, "atomic_add on " + buf + ", expected an i32 buffer");
    KType vt = k_.body[in.args[1]].type;
    if (vt != reg)
      return failAt(id, std::string("stores ") + typeName(vt) + " to " + buf + ", expected " +
                            typeName(reg));
    return Status::ok();
  }

  const Kernel &k_;
  std::vector<int> region_; // per instruction: its region's LoopBegin/IfBegin, or -1
  std::vector<bool> open_;  // per LoopBegin/IfBegin: still open
  std::vector<int> stack_;  // open regions, innermost last
};

std::string floatText(float v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return v < 0 ? "-inf" : "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

std::string ref(int id) { return "%" + std::to_string(id); }

std::string printInst(const Kernel &k, int id) {
  const KInst &in = k.body[id];
  std::string buf = in.buffer >= 0 ? "buf" + std::to_string(in.buffer) : "buf?";
  auto arg = [&](size_t i) { return i < in.args.size() ? ref(in.args[i]) : std::string("%?"); };
  std::string shared = "shared" + std::to_string(in.buffer);
  switch (in.op) {
  case KOp::Store:
    return "store " + buf + "[" + arg(0) + "], " + arg(1);
  case KOp::SharedStore:
    return "shared_store " + shared + "[" + arg(0) + "], " + arg(1);
  case KOp::MatStore:
    return "mat_store " + shared + "[" + arg(0) + "], " + arg(1) + ", rows " +
           std::to_string(in.imm) + " apart";
  case KOp::CopyAsync:
    return "copy_async shared" + std::to_string(in.imm) + "[" + arg(1) + "], " + buf + "[" +
           arg(0) + "] if " + arg(2);
  case KOp::CopyCommit:
    return "copy_commit";
  case KOp::CopyWait:
    return "copy_wait " + std::to_string(in.imm);
  case KOp::WgStore:
    return "wg_store " + shared + "[" + arg(0) + "], " + arg(1) + ", columns " +
           std::to_string(16 * in.imm) + "+16";
  case KOp::WgWait:
    return "wg_wait " + std::to_string(in.imm);
  case KOp::WgFence:
  case KOp::WgCommit:
  case KOp::ProxyFence:
  case KOp::Barrier:
  case KOp::Fence:
  case KOp::LoopEnd:
  case KOp::IfEnd:
    return opName(in.op);
  case KOp::IfBegin:
    return "if " + arg(0);
  case KOp::VarSet:
    return "set " + arg(0) + ", " + arg(1);
  default:
    break;
  }
  std::string s = ref(id) + " = " + opName(in.op) + " " + typeName(in.type);
  switch (in.op) {
  case KOp::Dim:
  case KOp::ConstI:
    return s + " " + std::to_string(in.imm);
  case KOp::ConstF:
    return s + " " + floatText(in.fimm);
  case KOp::ConstB:
    return s + (in.imm != 0 ? " true" : " false");
  case KOp::Load:
    return s + " " + buf + "[" + arg(0) + "]";
  case KOp::AtomicAdd:
    return s + " " + buf + "[" + arg(0) + "], " + arg(1);
  case KOp::SharedLoad:
    return s + " " + shared + "[" + arg(0) + "]";
  case KOp::MatLoad:
  case KOp::MatLoadT:
    return s + " " + shared + "[" + arg(0) + "], rows " + std::to_string(in.imm) + " apart";
  case KOp::ShuffleXor:
    return s + " " + arg(0) + ", " + std::to_string(in.imm);
  case KOp::WgDesc:
    return s + " " + shared + "[" + arg(0) + "], k " + std::to_string(in.imm & 0xffffffff) +
           " mn " + std::to_string(in.imm >> 32);
  case KOp::WgMulAdd:
    return s + " " + arg(0) + ", " + arg(1) + (in.imm != 0 ? " mn" : " k") + ", " + arg(2);
  case KOp::WgZero:
  case KOp::WgFence:
  case KOp::WgCommit:
  case KOp::WgWait:
  case KOp::WgStore:
  case KOp::ProxyFence:
  case KOp::SharedStore:
  case KOp::MatStore:
  case KOp::MatZero:
  case KOp::MatMulAdd:
  case KOp::CopyAsync:
  case KOp::CopyCommit:
  case KOp::CopyWait:
  case KOp::Barrier:
  case KOp::Fence:
  case KOp::VarNew:
  case KOp::VarGet:
  case KOp::VarSet:
  case KOp::LoopBegin:
  case KOp::LoopEnd:
  case KOp::IfBegin:
  case KOp::IfEnd:
  case KOp::LocalId:
  case KOp::GroupId:
  case KOp::SubgroupSize:
  case KOp::GlobalId:
  case KOp::IAdd:
  case KOp::ISub:
  case KOp::IMul:
  case KOp::IDiv:
  case KOp::IRem:
  case KOp::ILt:
  case KOp::FAdd:
  case KOp::FSub:
  case KOp::FMul:
  case KOp::FDiv:
  case KOp::FNeg:
  case KOp::FAbs:
  case KOp::FMax:
  case KOp::FMin:
  case KOp::FSqrt:
  case KOp::FRsqrt:
  case KOp::FExp:
  case KOp::FExp16:
  case KOp::FLog:
  case KOp::FSin:
  case KOp::FCos:
  case KOp::FTanh:
  case KOp::FPow:
  case KOp::FErf:
  case KOp::RoundF16:
  case KOp::RoundBF16:
  case KOp::FLt:
  case KOp::FLe:
  case KOp::FEq:
  case KOp::FNe:
  case KOp::And:
  case KOp::Or:
  case KOp::Not:
  case KOp::Select:
  case KOp::Cast:
  case KOp::Store:
    break;
  }
  for (size_t i = 0; i < in.args.size(); ++i)
    s += (i == 0 ? " " : ", ") + arg(i);
  return s;
}

} // namespace

std::vector<int64_t> sharedLayout(const Kernel &k) {
  std::vector<int64_t> offsets;
  int64_t end = 0;
  for (const KShared &s : k.shared) {
    offsets.push_back(end);
    end = (end + s.size * memTypeBytes(s.elem) + 15) / 16 * 16;
  }
  return offsets;
}

int64_t sharedBytes(const Kernel &k) {
  int64_t bytes = 0;
  for (const KShared &s : k.shared)
    bytes = (bytes + s.size * memTypeBytes(s.elem) + 15) / 16 * 16;
  return bytes;
}

bool usesMatrixUnits(const std::vector<KInst> &body) {
  return std::any_of(body.begin(), body.end(), [](const KInst &in) {
    return in.op == KOp::MatMulAdd || in.op == KOp::WgMulAdd;
  });
}

int lowZeroBits(const std::vector<KInst> &body, int v, std::vector<int> &memo) {
  if (memo.size() < body.size())
    memo.resize(body.size(), -1);
  if (memo[v] >= 0)
    return memo[v];
  const KInst &in = body[v];
  auto z = [&](int i) { return lowZeroBits(body, in.args[i], memo); };
  int bits = 0;
  switch (in.op) {
  case KOp::ConstI:
    bits = in.imm == 0 ? kMaxZeroBits
                       : std::min(kMaxZeroBits, std::countr_zero(static_cast<uint64_t>(in.imm)));
    break;
  case KOp::IMul:
    bits = std::min(kMaxZeroBits, z(0) + z(1));
    break;
  case KOp::IAdd:
  case KOp::ISub:
  case KOp::IRem: // x - d * (x / d)
    bits = std::min(z(0), z(1));
    break;
  case KOp::IDiv: // by 2^p: a shift right
    if (const KInst &d = body[in.args[1]];
        d.op == KOp::ConstI && d.imm > 0 && std::has_single_bit(static_cast<uint64_t>(d.imm)))
      bits = std::max(0, z(0) - std::countr_zero(static_cast<uint64_t>(d.imm)));
    break;
  case KOp::Select:
    bits = in.type == KType::I32 ? std::min(z(1), z(2)) : 0;
    break;
  case KOp::LoopBegin: // begin + t * step
    bits = std::min(z(0), z(2));
    break;
  default:
    break;
  }
  return memo[v] = bits;
}

Status verifyKernel(const Kernel &k) { return Verifier(k).run(); }

std::string printKernel(const Kernel &k) {
  std::string s = "kernel @" + k.name + "(";
  for (size_t i = 0; i < k.buffers.size(); ++i) {
    const KBuffer &b = k.buffers[i];
    s += (i == 0 ? "" : ", ") + std::string("buf") + std::to_string(i);
    if (!b.name.empty())
      s += " \"" + b.name + "\"";
    s += std::string(": ") + memTypeName(b.elem) + (b.written ? " write" : " read");
  }
  s += ") dims=" + std::to_string(k.numDims);
  if (k.resident > 0)
    s += " resident=" + std::to_string(k.resident);
  s += " {\n";
  for (size_t i = 0; i < k.shared.size(); ++i)
    s += "  shared" + std::to_string(i) + ": " + memTypeName(k.shared[i].elem) + "[" +
         std::to_string(k.shared[i].size) + "]\n";
  int n = static_cast<int>(k.body.size());
  std::string indent = "  ";
  for (int id = 0; id <= n; ++id) {
    if (id == k.guardEnd && k.guard >= 0)
      s += "  guard " + ref(k.guard) + "\n";
    if (id == n)
      break;
    KOp op = k.body[id].op;
    if ((op == KOp::LoopEnd || op == KOp::IfEnd) && indent.size() > 2)
      indent.resize(indent.size() - 2);
    s += indent + printInst(k, id) + "\n";
    if (op == KOp::LoopBegin || op == KOp::IfBegin)
      indent += "  ";
  }
  return s + "}\n";
}

namespace {

// Whether an instruction's value depends only on its operands (and the invocation; for a
// shuffle, on the subgroup's operands): a load qualifies when its buffer is read-only, since a
// kernel never writes what it reads.
bool isPure(const Kernel &k, const KInst &in) {
  switch (in.op) {
  case KOp::Load:
    return !k.buffers[in.buffer].written;
  case KOp::GlobalId:
  case KOp::LocalId:
  case KOp::GroupId:
  case KOp::SubgroupSize:
  case KOp::Dim:
  case KOp::ConstI:
  case KOp::ConstF:
  case KOp::ConstB:
  case KOp::IAdd:
  case KOp::ISub:
  case KOp::IMul:
  case KOp::IDiv:
  case KOp::IRem:
  case KOp::ILt:
  case KOp::FAdd:
  case KOp::FSub:
  case KOp::FMul:
  case KOp::FDiv:
  case KOp::FNeg:
  case KOp::FAbs:
  case KOp::FMax:
  case KOp::FMin:
  case KOp::FSqrt:
  case KOp::FRsqrt:
  case KOp::FExp:
  case KOp::FExp16:
  case KOp::FLog:
  case KOp::FSin:
  case KOp::FCos:
  case KOp::FTanh:
  case KOp::FPow:
  case KOp::FErf:
  case KOp::RoundF16:
  case KOp::RoundBF16:
  case KOp::FLt:
  case KOp::FLe:
  case KOp::FEq:
  case KOp::FNe:
  case KOp::And:
  case KOp::Or:
  case KOp::Not:
  case KOp::Select:
  case KOp::Cast:
  case KOp::ShuffleXor: // the same operand gives the same value, where both execute
  case KOp::MatZero:
  case KOp::MatMulAdd:
  case KOp::WgZero:
  case KOp::WgDesc:
    return true;
  case KOp::Store:
  case KOp::AtomicAdd:
  case KOp::Fence:
  case KOp::SharedLoad:
  case KOp::SharedStore:
  case KOp::MatLoad:
  case KOp::MatLoadT:
  case KOp::MatStore:
  case KOp::CopyAsync:
  case KOp::CopyCommit:
  case KOp::CopyWait:
  case KOp::WgMulAdd: // starts work that a WgWait finishes
  case KOp::WgFence:
  case KOp::WgCommit:
  case KOp::WgWait:
  case KOp::WgStore:
  case KOp::ProxyFence:
  case KOp::Barrier:
  case KOp::VarNew:
  case KOp::VarGet:
  case KOp::VarSet:
  case KOp::LoopBegin:
  case KOp::LoopEnd:
  case KOp::IfBegin:
  case KOp::IfEnd:
    break;
  }
  return false;
}

using InstKey = std::tuple<KOp, KType, std::vector<int>, int64_t, uint32_t, int>;

struct InstKeyHash {
  size_t operator()(const InstKey &key) const {
    const auto &[op, type, args, imm, fimm, buffer] = key;
    uint64_t h = static_cast<uint64_t>(op) << 8 | static_cast<uint64_t>(type);
    auto mix = [&](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
    for (int a : args)
      mix(static_cast<uint32_t>(a));
    mix(static_cast<uint64_t>(imm));
    mix(fimm);
    mix(static_cast<uint32_t>(buffer));
    return static_cast<size_t>(h);
  }
};

} // namespace

void compactKernel(Kernel &k) {
  size_t n = k.body.size();
  // Uses, to drop pure instructions nothing needs (the guard is needed).
  std::vector<bool> live(n, false);
  for (size_t id = n; id-- > 0;) {
    const KInst &in = k.body[id];
    if (!isPure(k, in) || static_cast<int>(id) == k.guard)
      live[id] = true;
    if (live[id])
      for (int a : in.args)
        live[a] = true;
  }
  // Forward: the first of equal pure instructions in an open region stands for the rest.
  std::vector<int> newId(n, -1);
  std::vector<KInst> body;
  std::unordered_map<InstKey, int, InstKeyHash> known;
  std::vector<std::vector<InstKey>> opened{{}}; // keys added per open region
  int guardEnd = 0;
  for (size_t id = 0; id < n; ++id) {
    if (static_cast<int>(id) == k.guardEnd)
      guardEnd = static_cast<int>(body.size());
    if (!live[id])
      continue;
    KInst in = k.body[id];
    for (int &a : in.args)
      a = newId[a];
    if (in.op == KOp::LoopEnd || in.op == KOp::IfEnd) {
      for (const InstKey &key : opened.back())
        known.erase(key);
      opened.pop_back();
    }
    if (isPure(k, in)) {
      InstKey key{in.op, in.type, in.args, in.imm, std::bit_cast<uint32_t>(in.fimm), in.buffer};
      if (auto it = known.find(key); it != known.end()) {
        newId[id] = it->second;
        continue;
      }
      known.emplace(key, static_cast<int>(body.size()));
      opened.back().push_back(key);
    }
    newId[id] = static_cast<int>(body.size());
    body.push_back(std::move(in));
    if (body.back().op == KOp::LoopBegin || body.back().op == KOp::IfBegin)
      opened.emplace_back();
  }
  if (k.guardEnd >= static_cast<int>(n))
    guardEnd = static_cast<int>(body.size());
  k.guard = k.guard >= 0 ? newId[k.guard] : -1;
  k.guardEnd = k.guard >= 0 ? guardEnd : 0;
  k.body = std::move(body);
}

} // namespace kiln::compiler
