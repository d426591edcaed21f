// A small SPIR-V module builder: per-section word vectors, cached types and constants.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spirv/unified1/GLSL.std.450.h>
#include <spirv/unified1/spirv.hpp>

namespace kiln::compiler::spirv {

// A result id. Zero is never a valid id, so a default Id means "none".
struct Id {
  uint32_t value = 0;
  explicit operator bool() const { return value != 0; }
  auto operator<=>(const Id &) const = default;
};

// Appends one instruction to a section and patches its word count when it goes out of
// scope, so operands can be chained: `Inst(s, spv::OpIAdd).id(t).id(r).id(a).id(b);`.
// Operands must exist before the chain starts: emitting into the same section in the
// middle of it would interleave two instructions.
class Inst {
public:
  Inst(std::vector<uint32_t> &out, spv::Op op);
  ~Inst();
  Inst(const Inst &) = delete;
  Inst &operator=(const Inst &) = delete;

  Inst &id(Id v) { return word(v.value); }
  Inst &ids(const std::vector<Id> &vs);
  Inst &word(uint32_t w);
  Inst &str(std::string_view s); // a nul-terminated literal string, padded to words

private:
  std::vector<uint32_t> &out_;
  size_t start_;
};

class Builder {
public:
  // Ids come from here; the first is 1.
  Id newId() { return Id{next_++}; }

  // Module-level declarations. Capabilities, extensions and imports are deduplicated.
  void capability(spv::Capability c);
  void extension(std::string_view name);
  Id importGlsl();
  void memoryModel(spv::AddressingModel a, spv::MemoryModel m);
  void entryPoint(spv::ExecutionModel model, Id fn, std::string_view name,
                  const std::vector<Id> &interface);
  void executionMode(Id fn, spv::ExecutionMode mode, std::initializer_list<uint32_t> literals);
  void name(Id target, std::string_view name);
  void decorate(Id target, spv::Decoration d, std::initializer_list<uint32_t> literals = {});
  void memberDecorate(Id structType, uint32_t member, spv::Decoration d,
                      std::initializer_list<uint32_t> literals = {});

  // Types, cached by their operands. The caller declares the capability a 16-bit scalar
  // needs, since that depends on how it is used.
  Id voidType();
  Id boolType();
  Id intType(uint32_t width, bool isSigned);
  Id floatType(uint32_t width);
  Id vectorType(Id elem, uint32_t count);
  Id runtimeArrayType(Id elem, uint32_t strideBytes); // decorated with ArrayStride
  Id blockStructType(Id member);                      // one member at offset 0, Block
  // `length` is an integer constant. No ArrayStride: Vulkan forbids explicit layout on
  // the Workgroup arrays this is for.
  Id arrayType(Id elem, Id length);
  Id pointerType(spv::StorageClass sc, Id pointee);
  Id functionType(Id result, const std::vector<Id> &params);

  // Constants, cached by type and bits.
  Id constBool(bool v);
  Id constI32(int32_t v);
  Id constU32(uint32_t v);
  Id constF32(float v);

  // A module-scope variable.
  Id globalVariable(Id pointerType, spv::StorageClass sc);
  // A Function-storage variable, emitted where the function code is: SPIR-V wants all of
  // them at the start of the first block, so call this right after that block's label.
  Id functionVariable(Id pointerType);

  // Function code goes to the function section.
  void beginFunction(Id fn, Id resultType, Id fnType);
  void endFunction();
  void label(Id l);
  // An instruction with a result type and a fresh result id; returns the id.
  Id op(spv::Op op, Id type, std::initializer_list<Id> operands);
  Id glsl(GLSLstd450 inst, Id type, std::initializer_list<Id> operands);
  // An instruction without a result.
  Inst code(spv::Op op) { return Inst(functions_, op); }

  // The finished module (header included). `version` is e.g. 0x00010300 for SPIR-V 1.3.
  std::vector<uint32_t> finish(uint32_t version) const;

private:
  Id cachedType(spv::Op op, std::vector<uint32_t> operands, bool *created = nullptr);
  Id cachedConstant(spv::Op op, Id type, std::vector<uint32_t> bits);

  uint32_t next_ = 1;
  std::set<uint32_t> capabilitySet_;
  std::set<std::string, std::less<>> extensionSet_;
  Id glsl_;
  std::map<std::vector<uint32_t>, Id> types_;
  std::map<std::vector<uint32_t>, Id> constants_;

  // Sections in the order SPIR-V requires.
  std::vector<uint32_t> capabilities_, extensions_, imports_, memoryModel_, entryPoints_,
      executionModes_, debugNames_, annotations_, globals_, functions_;
};

} // namespace kiln::compiler::spirv
