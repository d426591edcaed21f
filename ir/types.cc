// Element types, dims and tensor types: names, sizes and printing.
#include "ir/types.h"

namespace kiln::ir {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  int bytes;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "f32", 4}, {DType::F16, "f16", 2}, {DType::BF16, "bf16", 2},
    {DType::I32, "i32", 4}, {DType::I64, "i64", 8}, {DType::Bool, "bool", 1},
};
} // namespace

std::string_view dtypeName(DType t) { return kDTypes[static_cast<int>(t)].name; }
int dtypeBytes(DType t) { return kDTypes[static_cast<int>(t)].bytes; }

std::optional<DType> parseDType(std::string_view name) {
  for (const DTypeInfo &d : kDTypes)
    if (d.name == name)
      return d.type;
  return std::nullopt;
}

bool isFloat(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

Extents evalShape(const Shape &s, std::span<const int64_t> bound) {
  Extents e;
  e.reserve(s.size());
  for (const Dim &d : s)
    e.push_back(d.eval(bound));
  return e;
}

int64_t numElements(const Extents &e) {
  int64_t n = 1;
  for (int64_t x : e)
    n *= x;
  return n;
}

std::vector<int64_t> contiguousStrides(const Extents &e) {
  std::vector<int64_t> s(e.size());
  int64_t acc = 1;
  for (size_t i = e.size(); i-- > 0;) {
    s[i] = acc;
    acc *= e[i];
  }
  return s;
}

std::string dimToString(const Dim &d, std::span<const SymDim> dims) {
  if (d.isStatic())
    return std::to_string(d.offset);
  std::string s = dims[d.sym].name;
  if (d.offset > 0)
    s += "+" + std::to_string(d.offset);
  else if (d.offset < 0)
    s += std::to_string(d.offset);
  return s;
}

std::string typeToString(const TensorType &t, std::span<const SymDim> dims) {
  std::string s(dtypeName(t.dtype));
  s += "[";
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i)
      s += ", ";
    s += dimToString(t.shape[i], dims);
  }
  s += "]";
  return s;
}

} // namespace kiln::ir
