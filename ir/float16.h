// Rounding to f32/f16/bf16 and their bit patterns, exact from double (no double rounding).
#pragma once

#include <cstdint>

#include "ir/types.h"

namespace kiln::ir {

// `x` rounded to the nearest value of dtype `t` (ties to even for floats; integers
// truncate toward zero, saturate, and map NaN to 0; bool is x != 0).
double roundToDType(double x, DType t);

uint16_t toF16Bits(double x);
double fromF16Bits(uint16_t bits);
uint16_t toBF16Bits(double x);
double fromBF16Bits(uint16_t bits);

} // namespace kiln::ir
