// Tests for dtypes, dims, float rounding and host tensor packing.
#include <cmath>

#include <gtest/gtest.h>

#include "ir/float16.h"
#include "ir/host_tensor.h"
#include "ir/types.h"

namespace kiln::ir {
namespace {

TEST(Types, DTypeNamesRoundTrip) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::Bool})
    EXPECT_EQ(parseDType(dtypeName(t)), t);
  EXPECT_FALSE(parseDType("f8"));
  EXPECT_EQ(dtypeBytes(DType::BF16), 2);
}

TEST(Types, DimsPrintWithOffsets) {
  std::vector<SymDim> dims{{"kv", 1, 4096}};
  EXPECT_EQ(dimToString(Dim::symbol(0, -1), dims), "kv-1");
  EXPECT_EQ(dimToString(Dim::symbol(0, 2), dims), "kv+2");
  EXPECT_EQ(typeToString({DType::F16, {Dim::symbol(0), Dim::of(128)}}, dims), "f16[kv, 128]");
  int64_t bound[] = {10};
  EXPECT_EQ(Dim::symbol(0, -1).eval(bound), 9);
  EXPECT_EQ(Dim::symbol(0, -1).min(dims), 0);
}

TEST(Float16, RoundsToNearestEven) {
  EXPECT_EQ(roundToDType(1.0 + std::ldexp(1.0, -11), DType::F16), 1.0); // tie, to even
  EXPECT_EQ(roundToDType(1.0 + 3 * std::ldexp(1.0, -11), DType::F16), 1.0 + std::ldexp(1.0, -9));
  EXPECT_EQ(roundToDType(65519.0, DType::F16), 65504.0);
  EXPECT_TRUE(std::isinf(roundToDType(65520.0, DType::F16)));
  EXPECT_EQ(roundToDType(std::ldexp(1.0, -25), DType::F16), 0.0); // tie to zero (even)
  EXPECT_EQ(roundToDType(std::ldexp(3.0, -26), DType::F16), std::ldexp(1.0, -24));
  EXPECT_EQ(roundToDType(1.0 + std::ldexp(1.0, -8), DType::BF16), 1.0);
  EXPECT_EQ(roundToDType(2.9, DType::I32), 2.0);
  EXPECT_EQ(roundToDType(-1e20, DType::I32), -2147483648.0);
  EXPECT_EQ(roundToDType(NAN, DType::I32), 0.0);
}

TEST(Float16, BitsRoundTrip) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    double v = fromF16Bits(static_cast<uint16_t>(b));
    if (std::isnan(v))
      continue;
    EXPECT_EQ(toF16Bits(v), b) << "f16 bits " << b;
    double w = fromBF16Bits(static_cast<uint16_t>(b));
    if (!std::isnan(w)) {
      EXPECT_EQ(toBF16Bits(w), b) << "bf16 bits " << b;
    }
  }
  EXPECT_EQ(toF16Bits(NAN) & 0x7c00, 0x7c00);
}

TEST(HostTensor, BytesRoundTripEveryDType) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::Bool}) {
    HostTensor a = randomTensor(t, {3, 5}, 7);
    HostTensor b = fromBytes(t, a.shape, toBytes(a));
    EXPECT_EQ(a.data, b.data) << dtypeName(t);
  }
}

TEST(HostTensor, CompareFindsNaNAndInfMismatches) {
  HostTensor want{DType::F32, {4}, {1, NAN, INFINITY, 2}};
  HostTensor got = want;
  EXPECT_EQ(compare(got, want).specialMismatches, 0);
  EXPECT_EQ(compare(got, want).nmse, 0);
  got.data[1] = 0;
  EXPECT_EQ(compare(got, want).specialMismatches, 1);
  EXPECT_EQ(compare(got, want).firstMismatch, 1);
  got = want;
  got.data[2] = -INFINITY;
  EXPECT_EQ(compare(got, want).specialMismatches, 1);
  got = want;
  got.data[3] = 2.5;
  EXPECT_NEAR(compare(got, want).nmse, 0.25 / 5.0, 1e-15);
}

} // namespace
} // namespace kiln::ir
