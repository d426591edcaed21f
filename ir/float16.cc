// Rounding to narrow floats by scaling in double, which is exact for these formats.
#include "ir/float16.h"

#include <bit>
#include <cmath>
#include <limits>

namespace kiln::ir {

namespace {

// Round to a binary float with `mant` fraction bits, exponents down to `minExp`
// (subnormals below), finite values up to `maxFinite`.
double roundFloat(double x, int mant, int minExp, double maxFinite) {
  if (!std::isfinite(x) || x == 0)
    return x;
  int e = std::ilogb(x);
  if (e < minExp)
    e = minExp;
  double quantum = std::ldexp(1.0, e - mant);
  double r = std::nearbyint(x / quantum) * quantum; // ties to even in the default mode
  if (std::fabs(r) > maxFinite)
    return std::copysign(INFINITY, x);
  return r;
}

constexpr double kF16Max = 65504.0;
const double kBF16Max = std::ldexp(255.0, 120); // (2 - 2^-7) * 2^127

double saturate(double x, double lo, double hi) {
  if (std::isnan(x))
    return 0;
  x = std::trunc(x);
  return x < lo ? lo : x > hi ? hi : x;
}

} // namespace

double roundToDType(double x, DType t) {
  switch (t) {
  case DType::F32:
    return static_cast<double>(static_cast<float>(x));
  case DType::F16:
    return roundFloat(x, 10, -14, kF16Max);
  case DType::BF16:
    return roundFloat(x, 7, -126, kBF16Max);
  case DType::I32:
    return saturate(x, -2147483648.0, 2147483647.0);
  case DType::I64:
    // Values are carried in double: i64 is exact only up to 2^53.
    return saturate(x, -9223372036854775808.0, 9223372036854774784.0);
  case DType::Bool:
    return x != 0 ? 1.0 : 0.0;
  }
  return x;
}

uint16_t toF16Bits(double x) {
  double r = roundToDType(x, DType::F16);
  uint16_t sign = std::signbit(r) ? 0x8000 : 0;
  if (std::isnan(r))
    return 0x7e00;
  r = std::fabs(r);
  if (std::isinf(r))
    return sign | 0x7c00;
  if (r < std::ldexp(1.0, -14)) // subnormal or zero
    return sign | static_cast<uint16_t>(r * std::ldexp(1.0, 24));
  int e = std::ilogb(r);
  uint16_t frac = static_cast<uint16_t>((std::ldexp(r, -e) - 1.0) * 1024.0);
  return sign | static_cast<uint16_t>((e + 15) << 10) | frac;
}

double fromF16Bits(uint16_t bits) {
  double sign = (bits & 0x8000) ? -1.0 : 1.0;
  int e = (bits >> 10) & 0x1f;
  int frac = bits & 0x3ff;
  if (e == 0x1f)
    return frac ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0)
    return sign * std::ldexp(frac, -24);
  return sign * std::ldexp(1024 + frac, e - 25);
}

uint16_t toBF16Bits(double x) {
  double r = roundToDType(x, DType::BF16);
  if (std::isnan(r))
    return 0x7fc0;
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(r)) >> 16);
}

double fromBF16Bits(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

} // namespace kiln::ir
