// Element types, dims (static or symbolic with an offset) and tensor types.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::ir {

enum class DType : uint8_t { F32, F16, BF16, I32, I64, Bool };

std::string_view dtypeName(DType t);
std::optional<DType> parseDType(std::string_view name);
int dtypeBytes(DType t);
bool isFloat(DType t);

// A symbolic dimension declared by a graph: `dim kv in [1, 4096]`.
struct SymDim {
  std::string name;
  int64_t lo = 1;
  int64_t hi = 1;
};

// One extent: `offset` alone when static, else the value of symbolic dim `sym`
// plus `offset` (so `kv`, `kv+1` and `kv-1` are all dims).
struct Dim {
  int64_t offset = 0;
  int32_t sym = -1;

  static Dim of(int64_t v) { return Dim{v, -1}; }
  static Dim symbol(int32_t s, int64_t off = 0) { return Dim{off, s}; }
  bool isStatic() const { return sym < 0; }
  auto operator<=>(const Dim &) const = default; // (offset, sym): an order for map keys

  // Value under a binding of every symbolic dim (indexed like Graph::dims).
  int64_t eval(std::span<const int64_t> bound) const {
    return isStatic() ? offset : bound[sym] + offset;
  }
  int64_t min(std::span<const SymDim> dims) const {
    return isStatic() ? offset : dims[sym].lo + offset;
  }
  int64_t max(std::span<const SymDim> dims) const {
    return isStatic() ? offset : dims[sym].hi + offset;
  }
};

using Shape = std::vector<Dim>;

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;

  int rank() const { return static_cast<int>(shape.size()); }
  bool operator==(const TensorType &) const = default;
};

// Concrete shapes, once dims are bound.
using Extents = std::vector<int64_t>;
Extents evalShape(const Shape &s, std::span<const int64_t> bound);
int64_t numElements(const Extents &e);
// Row-major strides in elements.
std::vector<int64_t> contiguousStrides(const Extents &e);

// Printing needs the graph's dim names.
std::string dimToString(const Dim &d, std::span<const SymDim> dims);
std::string typeToString(const TensorType &t, std::span<const SymDim> dims);

} // namespace kiln::ir
