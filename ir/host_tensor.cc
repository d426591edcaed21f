// Host tensors: byte packing per dtype, seeded random fill, comparison against the oracle.
#include "ir/host_tensor.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "ir/float16.h"

namespace kiln::ir {

namespace {
template <class T> void put(std::vector<uint8_t> &out, size_t i, T v) {
  std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
}
template <class T> T get(const std::vector<uint8_t> &in, size_t i) {
  T v;
  std::memcpy(&v, in.data() + i * sizeof(T), sizeof(T));
  return v;
}
} // namespace

std::vector<uint8_t> toBytes(const HostTensor &t) {
  std::vector<uint8_t> out(t.data.size() * dtypeBytes(t.dtype));
  for (size_t i = 0; i < t.data.size(); ++i) {
    double x = t.data[i];
    switch (t.dtype) {
    case DType::F32:
      put(out, i, static_cast<float>(x));
      break;
    case DType::F16:
      put(out, i, toF16Bits(x));
      break;
    case DType::BF16:
      put(out, i, toBF16Bits(x));
      break;
    case DType::I32:
      put(out, i, static_cast<int32_t>(roundToDType(x, DType::I32)));
      break;
    case DType::I64:
      put(out, i, static_cast<int64_t>(roundToDType(x, DType::I64)));
      break;
    case DType::Bool:
      put(out, i, static_cast<uint8_t>(x != 0));
      break;
    }
  }
  return out;
}

HostTensor fromBytes(DType dtype, Extents shape, const std::vector<uint8_t> &bytes) {
  HostTensor t{dtype, std::move(shape), {}};
  size_t n = bytes.size() / dtypeBytes(dtype);
  t.data.resize(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
    case DType::F32:
      t.data[i] = get<float>(bytes, i);
      break;
    case DType::F16:
      t.data[i] = fromF16Bits(get<uint16_t>(bytes, i));
      break;
    case DType::BF16:
      t.data[i] = fromBF16Bits(get<uint16_t>(bytes, i));
      break;
    case DType::I32:
      t.data[i] = get<int32_t>(bytes, i);
      break;
    case DType::I64:
      t.data[i] = static_cast<double>(get<int64_t>(bytes, i));
      break;
    case DType::Bool:
      t.data[i] = get<uint8_t>(bytes, i) != 0;
      break;
    }
  }
  return t;
}

HostTensor randomTensor(DType dtype, Extents shape, uint64_t seed, int64_t intBound) {
  HostTensor t{dtype, std::move(shape), {}};
  t.data.resize(numElements(t.shape));
  std::mt19937_64 rng(seed);
  for (double &x : t.data) {
    uint64_t r = rng();
    if (isFloat(dtype))
      x = roundToDType(static_cast<double>(r >> 11) * 0x1.0p-52 - 1.0, dtype);
    else if (dtype == DType::Bool)
      x = static_cast<double>(r & 1);
    else
      x = static_cast<double>(intBound > 0 ? r % static_cast<uint64_t>(intBound) : 0);
  }
  return t;
}

std::vector<HostTensor> randomInputs(const Graph &g, std::span<const int64_t> dims, uint64_t seed) {
  std::map<int, int64_t> bound;
  for (const Node &n : g.nodes)
    if (n.op == Op::Gather) {
      int64_t rows = g.typeOf(n.operands[0]).shape[0].eval(dims);
      auto [it, fresh] = bound.try_emplace(n.operands[1], rows);
      if (!fresh)
        it->second = std::min(it->second, rows);
    }
  std::vector<HostTensor> in;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Node &n = g.nodes[g.inputs[i]];
    auto b = bound.find(g.inputs[i]);
    in.push_back(randomTensor(n.type.dtype, evalShape(n.type.shape, dims), seed + i,
                              b == bound.end() ? 16 : b->second));
  }
  return in;
}

Comparison compare(const HostTensor &got, const HostTensor &want) {
  Comparison c;
  if (got.shape != want.shape || got.data.size() != want.data.size()) {
    c.shapeMismatch = true;
    c.nmse = INFINITY;
    return c;
  }
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.data.size(); ++i) {
    double g = got.data[i], w = want.data[i];
    // A finite value past the dtype's range is an infinity in that dtype.
    double wr = roundToDType(w, want.dtype);
    bool special = !std::isfinite(wr) || !std::isfinite(g);
    if (special) {
      bool agree = std::isnan(wr) ? std::isnan(g) : g == wr;
      if (!agree && c.specialMismatches++ == 0)
        c.firstMismatch = static_cast<int64_t>(i);
      continue;
    }
    err += (g - w) * (g - w);
    ref += w * w;
  }
  c.nmse = ref > 0 ? err / ref : err;
  return c;
}

double outputNmseLimit(const Graph &g, int output) {
  double limit = nmseLimit(g.typeOf(output).dtype);
  std::vector<bool> seen(g.nodes.size(), false);
  std::vector<int> stack{output};
  while (!stack.empty()) {
    int id = stack.back();
    stack.pop_back();
    if (seen[id])
      continue;
    seen[id] = true;
    const Node &n = g.nodes[id];
    if (opCategory(n.op) != Category::Source && isFloat(n.type.dtype))
      limit = std::max(limit, nmseLimit(n.type.dtype));
    if (n.op == Op::Matmul && (g.typeOf(n.operands[0]).dtype == DType::F16 ||
                               g.typeOf(n.operands[0]).dtype == DType::BF16))
      limit = std::max(limit, kMatmulNmseLimit);
    stack.insert(stack.end(), n.operands.begin(), n.operands.end());
  }
  return limit;
}

double nmseLimit(DType t) {
  switch (t) {
  case DType::F32:
    return 1e-10;
  case DType::F16:
    return 1e-6;
  case DType::BF16:
    return 1e-4;
  case DType::I32:
  case DType::I64:
  case DType::Bool:
    return 0;
  }
  return 0;
}

} // namespace kiln::ir
