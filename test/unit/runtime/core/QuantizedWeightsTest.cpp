//===- QuantizedWeightsTest.cpp - number formats and quantized matrices ---===//

#include "runtime/core/QuantizedWeights.h"
#include "runtime/core/NumberFormats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace optrt;

namespace {

TEST(NumberFormatsTest, F16RoundTripsEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    uint16_t half = uint16_t(code);
    bool nan = (half & 0x7c00) == 0x7c00 && (half & 0x3ff);
    float value = f16ToFloat(half);
    if (nan) {
      EXPECT_TRUE(std::isnan(value)) << code;
      continue;
    }
    EXPECT_EQ(floatToF16(value), half) << code;
  }
}

TEST(NumberFormatsTest, F16RoundsToNearestEvenAndSaturatesToInfinity) {
  EXPECT_EQ(f16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(f16ToFloat(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
  EXPECT_EQ(f16ToFloat(0x7bff), 65504.0f);
  // Halfway between 1 and 1 + 2^-10: to the even code, 1.
  EXPECT_EQ(floatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // Halfway between 1 + 2^-10 and 1 + 2^-9: to the even code above.
  EXPECT_EQ(floatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(floatToF16(65519.0f), 0x7bff);
  EXPECT_EQ(floatToF16(65520.0f), 0x7c00);
  EXPECT_EQ(floatToF16(-1e9f), 0xfc00);
  EXPECT_EQ(floatToF16(std::ldexp(1.0f, -25)), 0x0000); // tie to even 0
  EXPECT_EQ(floatToF16(std::ldexp(3.0f, -26)), 0x0001);
  EXPECT_TRUE(std::isnan(f16ToFloat(floatToF16(NAN))));
}

TEST(NumberFormatsTest, BF16AndF8AgreeWithTheirDefinitions) {
  EXPECT_EQ(floatToBF16(1.0f), 0x3f80);
  EXPECT_EQ(bf16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway: to the even code (1.0).
  EXPECT_EQ(floatToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) // the NaN codes
      continue;
    EXPECT_EQ(encodeF8E4M3(decodeF8E4M3(uint8_t(code))), code) << code;
  }
  EXPECT_EQ(decodeF8E4M3(0x7e), 448.0f);
  EXPECT_EQ(encodeF8E4M3(1e6f), 0x7e);
}

TEST(QuantizedWeightsTest, Int4DecodesNibblesScalesAndZeros) {
  // 2 rows x 8 columns, groups of 4: row 0 asymmetric, codes 0..7; row 1
  // codes 15..8.
  std::vector<uint8_t> values = {0x10, 0x32, 0x54, 0x76,
                                 0xef, 0xcd, 0xab, 0x89};
  std::vector<uint16_t> scales = {floatToF16(0.5f), floatToF16(2.0f),
                                  floatToF16(1.0f), floatToF16(-1.0f)};
  std::vector<uint8_t> zeros = {1, 3, 8, 0};
  QuantizedMatrixView m;
  m.codes = QuantizedCodes::Int4;
  m.rows = 2;
  m.cols = 8;
  m.groupSize = 4;
  m.values = values.data();
  m.scales = scales.data();
  m.zeros = zeros.data();
  ASSERT_EQ(checkQuantizedMatrix(m), "");
  std::vector<float> out(16);
  dequantizeRows(m, 0, 2, out.data());
  std::vector<float> want = {-0.5f, 0, 0.5f, 1, 2,   4,   6,  8,
                             7,     6, 5,    4, -11, -10, -9, -8};
  EXPECT_EQ(out, want);
  // Symmetric: z = 8; one row at a time gives the same values.
  m.zeros = nullptr;
  std::vector<float> row1(8);
  dequantizeRows(m, 1, 1, row1.data());
  EXPECT_EQ(row1, (std::vector<float>{7, 6, 5, 4, -3, -2, -1, 0}));
}

TEST(QuantizedWeightsTest, Int8AndF8UseOneScaleARowOrMatrix) {
  std::vector<int8_t> codes = {-127, 0, 1, 127, 5, -5};
  std::vector<float> scales = {0.5f, 2.0f};
  QuantizedMatrixView m;
  m.codes = QuantizedCodes::Int8;
  m.rows = 2;
  m.cols = 3;
  m.groupSize = 3;
  m.values = reinterpret_cast<const uint8_t *>(codes.data());
  m.scales = scales.data();
  ASSERT_EQ(checkQuantizedMatrix(m), "");
  std::vector<float> out(6);
  dequantizeRows(m, 0, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{-63.5f, 0, 0.5f, 254, 10, -10}));

  std::vector<uint8_t> fp8 = {encodeF8E4M3(1.0f), encodeF8E4M3(-448.0f),
                              encodeF8E4M3(0.5f), encodeF8E4M3(3.0f)};
  m.codes = QuantizedCodes::F8E4M3;
  m.cols = 2;
  m.groupSize = 2;
  m.values = fp8.data();
  m.perTensorScale = true;
  ASSERT_EQ(checkQuantizedMatrix(m), "");
  out.assign(4, 0);
  dequantizeRows(m, 0, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.5f, -224, 0.25f, 1.5f}));
}

TEST(QuantizedWeightsTest, MalformedViewsAreNamed) {
  QuantizedMatrixView m;
  uint8_t byte = 0;
  uint16_t scale = 0;
  m.values = &byte;
  m.scales = &scale;
  m.rows = 4;
  m.cols = 12;
  m.groupSize = 8;
  EXPECT_EQ(checkQuantizedMatrix(m),
            "int4 groups of 8 columns do not divide rows of 12");
  m.cols = 7;
  m.groupSize = 7;
  EXPECT_EQ(checkQuantizedMatrix(m), "int4 rows of an odd length 7");
  m.codes = QuantizedCodes::Int8;
  m.groupSize = 1;
  EXPECT_NE(checkQuantizedMatrix(m).find("one scale a row"), std::string::npos);
  m.rows = 0;
  EXPECT_EQ(checkQuantizedMatrix(m), "a quantized matrix of 0 x 7");
}

} // namespace
