// A small SPIR-V module builder: per-section word vectors, cached types and constants.
#include "compiler/spirv/spirv_builder.h"

#include <bit>
#include <cassert>

namespace kiln::compiler::spirv {

Inst::Inst(std::vector<uint32_t> &out, spv::Op op) : out_(out), start_(out.size()) {
  out_.push_back(static_cast<uint32_t>(op));
}

Inst::~Inst() {
  size_t count = out_.size() - start_;
  assert(count <= 0xffff && "SPIR-V instruction too long");
  out_[start_] |= static_cast<uint32_t>(count) << spv::WordCountShift;
}

Inst &Inst::ids(const std::vector<Id> &vs) {
  for (Id v : vs)
    word(v.value);
  return *this;
}

Inst &Inst::word(uint32_t w) {
  out_.push_back(w);
  return *this;
}

Inst &Inst::str(std::string_view s) {
  // Little-endian packing; the terminating nul always fits, adding a word if needed.
  uint32_t w = 0;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    w |= static_cast<uint32_t>(static_cast<uint8_t>(s[i])) << (8 * (i % 4));
    if (i % 4 == 3) {
      out_.push_back(w);
      w = 0;
    }
  }
  out_.push_back(w);
  return *this;
}

void Builder::capability(spv::Capability c) {
  if (capabilitySet_.insert(c).second)
    Inst(capabilities_, spv::OpCapability).word(c);
}

void Builder::extension(std::string_view name) {
  if (extensionSet_.insert(std::string(name)).second)
    Inst(extensions_, spv::OpExtension).str(name);
}

Id Builder::importGlsl() {
  if (!glsl_) {
    glsl_ = newId();
    Inst(imports_, spv::OpExtInstImport).id(glsl_).str("GLSL.std.450");
  }
  return glsl_;
}

void Builder::memoryModel(spv::AddressingModel a, spv::MemoryModel m) {
  memoryModel_.clear();
  Inst(memoryModel_, spv::OpMemoryModel).word(a).word(m);
}

void Builder::entryPoint(spv::ExecutionModel model, Id fn, std::string_view name,
                         const std::vector<Id> &interface) {
  Inst(entryPoints_, spv::OpEntryPoint).word(model).id(fn).str(name).ids(interface);
}

void Builder::executionMode(Id fn, spv::ExecutionMode mode,
                            std::initializer_list<uint32_t> literals) {
  Inst i(executionModes_, spv::OpExecutionMode);
  i.id(fn).word(mode);
  for (uint32_t l : literals)
    i.word(l);
}

void Builder::name(Id target, std::string_view name) {
  Inst(debugNames_, spv::OpName).id(target).str(name);
}

void Builder::decorate(Id target, spv::Decoration d, std::initializer_list<uint32_t> literals) {
  Inst i(annotations_, spv::OpDecorate);
  i.id(target).word(d);
  for (uint32_t l : literals)
    i.word(l);
}

void Builder::memberDecorate(Id structType, uint32_t member, spv::Decoration d,
                             std::initializer_list<uint32_t> literals) {
  Inst i(annotations_, spv::OpMemberDecorate);
  i.id(structType).word(member).word(d);
  for (uint32_t l : literals)
    i.word(l);
}

Id Builder::cachedType(spv::Op op, std::vector<uint32_t> operands, bool *created) {
  std::vector<uint32_t> key = operands;
  key.insert(key.begin(), op);
  auto [it, inserted] = types_.try_emplace(std::move(key));
  if (created)
    *created = inserted;
  if (!inserted)
    return it->second;
  it->second = newId();
  Inst i(globals_, op);
  i.id(it->second);
  for (uint32_t w : operands)
    i.word(w);
  return it->second;
}

Id Builder::voidType() { return cachedType(spv::OpTypeVoid, {}); }
Id Builder::boolType() { return cachedType(spv::OpTypeBool, {}); }
Id Builder::intType(uint32_t width, bool isSigned) {
  return cachedType(spv::OpTypeInt, {width, isSigned ? 1u : 0u});
}
Id Builder::floatType(uint32_t width) { return cachedType(spv::OpTypeFloat, {width}); }
Id Builder::vectorType(Id elem, uint32_t count) {
  return cachedType(spv::OpTypeVector, {elem.value, count});
}

// The stride is part of the cache key: arrays differing only in ArrayStride are distinct.
Id Builder::runtimeArrayType(Id elem, uint32_t strideBytes) {
  auto key = std::vector<uint32_t>{spv::OpTypeRuntimeArray, elem.value, strideBytes};
  auto [it, inserted] = types_.try_emplace(key);
  if (!inserted)
    return it->second;
  it->second = newId();
  Inst(globals_, spv::OpTypeRuntimeArray).id(it->second).id(elem);
  decorate(it->second, spv::DecorationArrayStride, {strideBytes});
  return it->second;
}

Id Builder::arrayType(Id elem, Id length) {
  return cachedType(spv::OpTypeArray, {elem.value, length.value});
}

Id Builder::blockStructType(Id member) {
  bool created = false;
  Id s = cachedType(spv::OpTypeStruct, {member.value}, &created);
  if (created) {
    decorate(s, spv::DecorationBlock);
    memberDecorate(s, 0, spv::DecorationOffset, {0});
  }
  return s;
}

Id Builder::pointerType(spv::StorageClass sc, Id pointee) {
  return cachedType(spv::OpTypePointer, {static_cast<uint32_t>(sc), pointee.value});
}

Id Builder::functionType(Id result, const std::vector<Id> &params) {
  std::vector<uint32_t> ops{result.value};
  for (Id p : params)
    ops.push_back(p.value);
  return cachedType(spv::OpTypeFunction, ops);
}

Id Builder::cachedConstant(spv::Op op, Id type, std::vector<uint32_t> bits) {
  std::vector<uint32_t> key = bits;
  key.insert(key.begin(), {static_cast<uint32_t>(op), type.value});
  auto [it, inserted] = constants_.try_emplace(std::move(key));
  if (!inserted)
    return it->second;
  it->second = newId();
  Inst i(globals_, op);
  i.id(type).id(it->second);
  for (uint32_t w : bits)
    i.word(w);
  return it->second;
}

Id Builder::constBool(bool v) {
  return cachedConstant(v ? spv::OpConstantTrue : spv::OpConstantFalse, boolType(), {});
}
Id Builder::constI32(int32_t v) {
  return cachedConstant(spv::OpConstant, intType(32, true), {static_cast<uint32_t>(v)});
}
Id Builder::constU32(uint32_t v) {
  return cachedConstant(spv::OpConstant, intType(32, false), {v});
}
// Keyed by bits, so -0.0 and each NaN payload keep their own constant.
Id Builder::constF32(float v) {
  return cachedConstant(spv::OpConstant, floatType(32), {std::bit_cast<uint32_t>(v)});
}

Id Builder::globalVariable(Id pointerType, spv::StorageClass sc) {
  Id v = newId();
  Inst(globals_, spv::OpVariable).id(pointerType).id(v).word(sc);
  return v;
}

Id Builder::functionVariable(Id pointerType) {
  Id v = newId();
  Inst(functions_, spv::OpVariable).id(pointerType).id(v).word(spv::StorageClassFunction);
  return v;
}

void Builder::beginFunction(Id fn, Id resultType, Id fnType) {
  Inst(functions_, spv::OpFunction)
      .id(resultType)
      .id(fn)
      .word(spv::FunctionControlMaskNone)
      .id(fnType);
}

void Builder::endFunction() { Inst(functions_, spv::OpFunctionEnd); }

void Builder::label(Id l) { Inst(functions_, spv::OpLabel).id(l); }

Id Builder::op(spv::Op op, Id type, std::initializer_list<Id> operands) {
  Id r = newId();
  Inst i(functions_, op);
  i.id(type).id(r);
  for (Id o : operands)
    i.id(o);
  return r;
}

Id Builder::glsl(GLSLstd450 inst, Id type, std::initializer_list<Id> operands) {
  Id set = importGlsl();
  Id r = newId();
  Inst i(functions_, spv::OpExtInst);
  i.id(type).id(r).id(set).word(inst);
  for (Id o : operands)
    i.id(o);
  return r;
}

std::vector<uint32_t> Builder::finish(uint32_t version) const {
  std::vector<uint32_t> m{spv::MagicNumber, version, /*generator=*/0, next_, /*schema=*/0};
  for (const std::vector<uint32_t> *s :
       {&capabilities_, &extensions_, &imports_, &memoryModel_, &entryPoints_, &executionModes_,
        &debugNames_, &annotations_, &globals_, &functions_})
    m.insert(m.end(), s->begin(), s->end());
  return m;
}

} // namespace kiln::compiler::spirv
