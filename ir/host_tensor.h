// Host tensors in float64: packing to device bytes, seeded random data, and comparison.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/types.h"

namespace kiln::ir {

struct HostTensor {
  DType dtype = DType::F32;
  Extents shape;
  std::vector<double> data; // row-major
};

// Storage bytes of `t` in its dtype (little-endian, as the devices read them).
std::vector<uint8_t> toBytes(const HostTensor &t);
HostTensor fromBytes(DType dtype, Extents shape, const std::vector<uint8_t> &bytes);

// Deterministic data for `seed`: floats uniform in [-1, 1), integers uniform in
// [0, intBound), bools fair coins; every value exactly representable in the dtype.
HostTensor randomTensor(DType dtype, Extents shape, uint64_t seed, int64_t intBound = 16);

// Random values for every input of `g` at `dims`, input i from `seed + i`. Integer
// inputs that feed gather stay below the rows of every table they index, since the
// interpreter rejects an index outside the table.
std::vector<HostTensor> randomInputs(const Graph &g, std::span<const int64_t> dims, uint64_t seed);

// Normalized mean squared error of `got` against `want`, after checking that NaN and
// infinities sit in the same places (`want` rounded to its dtype, so that a value past
// the dtype's range counts as an infinity).
struct Comparison {
  double nmse = 0;
  int64_t specialMismatches = 0; // elements where NaN/Inf disagree
  int64_t firstMismatch = -1;    // index of the first such element
  bool shapeMismatch = false;
};
Comparison compare(const HostTensor &got, const HostTensor &want);

// Largest NMSE accepted for outputs of this dtype (integers and bools must be exact).
double nmseLimit(DType t);

// Largest NMSE accepted for output value `output` of `g`: the limit of the narrowest
// float type computed on its way, at least its own dtype's. An f32 output of a cast to
// f16 carries f16 precision: a backend computing in f32 may round to the other side of
// an f16 step than the float64 reference does. A matmul of f16 or bf16 factors (summed
// in f32, in an order the backend picks) on the way allows kMatmulNmseLimit.
constexpr double kMatmulNmseLimit = 5e-4;
double outputNmseLimit(const Graph &g, int output);

} // namespace kiln::ir
