// Ops, their categories and attribute specs, all generated from ir/ops.def.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ir/types.h"

namespace kiln::ir {

enum class Op : uint8_t {
#define KILN_OP(id, name, cat, n, attrs) id,
#include "ir/ops.def"
};

// A backend lowers categories, not ops.
enum class Category : uint8_t {
  Source,      // input, param, constant
  Unary,       // pointwise, one operand
  Binary,      // pointwise, two operands with numpy broadcasting
  Select,      // pointwise, cond ? a : b with broadcasting
  Cast,        // pointwise dtype change
  Reduce,      // reduction over axes
  Normalize,   // row-wise: softmax, rms_norm, layer_norm
  Rope,        // rotary position embedding
  Contraction, // matmul
  Gather,      // rows of a table
  Concat,      // join along an axis
  Layout,      // views: slice, reshape, permute, broadcast
  Update,      // copy into a view of a tensor (in place)
};

enum class AttrKind : uint8_t { Int, Float, Bool, Ints, Floats, Dim, Dims, Enum };

using AttrValue = std::variant<int64_t, double, bool, std::vector<int64_t>, std::vector<double>,
                               Dim, std::vector<Dim>, std::string>;

struct AttrSpec {
  std::string name;
  AttrKind kind;
  std::vector<std::string> choices; // for Enum
  std::optional<AttrValue> defaultValue;
  bool optional = false; // may be absent, with no default
};

struct OpInfo {
  Op op;
  std::string_view name;
  Category category;
  int operands; // -1: one or more
  std::vector<AttrSpec> attrs;
};

const OpInfo &opInfo(Op op);
std::span<const OpInfo> allOps();
std::optional<Op> parseOpName(std::string_view name);
inline std::string_view opName(Op op) { return opInfo(op).name; }
inline Category opCategory(Op op) { return opInfo(op).category; }
bool isPointwise(Op op);

} // namespace kiln::ir
