// Kernel IR → SPIR-V 1.3 compute shaders for Vulkan 1.1, plus SPIRV-Tools checks.
#include "compiler/spirv/emit_spirv.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>

#include <spirv-tools/libspirv.h>

#include "compiler/spirv/spirv_builder.h"

namespace kiln::compiler {

using spirv::Builder;
using spirv::Id;

namespace {

constexpr uint32_t kSpirvVersion = 0x00010300; // 1.3: storage buffers and 16-bit storage are core

// Kernel ops that are exactly one SPIR-V instruction (glsl >= 0: a GLSL.std.450 one).
struct OneInst {
  KOp op;
  spv::Op spvOp;
  int glsl = -1;
};
constexpr OneInst kOneInst[] = {
    {KOp::IAdd, spv::OpIAdd},        {KOp::ISub, spv::OpISub},
    {KOp::IMul, spv::OpIMul},        {KOp::IDiv, spv::OpSDiv},
    {KOp::IRem, spv::OpSRem},        {KOp::ILt, spv::OpSLessThan},
    {KOp::FAdd, spv::OpFAdd},        {KOp::FSub, spv::OpFSub},
    {KOp::FMul, spv::OpFMul},        {KOp::FDiv, spv::OpFDiv},
    {KOp::FNeg, spv::OpFNegate},     {KOp::FAbs, spv::OpExtInst, GLSLstd450FAbs},
    {KOp::FLt, spv::OpFOrdLessThan}, {KOp::FLe, spv::OpFOrdLessThanEqual},
    {KOp::FEq, spv::OpFOrdEqual},    {KOp::FNe, spv::OpFUnordNotEqual},
    {KOp::And, spv::OpLogicalAnd},   {KOp::Or, spv::OpLogicalOr},
    {KOp::Not, spv::OpLogicalNot},   {KOp::Select, spv::OpSelect},
};

// erf: |x| < 1 uses x * P(x^2); 1 <= |x| < 4 uses 1 - Q_k(|x| - c_k) with Q_k fitted to
// erfc on [k, k+1); beyond 4, erf rounds to 1 in f32. Least-squares fits in Chebyshev
// nodes; measured in f32 Horner against erfl: relative error < 1.8e-7 (3 ulp).
constexpr float kErfSmall[] = {1.12837911f,    -0.37612626f,     0.112835974f,   -0.0268543288f,
                               0.00518931216f, -0.000801885501f, 7.88249745e-05f};
constexpr int kErfcDegree = 8;
constexpr float kErfcCenter[] = {1.5f, 2.5f, 3.5f};
constexpr float kErfcCoef[3][kErfcDegree + 1] = {
    {0.0338948518f, -0.118930072f, 0.17839542f, -0.138763487f, 0.0445994474f, 0.0150333075f,
     -0.0193334296f, 0.00383468205f, 0.00240193028f},
    {0.000406951876f, -0.0021783181f, 0.00544573693f, -0.00834828522f, 0.0086215185f,
     -0.00614338135f, 0.00280821207f, -0.000403042475f, -0.000306311907f},
    {7.43106568e-07f, -5.39729444e-06f, 1.8896344e-05f, -4.24091668e-05f, 6.77708304e-05f,
     -8.04814335e-05f, 7.71457126e-05f, -6.68906869e-05f, 3.70374328e-05f},
};

// A builtin input of three u32 (or one); the entry point lists those a kernel reads.
struct Builtin {
  spv::BuiltIn id;
  const char *name;
  uint32_t components = 3;
};
constexpr Builtin kGlobalInvocationId{spv::BuiltInGlobalInvocationId, "gl_GlobalInvocationID"};
constexpr Builtin kLocalInvocationId{spv::BuiltInLocalInvocationId, "gl_LocalInvocationID"};
constexpr Builtin kWorkgroupId{spv::BuiltInWorkgroupId, "gl_WorkGroupID"};
constexpr Builtin kNumWorkgroups{spv::BuiltInNumWorkgroups, "gl_NumWorkGroups"};
constexpr Builtin kSubgroupSize{spv::BuiltInSubgroupSize, "gl_SubgroupSize", 1};

struct BufferInfo {
  Id var;
  Id elemPtr; // StorageBuffer pointer to one element
  Id elem;    // the element type in memory
  MemType mem = MemType::F32;
};

class Emitter {
public:
  explicit Emitter(const Kernel &k) : k_(k) {}
  Expected<std::vector<uint32_t>> run();

private:
  // An open IfBegin or LoopBegin (or the guard's if); loops use every field.
  struct Region {
    int begin = -1; // the LoopBegin
    Id header, merge, cont;
  };

  Status checkOperands() const;
  void declareInterface();
  BufferInfo declareBuffer(MemType mem, uint32_t binding, bool written, const std::string &name);
  void declareShared();
  void declareLocals();
  std::vector<Id> usedBuiltins() const;
  void emitRange(int begin, int end);
  Id emitInst(int id);
  Id tableInst(const KInst &in, Id type);
  Id regType(KType t) const;
  Id arg(const KInst &in, int i) const { return values_[in.args[i]]; }

  Id readBuiltin(const Builtin &which, uint32_t component);
  Id globalId();
  Id groupId();
  Id sharedElement(const KInst &in);
  void barrier();
  void beginIf(Id cond);
  void endIf();
  Id beginLoop(int id);
  void endLoop();

  Id load(const BufferInfo &b, Id index);
  void store(const BufferInfo &b, Id index, Id value);
  Id cast(Id v, KType from, KType to);
  Id toF16(Id value);    // f32 to f16, rounded to nearest even (for a store)
  Id roundF16(Id x);     // the nearest f16 value, as an f32
  Id bf16Bits(Id value); // f32 to bf16 bits (in a u32), rounded to nearest even
  Id isNan(Id v) { return b_.op(spv::OpIsNan, tBool_, {v}); }
  Id math(GLSLstd450 op, Id x);
  Id nanBelowZero(Id x, Id r);
  Id fmaxmin(Id a, Id c, GLSLstd450 op);
  Id pow(Id x, Id y);
  Id erf(Id x);
  Id horner(Id u, const std::vector<Id> &coef); // coef[0] + u * (coef[1] + ...)

  const Kernel &k_;
  Builder b_;
  Id tVoid_, tBool_, tI32_, tU32_, tF32_;
  std::vector<BufferInfo> buffers_;
  BufferInfo dims_;
  std::vector<Id> shared_;              // Workgroup variables, one per Kernel::shared array
  std::map<spv::BuiltIn, Id> builtins_; // Input variables, declared on first read
  std::vector<Id> locals_;              // per instruction: a VarNew's or LoopBegin's variable
  std::vector<Region> regions_;         // innermost last
  std::vector<Id> values_;
};

Status Emitter::checkOperands() const {
  int n = static_cast<int>(k_.body.size());
  int depth = 0;
  for (int i = 0; i < n; ++i) {
    const KInst &in = k_.body[i];
    for (int a : in.args)
      if (a < 0 || a >= i)
        return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                         " uses undefined value " + std::to_string(a));
    bool usesBuffer = in.op == KOp::Load || in.op == KOp::Store;
    if (usesBuffer && (in.buffer < 0 || in.buffer >= static_cast<int>(k_.buffers.size())))
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " names no buffer");
    // Cooperative matrices (VK_KHR_cooperative_matrix) are not emitted yet: a kernel
    // lowered for matrix units compiles for PTX only.
    if (in.op == KOp::MatZero || in.op == KOp::MatLoad || in.op == KOp::MatLoadT ||
        in.op == KOp::MatStore || in.op == KOp::MatMulAdd)
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " is a matrix op, which SPIR-V does not emit yet (lower without matrix "
                       "units)");
    if (isWarpgroupOp(in.op))
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " is a warpgroup matrix op (sm_90a only; lower without them)");
    if (in.op == KOp::CopyAsync || in.op == KOp::CopyCommit || in.op == KOp::CopyWait)
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " is an asynchronous copy, which SPIR-V does not emit yet (lower "
                       "without matrix units)");
    bool usesShared = in.op == KOp::SharedLoad || in.op == KOp::SharedStore;
    if (usesShared && (in.buffer < 0 || in.buffer >= static_cast<int>(k_.shared.size())))
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " names no shared array");
    // An end without a begin would pop an empty region stack.
    depth += in.op == KOp::LoopBegin || in.op == KOp::IfBegin;
    depth -= in.op == KOp::LoopEnd || in.op == KOp::IfEnd;
    if (depth < 0)
      return makeError("spirv: kernel " + k_.name + ": instruction " + std::to_string(i) +
                       " closes no region");
  }
  if (k_.guard >= k_.guardEnd || k_.guardEnd > n)
    return makeError("spirv: kernel " + k_.name + ": guard is not in the prologue");
  for (size_t i = 0; i < k_.shared.size(); ++i)
    if (k_.shared[i].elem != MemType::F32 && k_.shared[i].elem != MemType::I32)
      return makeError("spirv: kernel " + k_.name + ": shared array " + std::to_string(i) +
                       " holds 16-bit values, which SPIR-V does not emit yet");
  return Status::ok();
}

Id Emitter::regType(KType t) const {
  switch (t) {
  case KType::Bool:
    return tBool_;
  case KType::I32:
    return tI32_;
  case KType::F32:
    return tF32_;
  case KType::MatA: // refused by checkOperands
  case KType::MatB:
  case KType::MatC:
  case KType::MatW:
  case KType::MatDesc:
    break;
  }
  return tI32_;
}

BufferInfo Emitter::declareBuffer(MemType mem, uint32_t binding, bool written,
                                  const std::string &name) {
  BufferInfo info;
  info.mem = mem;
  switch (mem) {
  case MemType::F32:
    info.elem = tF32_;
    break;
  case MemType::I32:
    info.elem = tI32_;
    break;
  case MemType::F16:
    b_.capability(spv::CapabilityStorageBuffer16BitAccess);
    info.elem = b_.floatType(16);
    break;
  case MemType::BF16:
    // No bf16 type in SPIR-V 1.3: its bits are carried as a 16-bit integer.
    b_.capability(spv::CapabilityStorageBuffer16BitAccess);
    info.elem = b_.intType(16, false);
    break;
  }
  uint32_t stride = mem == MemType::F32 || mem == MemType::I32 ? 4 : 2;
  Id block = b_.blockStructType(b_.runtimeArrayType(info.elem, stride));
  info.var = b_.globalVariable(b_.pointerType(spv::StorageClassStorageBuffer, block),
                               spv::StorageClassStorageBuffer);
  info.elemPtr = b_.pointerType(spv::StorageClassStorageBuffer, info.elem);
  b_.decorate(info.var, spv::DecorationDescriptorSet, {0});
  b_.decorate(info.var, spv::DecorationBinding, {binding});
  if (!written)
    b_.decorate(info.var, spv::DecorationNonWritable);
  // Workgroups of a kernel with a fence read what others wrote: past any cache of theirs.
  bool fenced = std::any_of(k_.body.begin(), k_.body.end(),
                            [](const KInst &in) { return in.op == KOp::Fence; });
  if (written && fenced)
    b_.decorate(info.var, spv::DecorationCoherent);
  b_.name(info.var, name);
  return info;
}

void Emitter::declareInterface() {
  b_.capability(spv::CapabilityShader);
  b_.memoryModel(spv::AddressingModelLogical, spv::MemoryModelGLSL450);
  tVoid_ = b_.voidType();
  tBool_ = b_.boolType();
  tI32_ = b_.intType(32, true);
  tU32_ = b_.intType(32, false);
  tF32_ = b_.floatType(32);
  for (size_t i = 0; i < k_.buffers.size(); ++i) {
    const KBuffer &kb = k_.buffers[i];
    buffers_.push_back(declareBuffer(kb.elem, static_cast<uint32_t>(i), kb.written, kb.name));
  }
  dims_ = declareBuffer(MemType::I32, static_cast<uint32_t>(k_.buffers.size()), false, "dims");
  declareShared();
}

// Per-workgroup arrays. In SPIR-V 1.3 the entry point lists only Input and Output
// variables, so these stay off its interface.
void Emitter::declareShared() {
  for (size_t i = 0; i < k_.shared.size(); ++i) {
    const KShared &s = k_.shared[i];
    Id length = b_.constU32(static_cast<uint32_t>(s.size));
    Id array = b_.arrayType(regType(registerType(s.elem)), length);
    Id var = b_.globalVariable(b_.pointerType(spv::StorageClassWorkgroup, array),
                               spv::StorageClassWorkgroup);
    b_.name(var, "shared" + std::to_string(i));
    shared_.push_back(var);
  }
}

// SPIR-V wants every Function variable at the start of the function's first block, so
// all are declared here, before any code; a VarNew stores its initial value in place.
void Emitter::declareLocals() {
  locals_.assign(k_.body.size(), Id{});
  for (size_t i = 0; i < k_.body.size(); ++i) {
    const KInst &in = k_.body[i];
    if (in.op == KOp::VarNew || in.op == KOp::LoopBegin)
      locals_[i] = b_.functionVariable(b_.pointerType(spv::StorageClassFunction, regType(in.type)));
  }
}

// In BuiltIn order, so the interface does not depend on which id the body read first.
std::vector<Id> Emitter::usedBuiltins() const {
  std::vector<Id> vars;
  for (const auto &[builtin, var] : builtins_)
    vars.push_back(var);
  return vars;
}

Expected<std::vector<uint32_t>> Emitter::run() {
  if (Status s = checkOperands(); s.failed())
    return s;
  declareInterface();
  Id fn = b_.newId();
  b_.executionMode(fn, spv::ExecutionModeLocalSize, {kWorkgroupSize, 1, 1});
  b_.name(fn, k_.name);
  b_.beginFunction(fn, tVoid_, b_.functionType(tVoid_, {}));
  b_.label(b_.newId());
  declareLocals();
  values_.resize(k_.body.size());
  // A kernel without a guard has an empty prologue and no guard's if.
  emitRange(0, k_.guardEnd);
  if (k_.guard >= 0)
    beginIf(values_[k_.guard]);
  emitRange(k_.guardEnd, static_cast<int>(k_.body.size()));
  if (k_.guard >= 0)
    endIf();
  b_.code(spv::OpReturn);
  b_.endFunction();
  // The entry point goes to its own section, so it can wait until the builtins are known.
  b_.entryPoint(spv::ExecutionModelGLCompute, fn, kSpirvEntryPoint, usedBuiltins());
  return b_.finish(kSpirvVersion);
}

void Emitter::emitRange(int begin, int end) {
  for (int i = begin; i < end; ++i)
    values_[i] = emitInst(i);
}

Id Emitter::emitInst(int id) {
  const KInst &in = k_.body[id];
  Id t = regType(in.type);
  switch (in.op) {
  case KOp::GlobalId:
    return globalId();
  case KOp::LocalId:
    return b_.op(spv::OpBitcast, tI32_, {readBuiltin(kLocalInvocationId, 0)});
  case KOp::GroupId:
    return groupId();
  case KOp::Dim:
    return load(dims_, b_.constI32(static_cast<int32_t>(in.imm)));
  case KOp::ConstI:
    return b_.constI32(static_cast<int32_t>(in.imm));
  case KOp::ConstF:
    return b_.constF32(in.fimm);
  case KOp::ConstB:
    return b_.constBool(in.imm != 0);
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
  case KOp::FLt:
  case KOp::FLe:
  case KOp::FEq:
  case KOp::FNe:
  case KOp::And:
  case KOp::Or:
  case KOp::Not:
  case KOp::Select:
    return tableInst(in, t);
  case KOp::FMax:
    return fmaxmin(arg(in, 0), arg(in, 1), GLSLstd450FMax);
  case KOp::FMin:
    return fmaxmin(arg(in, 0), arg(in, 1), GLSLstd450FMin);
  case KOp::FExp:
  case KOp::FExp16: // GLSL exp is within 3 + 2|x| ulp
    return math(GLSLstd450Exp, arg(in, 0));
  case KOp::FSin:
    return math(GLSLstd450Sin, arg(in, 0));
  case KOp::FCos:
    return math(GLSLstd450Cos, arg(in, 0));
  case KOp::FTanh:
    return math(GLSLstd450Tanh, arg(in, 0));
  case KOp::FSqrt:
    return nanBelowZero(arg(in, 0), math(GLSLstd450Sqrt, arg(in, 0)));
  case KOp::FLog:
    return nanBelowZero(arg(in, 0), math(GLSLstd450Log, arg(in, 0)));
  case KOp::FRsqrt: {
    // GLSL leaves x <= 0 undefined; IEEE gives ±inf at ±0 (which 1/x yields).
    Id x = arg(in, 0);
    Id r = nanBelowZero(x, math(GLSLstd450InverseSqrt, x));
    Id inf = b_.op(spv::OpFDiv, tF32_, {b_.constF32(1), x});
    Id zero = b_.op(spv::OpFOrdEqual, tBool_, {x, b_.constF32(0)});
    return b_.op(spv::OpSelect, tF32_, {zero, inf, r});
  }
  case KOp::FPow:
    return pow(arg(in, 0), arg(in, 1));
  case KOp::FErf:
    return erf(arg(in, 0));
  case KOp::RoundF16:
    return roundF16(arg(in, 0));
  case KOp::RoundBF16: {
    Id high = b_.op(spv::OpShiftLeftLogical, tU32_, {bf16Bits(arg(in, 0)), b_.constU32(16)});
    return b_.op(spv::OpBitcast, tF32_, {high});
  }
  case KOp::Cast:
    return cast(arg(in, 0), k_.body[in.args[0]].type, in.type);
  case KOp::Load:
    return load(buffers_[in.buffer], arg(in, 0));
  case KOp::Store:
    store(buffers_[in.buffer], arg(in, 0), arg(in, 1));
    return Id{};
  case KOp::AtomicAdd: {
    const BufferInfo &b = buffers_[in.buffer];
    Id ptr = b_.op(spv::OpAccessChain, b.elemPtr, {b.var, b_.constI32(0), arg(in, 0)});
    return b_.op(spv::OpAtomicIAdd, tI32_,
                 {ptr, b_.constU32(spv::ScopeDevice), b_.constU32(0), arg(in, 1)});
  }
  case KOp::Fence:
    b_.code(spv::OpMemoryBarrier)
        .id(b_.constU32(spv::ScopeDevice))
        .id(b_.constU32(spv::MemorySemanticsAcquireReleaseMask |
                        spv::MemorySemanticsUniformMemoryMask));
    return Id{};
  case KOp::SharedLoad:
    return b_.op(spv::OpLoad, t, {sharedElement(in)});
  case KOp::SharedStore: {
    Id ptr = sharedElement(in);
    b_.code(spv::OpStore).id(ptr).id(arg(in, 1));
    return Id{};
  }
  case KOp::Barrier:
    barrier();
    return Id{};
  case KOp::SubgroupSize:
    b_.capability(spv::CapabilityGroupNonUniform);
    return b_.op(spv::OpBitcast, tI32_, {readBuiltin(kSubgroupSize, 0)});
  case KOp::ShuffleXor:
    b_.capability(spv::CapabilityGroupNonUniformShuffle);
    return b_.op(
        spv::OpGroupNonUniformShuffleXor, tF32_,
        {b_.constU32(spv::ScopeSubgroup), arg(in, 0), b_.constU32(static_cast<uint32_t>(in.imm))});
  case KOp::VarNew:
    b_.code(spv::OpStore).id(locals_[id]).id(arg(in, 0));
    return locals_[id]; // VarGet and VarSet name the variable by this id
  case KOp::VarGet:
    return b_.op(spv::OpLoad, t, {arg(in, 0)});
  case KOp::VarSet:
    b_.code(spv::OpStore).id(arg(in, 0)).id(arg(in, 1));
    return Id{};
  case KOp::LoopBegin:
    return beginLoop(id);
  case KOp::LoopEnd:
    endLoop();
    return Id{};
  case KOp::IfBegin:
    beginIf(arg(in, 0));
    return Id{};
  case KOp::IfEnd:
    endIf();
    return Id{};
  case KOp::MatZero: // refused by checkOperands
  case KOp::MatLoad:
  case KOp::MatLoadT:
  case KOp::MatStore:
  case KOp::MatMulAdd:
  case KOp::CopyAsync:
  case KOp::CopyCommit:
  case KOp::CopyWait:
  case KOp::WgZero:
  case KOp::WgDesc:
  case KOp::WgMulAdd:
  case KOp::WgFence:
  case KOp::WgCommit:
  case KOp::WgWait:
  case KOp::WgStore:
  case KOp::ProxyFence:
    break;
  }
  return Id{}; // not reached: every op returns above
}

Id Emitter::tableInst(const KInst &in, Id type) {
  std::vector<Id> operands;
  for (int a : in.args)
    operands.push_back(values_[a]);
  for (const OneInst &o : kOneInst) {
    if (o.op != in.op)
      continue;
    Id r = b_.newId();
    if (o.glsl < 0) {
      b_.code(o.spvOp).id(type).id(r).ids(operands);
      return r;
    }
    Id set = b_.importGlsl();
    b_.code(spv::OpExtInst).id(type).id(r).id(set).word(o.glsl).ids(operands);
    return r;
  }
  assert(false && "kernel op missing from the SPIR-V table");
  return Id{};
}

// One component of a builtin input, declaring the variable on first use.
Id Emitter::readBuiltin(const Builtin &which, uint32_t component) {
  Id type = which.components == 1 ? tU32_ : b_.vectorType(tU32_, which.components);
  auto [it, inserted] = builtins_.try_emplace(which.id);
  if (inserted) {
    it->second =
        b_.globalVariable(b_.pointerType(spv::StorageClassInput, type), spv::StorageClassInput);
    b_.decorate(it->second, spv::DecorationBuiltIn, {static_cast<uint32_t>(which.id)});
    b_.name(it->second, which.name);
  }
  Id vector = b_.op(spv::OpLoad, type, {it->second});
  if (which.components == 1)
    return vector;
  Id r = b_.newId();
  b_.code(spv::OpCompositeExtract).id(tU32_).id(r).id(vector).word(component);
  return r;
}

// Grids wider than maxComputeWorkGroupCount[0] workgroups are dispatched as rows of
// workgroups: id = x + y * (workgroups in x) * kWorkgroupSize.
Id Emitter::globalId() {
  Id rowWidth =
      b_.op(spv::OpIMul, tU32_, {readBuiltin(kNumWorkgroups, 0), b_.constU32(kWorkgroupSize)});
  Id row = b_.op(spv::OpIMul, tU32_, {readBuiltin(kGlobalInvocationId, 1), rowWidth});
  Id id = b_.op(spv::OpIAdd, tU32_, {readBuiltin(kGlobalInvocationId, 0), row});
  return b_.op(spv::OpBitcast, tI32_, {id});
}

// The same rows of workgroups, so that GlobalId = GroupId * kWorkgroupSize + LocalId.
Id Emitter::groupId() {
  Id row =
      b_.op(spv::OpIMul, tU32_, {readBuiltin(kWorkgroupId, 1), readBuiltin(kNumWorkgroups, 0)});
  Id id = b_.op(spv::OpIAdd, tU32_, {readBuiltin(kWorkgroupId, 0), row});
  return b_.op(spv::OpBitcast, tI32_, {id});
}

// A pointer to element args[0] of shared array `buffer`.
Id Emitter::sharedElement(const KInst &in) {
  Id elemPtr =
      b_.pointerType(spv::StorageClassWorkgroup, regType(registerType(k_.shared[in.buffer].elem)));
  return b_.op(spv::OpAccessChain, elemPtr, {shared_[in.buffer], arg(in, 0)});
}

// Waits for the workgroup; AcquireRelease on Workgroup memory makes the shared-array
// writes before it visible to every invocation after it.
void Emitter::barrier() {
  Id workgroup = b_.constU32(spv::ScopeWorkgroup);
  Id semantics =
      b_.constU32(spv::MemorySemanticsAcquireReleaseMask | spv::MemorySemanticsWorkgroupMemoryMask);
  b_.code(spv::OpControlBarrier).id(workgroup).id(workgroup).id(semantics);
}

void Emitter::beginIf(Id cond) {
  Id body = b_.newId(), merge = b_.newId();
  b_.code(spv::OpSelectionMerge).id(merge).word(spv::SelectionControlMaskNone);
  b_.code(spv::OpBranchConditional).id(cond).id(body).id(merge);
  b_.label(body);
  regions_.push_back({.merge = merge});
}

void Emitter::endIf() {
  Id merge = regions_.back().merge;
  regions_.pop_back();
  b_.code(spv::OpBranch).id(merge);
  b_.label(merge);
}

// The induction variable lives in its Function variable: set to `begin` on entry, read
// and compared in the header (that read is the LoopBegin's value in the body), stepped in
// the continue block.
Id Emitter::beginLoop(int id) {
  const KInst &in = k_.body[id];
  Region r{id, b_.newId(), b_.newId(), b_.newId()};
  b_.code(spv::OpStore).id(locals_[id]).id(arg(in, 0));
  b_.code(spv::OpBranch).id(r.header);
  b_.label(r.header);
  Id i = b_.op(spv::OpLoad, tI32_, {locals_[id]});
  Id more = b_.op(spv::OpSLessThan, tBool_, {i, arg(in, 1)});
  b_.code(spv::OpLoopMerge).id(r.merge).id(r.cont).word(spv::LoopControlMaskNone);
  Id body = b_.newId();
  b_.code(spv::OpBranchConditional).id(more).id(body).id(r.merge);
  b_.label(body);
  regions_.push_back(r);
  return i;
}

void Emitter::endLoop() {
  Region r = regions_.back();
  regions_.pop_back();
  b_.code(spv::OpBranch).id(r.cont);
  b_.label(r.cont);
  Id next = b_.op(spv::OpIAdd, tI32_, {values_[r.begin], arg(k_.body[r.begin], 2)});
  b_.code(spv::OpStore).id(locals_[r.begin]).id(next);
  b_.code(spv::OpBranch).id(r.header);
  b_.label(r.merge);
}

Id Emitter::load(const BufferInfo &b, Id index) {
  Id ptr = b_.op(spv::OpAccessChain, b.elemPtr, {b.var, b_.constI32(0), index});
  Id v = b_.op(spv::OpLoad, b.elem, {ptr});
  switch (b.mem) {
  case MemType::F32:
  case MemType::I32:
    return v;
  case MemType::F16:
    return b_.op(spv::OpFConvert, tF32_, {v});
  case MemType::BF16: {
    // bf16 is the high half of an f32.
    Id wide = b_.op(spv::OpUConvert, tU32_, {v});
    Id bits = b_.op(spv::OpShiftLeftLogical, tU32_, {wide, b_.constU32(16)});
    return b_.op(spv::OpBitcast, tF32_, {bits});
  }
  }
  return v;
}

void Emitter::store(const BufferInfo &b, Id index, Id value) {
  Id ptr = b_.op(spv::OpAccessChain, b.elemPtr, {b.var, b_.constI32(0), index});
  switch (b.mem) {
  case MemType::F32:
  case MemType::I32:
    break;
  case MemType::F16:
    value = toF16(value);
    break;
  case MemType::BF16:
    value = b_.op(spv::OpUConvert, b.elem, {bf16Bits(value)});
    break;
  }
  b_.code(spv::OpStore).id(ptr).id(value);
}

// The nearest f16 value as an f32, in f32 arithmetic: Vulkan honours a rounding mode
// on a narrowing conversion only where the result is stored, so OpFConvert could round
// toward zero here. Normal f16 values keep 10 mantissa bits (round half to even on the
// f32 bits); below 2^-14 f16 steps are 2^-24 apart (RoundEven of x * 2^24); past 65504
// the value is infinite. NaN and infinities pass through.
Id Emitter::roundF16(Id x) {
  Id bits = b_.op(spv::OpBitcast, tU32_, {x});
  Id odd = b_.op(spv::OpBitwiseAnd, tU32_,
                 {b_.op(spv::OpShiftRightLogical, tU32_, {bits, b_.constU32(13)}), b_.constU32(1)});
  Id biased =
      b_.op(spv::OpIAdd, tU32_, {bits, b_.op(spv::OpIAdd, tU32_, {b_.constU32(0x0fff), odd})});
  Id normal = b_.op(spv::OpBitcast, tF32_,
                    {b_.op(spv::OpBitwiseAnd, tU32_, {biased, b_.constU32(0xffffe000u)})});
  Id scaled = b_.glsl(GLSLstd450RoundEven, tF32_,
                      {b_.op(spv::OpFMul, tF32_, {x, b_.constF32(16777216.0f)})});
  Id tiny = b_.op(spv::OpFMul, tF32_, {scaled, b_.constF32(1.0f / 16777216.0f)});
  Id mag = b_.glsl(GLSLstd450FAbs, tF32_, {x});
  Id r = b_.op(
      spv::OpSelect, tF32_,
      {b_.op(spv::OpFOrdLessThan, tBool_, {mag, b_.constF32(6.103515625e-05f)}), tiny, normal});
  Id inf = b_.op(
      spv::OpFMul, tF32_,
      {b_.glsl(GLSLstd450FSign, tF32_, {x}), b_.constF32(std::numeric_limits<float>::infinity())});
  Id over = b_.op(spv::OpFOrdGreaterThan, tBool_,
                  {b_.glsl(GLSLstd450FAbs, tF32_, {r}), b_.constF32(65504.0f)});
  r = b_.op(spv::OpSelect, tF32_, {over, inf, r});
  return b_.op(spv::OpSelect, tF32_, {isNan(x), x, r});
}

Id Emitter::toF16(Id value) {
  b_.capability(spv::CapabilityStorageBuffer16BitAccess);
  Id h = b_.op(spv::OpFConvert, b_.floatType(16), {value});
  // Conversions that narrow are otherwise allowed to round toward zero.
  b_.decorate(h, spv::DecorationFPRoundingMode, {spv::FPRoundingModeRTE});
  return h;
}

// Round to nearest even on the bits; NaN keeps its sign and becomes quiet, since
// rounding could carry a NaN's payload into infinity.
Id Emitter::bf16Bits(Id value) {
  Id bits = b_.op(spv::OpBitcast, tU32_, {value});
  Id high = b_.op(spv::OpShiftRightLogical, tU32_, {bits, b_.constU32(16)});
  Id odd = b_.op(spv::OpBitwiseAnd, tU32_, {high, b_.constU32(1)});
  Id biased =
      b_.op(spv::OpIAdd, tU32_, {bits, b_.op(spv::OpIAdd, tU32_, {b_.constU32(0x7fff), odd})});
  Id rounded = b_.op(spv::OpShiftRightLogical, tU32_, {biased, b_.constU32(16)});
  Id quiet = b_.op(spv::OpBitwiseOr, tU32_, {high, b_.constU32(0x40)});
  return b_.op(spv::OpSelect, tU32_, {isNan(value), quiet, rounded});
}

Id Emitter::cast(Id v, KType from, KType to) {
  if (from == to)
    return v;
  switch (to) {
  case KType::Bool:
    if (from == KType::I32)
      return b_.op(spv::OpINotEqual, tBool_, {v, b_.constI32(0)});
    // Unordered: NaN != 0 is true, as in C.
    return b_.op(spv::OpFUnordNotEqual, tBool_, {v, b_.constF32(0)});
  case KType::I32:
    if (from == KType::Bool)
      return b_.op(spv::OpSelect, tI32_, {v, b_.constI32(1), b_.constI32(0)});
    return b_.op(spv::OpConvertFToS, tI32_, {v});
  case KType::F32:
    if (from == KType::Bool)
      return b_.op(spv::OpSelect, tF32_, {v, b_.constF32(1), b_.constF32(0)});
    return b_.op(spv::OpConvertSToF, tF32_, {v});
  case KType::MatA: // the verifier refuses casts of matrices
  case KType::MatB:
  case KType::MatC:
  case KType::MatW:
  case KType::MatDesc:
    break;
  }
  return v;
}

// Vulkan does not require NaN to propagate through GLSL.std.450 (lavapipe's Exp(NaN) is
// 0); the kernel IR does.
Id Emitter::math(GLSLstd450 op, Id x) {
  return b_.op(spv::OpSelect, tF32_, {isNan(x), x, b_.glsl(op, tF32_, {x})});
}

// GLSL leaves sqrt and log of a negative undefined; IEEE says NaN.
Id Emitter::nanBelowZero(Id x, Id r) {
  Id neg = b_.op(spv::OpFOrdLessThan, tBool_, {x, b_.constF32(0)});
  return b_.op(spv::OpSelect, tF32_,
               {neg, b_.constF32(std::numeric_limits<float>::quiet_NaN()), r});
}

// GLSL's FMax/FMin may return either operand when one is NaN; the kernel IR wants NaN.
Id Emitter::fmaxmin(Id a, Id c, GLSLstd450 op) {
  Id r = b_.glsl(op, tF32_, {a, c});
  r = b_.op(spv::OpSelect, tF32_, {isNan(a), a, r});
  return b_.op(spv::OpSelect, tF32_, {isNan(c), c, r});
}

// GLSL's Pow is defined for x > 0 only; the rest follows C's pow.
Id Emitter::pow(Id x, Id y) {
  Id zero = b_.constF32(0), one = b_.constF32(1), half = b_.constF32(0.5f);
  Id inf = b_.constF32(std::numeric_limits<float>::infinity());
  Id nan = b_.constF32(std::numeric_limits<float>::quiet_NaN());
  auto fcmp = [&](spv::Op op, Id a, Id c) { return b_.op(op, tBool_, {a, c}); };
  auto sel = [&](Id c, Id a, Id d) { return b_.op(spv::OpSelect, tF32_, {c, a, d}); };
  auto logic = [&](spv::Op op, Id a, Id c) { return b_.op(op, tBool_, {a, c}); };

  Id ax = b_.glsl(GLSLstd450FAbs, tF32_, {x});
  Id r = b_.glsl(GLSLstd450Pow, tF32_, {ax, y});
  // |x| == 0: +0 for y > 0, +inf for y < 0 (the sign comes below).
  r = sel(fcmp(spv::OpFOrdEqual, ax, zero), sel(fcmp(spv::OpFOrdLessThan, y, zero), inf, zero), r);
  Id isInt = fcmp(spv::OpFOrdEqual, b_.glsl(GLSLstd450Trunc, tF32_, {y}), y);
  Id halfY = b_.op(spv::OpFMul, tF32_, {y, half});
  Id twiceTrunc =
      b_.op(spv::OpFMul, tF32_, {b_.glsl(GLSLstd450Trunc, tF32_, {halfY}), b_.constF32(2)});
  Id odd = logic(spv::OpLogicalAnd, isInt, fcmp(spv::OpFOrdNotEqual, twiceTrunc, y));
  // The sign bit, so that pow(-0, odd) keeps its sign.
  Id neg = b_.op(spv::OpSLessThan, tBool_, {b_.op(spv::OpBitcast, tI32_, {x}), b_.constI32(0)});
  r = sel(logic(spv::OpLogicalAnd, neg, odd), b_.op(spv::OpFNegate, tF32_, {r}), r);
  // A finite negative base to a non-integer power has no real value (-inf has: +inf or +0).
  Id negFinite = logic(spv::OpLogicalAnd, fcmp(spv::OpFOrdLessThan, x, zero),
                       b_.op(spv::OpLogicalNot, tBool_, {b_.op(spv::OpIsInf, tBool_, {x})}));
  r = sel(logic(spv::OpLogicalAnd, negFinite, b_.op(spv::OpLogicalNot, tBool_, {isInt})), nan, r);
  Id anyNan = logic(spv::OpLogicalOr, isNan(x), isNan(y));
  r = sel(anyNan, b_.op(spv::OpFAdd, tF32_, {x, y}), r);
  // pow(x, 0) = 1 and pow(±1, y) = 1 for every x and y, NaN and infinities included.
  Id unitBase = logic(
      spv::OpLogicalAnd, fcmp(spv::OpFOrdEqual, ax, one),
      logic(spv::OpLogicalOr, b_.op(spv::OpIsInf, tBool_, {y}), fcmp(spv::OpFOrdEqual, x, one)));
  Id isOne = logic(spv::OpLogicalOr, fcmp(spv::OpFOrdEqual, y, zero), unitBase);
  return sel(isOne, one, r);
}

Id Emitter::horner(Id u, const std::vector<Id> &coef) {
  Id acc = coef.back();
  for (size_t i = coef.size() - 1; i-- > 0;)
    acc = b_.op(spv::OpFAdd, tF32_, {b_.op(spv::OpFMul, tF32_, {acc, u}), coef[i]});
  return acc;
}

// See kErfSmall/kErfcCoef. The pieces for |x| >= 1 share one Horner evaluation with
// coefficients picked by select, so the shader stays branch-free.
Id Emitter::erf(Id x) {
  Id ax = b_.glsl(GLSLstd450FAbs, tF32_, {x});
  std::vector<Id> small;
  for (float c : kErfSmall)
    small.push_back(b_.constF32(c));
  Id nearZero = b_.op(spv::OpFMul, tF32_, {ax, horner(b_.op(spv::OpFMul, tF32_, {ax, ax}), small)});

  Id inSecond = b_.op(spv::OpFOrdGreaterThanEqual, tBool_, {ax, b_.constF32(2)});
  Id inThird = b_.op(spv::OpFOrdGreaterThanEqual, tBool_, {ax, b_.constF32(3)});
  auto pick = [&](float a, float c, float d) {
    Id r = b_.op(spv::OpSelect, tF32_, {inSecond, b_.constF32(c), b_.constF32(a)});
    return b_.op(spv::OpSelect, tF32_, {inThird, b_.constF32(d), r});
  };
  std::vector<Id> coef;
  for (int i = 0; i <= kErfcDegree; ++i)
    coef.push_back(pick(kErfcCoef[0][i], kErfcCoef[1][i], kErfcCoef[2][i]));
  Id u = b_.op(spv::OpFSub, tF32_, {ax, pick(kErfcCenter[0], kErfcCenter[1], kErfcCenter[2])});
  Id tail = b_.op(spv::OpFSub, tF32_, {b_.constF32(1), horner(u, coef)});

  Id r = b_.op(spv::OpSelect, tF32_,
               {b_.op(spv::OpFOrdLessThan, tBool_, {ax, b_.constF32(1)}), nearZero, tail});
  // NaN fails this compare and stays NaN through the polynomial.
  r = b_.op(spv::OpSelect, tF32_,
            {b_.op(spv::OpFOrdGreaterThanEqual, tBool_, {ax, b_.constF32(4)}), b_.constF32(1), r});
  // erf is odd: copy x's sign bit onto the non-negative result (so erf(-0) = -0).
  Id sign = b_.op(spv::OpBitwiseAnd, tU32_,
                  {b_.op(spv::OpBitcast, tU32_, {x}), b_.constU32(0x80000000u)});
  Id bits = b_.op(spv::OpBitwiseOr, tU32_, {b_.op(spv::OpBitcast, tU32_, {r}), sign});
  return b_.op(spv::OpBitcast, tF32_, {bits});
}

// Frees SPIRV-Tools objects on every path.
struct SpvContext {
  spv_context ctx = spvContextCreate(SPV_ENV_VULKAN_1_1);
  spv_diagnostic diag = nullptr;
  ~SpvContext() {
    spvDiagnosticDestroy(diag);
    spvContextDestroy(ctx);
  }
  std::string diagnostic() const { return diag && diag->error ? diag->error : "unknown error"; }
};

} // namespace

std::string disassembleSpirv(const std::vector<uint32_t> &words) {
  SpvContext c;
  spv_text text = nullptr;
  uint32_t options = SPV_BINARY_TO_TEXT_OPTION_FRIENDLY_NAMES | SPV_BINARY_TO_TEXT_OPTION_INDENT;
  if (spvBinaryToText(c.ctx, words.data(), words.size(), options, &text, &c.diag) != SPV_SUCCESS)
    return "; spirv-dis failed: " + c.diagnostic() + "\n";
  std::string out(text->str, text->length);
  spvTextDestroy(text);
  return out;
}

Status validateSpirv(const std::vector<uint32_t> &words) {
  SpvContext c;
  if (spvValidateBinary(c.ctx, words.data(), words.size(), &c.diag) != SPV_SUCCESS)
    return makeError("spirv-val: " + c.diagnostic());
  return Status::ok();
}

Expected<std::vector<uint32_t>> emitSpirv(const Kernel &k) {
  Expected<std::vector<uint32_t>> words = Emitter(k).run();
  const char *dump = std::getenv("KILN_DUMP_SPIRV");
  if (words && dump && std::strcmp(dump, "1") == 0)
    std::fprintf(stderr, "; kernel %s\n%s", k.name.c_str(), disassembleSpirv(*words).c_str());
  return words;
}

} // namespace kiln::compiler
