// The op table built from ir/ops.def, with its attribute specs parsed once.
#include "ir/ops.h"

#include <cassert>
#include <charconv>

namespace kiln::ir {

namespace {

struct RawOp {
  Op op;
  std::string_view name;
  Category category;
  int operands;
  std::string_view attrs;
};

constexpr RawOp kRawOps[] = {
#define KILN_OP(id, name, cat, n, attrs) {Op::id, name, Category::cat, n, attrs},
#include "ir/ops.def"
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ')
    s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ')
    s.remove_suffix(1);
  return s;
}

AttrValue parseDefault(AttrKind kind, std::string_view text) {
  switch (kind) {
  case AttrKind::Int: {
    int64_t v = 0;
    std::from_chars(text.data(), text.data() + text.size(), v);
    return v;
  }
  case AttrKind::Float: {
    double v = 0;
    std::from_chars(text.data(), text.data() + text.size(), v);
    return v;
  }
  case AttrKind::Bool:
    return text == "true";
  case AttrKind::Enum:
    return std::string(text);
  case AttrKind::Ints:
  case AttrKind::Floats:
  case AttrKind::Dim:
  case AttrKind::Dims:
    break;
  }
  assert(false && "ops.def: this attribute kind takes no default");
  return int64_t{0};
}

// "axes:ints, keepdims:bool=false" -> specs. The table is ours, so malformed specs assert.
std::vector<AttrSpec> parseSpecs(std::string_view text) {
  std::vector<AttrSpec> specs;
  while (!trim(text).empty()) {
    size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);

    AttrSpec spec;
    size_t colon = item.find(':');
    assert(colon != std::string_view::npos && "ops.def: attribute without a kind");
    spec.name = std::string(item.substr(0, colon));
    std::string_view kind = item.substr(colon + 1);
    std::string_view def;
    if (size_t eq = kind.find('='); eq != std::string_view::npos) {
      def = kind.substr(eq + 1);
      kind = kind.substr(0, eq);
    }
    if (kind.ends_with('?')) {
      spec.optional = true;
      kind.remove_suffix(1);
    }
    if (kind.starts_with("enum(")) {
      spec.kind = AttrKind::Enum;
      std::string_view list = kind.substr(5, kind.size() - 6);
      while (!list.empty()) {
        size_t bar = list.find('|');
        spec.choices.emplace_back(list.substr(0, bar));
        list = bar == std::string_view::npos ? std::string_view() : list.substr(bar + 1);
      }
    } else {
      static constexpr std::pair<std::string_view, AttrKind> kKinds[] = {
          {"int", AttrKind::Int},   {"float", AttrKind::Float},   {"bool", AttrKind::Bool},
          {"ints", AttrKind::Ints}, {"floats", AttrKind::Floats}, {"dim", AttrKind::Dim},
          {"dims", AttrKind::Dims},
      };
      bool found = false;
      for (auto [n, k] : kKinds)
        if (n == kind) {
          spec.kind = k;
          found = true;
        }
      assert(found && "ops.def: unknown attribute kind");
      (void)found;
    }
    if (!def.empty())
      spec.defaultValue = parseDefault(spec.kind, def);
    specs.push_back(std::move(spec));
  }
  return specs;
}

const std::vector<OpInfo> &table() {
  static const std::vector<OpInfo> ops = [] {
    std::vector<OpInfo> v;
    for (const RawOp &r : kRawOps) {
      assert(static_cast<size_t>(r.op) == v.size() && "ops.def: table out of order");
      v.push_back({r.op, r.name, r.category, r.operands, parseSpecs(r.attrs)});
    }
    return v;
  }();
  return ops;
}

} // namespace

const OpInfo &opInfo(Op op) { return table()[static_cast<size_t>(op)]; }
std::span<const OpInfo> allOps() { return table(); }

std::optional<Op> parseOpName(std::string_view name) {
  for (const OpInfo &info : table())
    if (info.name == name && info.category != Category::Source)
      return info.op;
  if (name == "constant")
    return Op::Constant;
  return std::nullopt;
}

bool isPointwise(Op op) {
  switch (opCategory(op)) {
  case Category::Unary:
  case Category::Binary:
  case Category::Select:
  case Category::Cast:
    return true;
  case Category::Source:
  case Category::Reduce:
  case Category::Normalize:
  case Category::Rope:
  case Category::Contraction:
  case Category::Gather:
  case Category::Concat:
  case Category::Layout:
  case Category::Update:
    return false;
  }
  return false;
}

} // namespace kiln::ir
