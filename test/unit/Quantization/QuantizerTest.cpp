//===- QuantizerTest.cpp - RTN, GPTQ, AWQ, SmoothQuant, statistics files --===//

#include "optmlir/Quantization/Quantizer.h"
#include "optmlir/Quantization/CalibrationStats.h"

#include "optmlir/Support/SafeTensors.h"
#include "runtime/core/NumberFormats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

using namespace optmlir::quant;
using optrt::QuantizedCodes;

namespace {

std::vector<float> randomMatrix(int64_t rows, int64_t cols, uint32_t seed,
                                float scale = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> w(rows * cols);
  for (float &v : w)
    v = normal(rng);
  return w;
}

/// Inputs whose channels are correlated and of very different sizes (as a
/// transformer's are: a few outlier channels), and their X^T X / rows.
struct Inputs {
  std::vector<float> x, hessian, absMean, absMax;
};
Inputs correlatedInputs(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Inputs in;
  in.x.resize(rows * cols);
  std::vector<float> gain(cols);
  for (int64_t c = 0; c < cols; ++c)
    gain[c] = c % 17 == 0 ? 20.0f : 0.5f + float(c % 5) * 0.25f;
  for (int64_t r = 0; r < rows; ++r) {
    float shared = normal(rng);
    for (int64_t c = 0; c < cols; ++c)
      in.x[r * cols + c] = gain[c] * (0.7f * shared + 0.3f * normal(rng));
  }
  LinearInputAccumulator acc(cols, 16);
  acc.add(in.x.data(), rows, cols);
  LinearInputStats s = acc.finish();
  in.hessian = s.hessian;
  in.absMean = s.absMean;
  in.absMax = s.absMax;
  return in;
}

WeightFormat int4(int64_t group, bool symmetric) {
  WeightFormat f;
  f.codes = QuantizedCodes::Int4;
  f.groupSize = group;
  f.symmetric = symmetric;
  return f;
}

TEST(QuantizerTest, RtnErrorIsAtMostHalfAStep) {
  const int64_t rows = 16, cols = 256;
  std::vector<float> w = randomMatrix(rows, cols, 1);
  for (bool symmetric : {false, true})
    for (int64_t group : {32, 64, 128}) {
      QuantizedMatrix q =
          quantizeRtn(w.data(), rows, cols, int4(group, symmetric));
      ASSERT_EQ(optrt::checkQuantizedMatrix(q.view()), "");
      std::vector<float> back = q.dequantize();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          float step =
              optrt::f16ToFloat(q.scalesF16[r * (cols / group) + c / group]);
          EXPECT_LE(std::fabs(back[r * cols + c] - w[r * cols + c]),
                    0.5f * step * 1.0001f)
              << "group " << group << (symmetric ? " sym" : " asym");
        }
    }
  WeightFormat i8;
  i8.codes = QuantizedCodes::Int8;
  i8.groupSize = 0;
  QuantizedMatrix q8 = quantizeRtn(w.data(), rows, cols, i8);
  std::vector<float> back = q8.dequantize();
  for (int64_t i = 0; i < rows * cols; ++i)
    EXPECT_LE(std::fabs(back[i] - w[i]),
              0.5f * q8.scalesF32[i / cols] * 1.0001f);
  WeightFormat f8;
  f8.codes = QuantizedCodes::F8E4M3;
  f8.groupSize = 0;
  for (bool perTensor : {false, true}) {
    f8.perTensor = perTensor;
    QuantizedMatrix qf = quantizeRtn(w.data(), rows, cols, f8);
    back = qf.dequantize();
    for (int64_t i = 0; i < rows * cols; ++i) // 3 mantissa bits: 1/16 relative
      EXPECT_LE(std::fabs(back[i] - w[i]),
                std::fabs(w[i]) / 16 +
                    qf.scalesF32[perTensor ? 0 : i / cols] / 512);
  }
}

TEST(QuantizerTest, GptqHasALowerOutputErrorThanRtn) {
  const int64_t rows = 32, cols = 128, tokens = 512;
  std::vector<float> w = randomMatrix(rows, cols, 2);
  Inputs in = correlatedInputs(tokens, cols, 3);
  for (bool actOrder : {false, true})
    for (bool symmetric : {false, true}) {
      WeightFormat format = int4(32, symmetric);
      double rtn = outputError(
          w.data(),
          quantizeRtn(w.data(), rows, cols, format).dequantize().data(), rows,
          cols, in.hessian.data());
      QuantizedMatrix q;
      std::string error;
      GptqOptions options;
      options.actOrder = actOrder;
      ASSERT_TRUE(quantizeGptq(w.data(), rows, cols, format, in.hessian.data(),
                               options, q, error))
          << error;
      ASSERT_EQ(optrt::checkQuantizedMatrix(q.view()), "");
      double gptq = outputError(w.data(), q.dequantize().data(), rows, cols,
                                in.hessian.data());
      EXPECT_LT(gptq, 0.8 * rtn)
          << (actOrder ? "act-order " : "") << (symmetric ? "sym" : "asym");
    }
}

TEST(QuantizerTest, GptqRefusesAnIndefiniteHessian) {
  const int64_t cols = 32;
  std::vector<float> w = randomMatrix(4, cols, 4);
  std::vector<float> h(cols * cols, 0.0f);
  for (int64_t i = 0; i < cols; ++i)
    h[i * cols + i] = i == 3 ? -5.0f : 1.0f;
  GptqOptions options;
  options.dampening = 0;
  QuantizedMatrix q;
  std::string error;
  EXPECT_FALSE(quantizeGptq(w.data(), 4, cols, int4(32, false), h.data(),
                            options, q, error));
  EXPECT_NE(error.find("not positive definite"), std::string::npos) << error;
}

TEST(QuantizerTest, AwqScalesProtectTheSalientChannels) {
  const int64_t rows = 32, cols = 128;
  std::vector<float> w = randomMatrix(rows, cols, 5);
  Inputs in = correlatedInputs(512, cols, 6);
  WeightFormat format = int4(128, false);
  std::vector<float> s = searchAwqScales(w.data(), rows, cols, format,
                                         in.absMean.data(), in.hessian.data());
  std::vector<float> scaled = w;
  scaleColumns(scaled.data(), rows, cols, s);
  std::vector<float> approx =
      quantizeRtn(scaled.data(), rows, cols, format).dequantize();
  std::vector<float> inverse;
  for (float v : s)
    inverse.push_back(1.0f / v);
  scaleColumns(approx.data(), rows, cols, inverse);
  double awq =
      outputError(w.data(), approx.data(), rows, cols, in.hessian.data());
  double rtn = outputError(
      w.data(), quantizeRtn(w.data(), rows, cols, format).dequantize().data(),
      rows, cols, in.hessian.data());
  EXPECT_LT(awq, 0.8 * rtn);
  // The outlier channels (every 17th) get the largest scales.
  EXPECT_GT(s[0], s[1]);
  EXPECT_GT(s[17], s[18]);
}

TEST(QuantizerTest, ClippingLowersTheErrorOfGroupsWithOutliers) {
  const int64_t rows = 16, cols = 128;
  std::vector<float> w = randomMatrix(rows, cols, 8);
  for (int64_t r = 0; r < rows; ++r)
    w[r * cols + (r * 7) % cols] = 0.6f; // one outlier a row
  Inputs in = correlatedInputs(512, cols, 9);
  WeightFormat format = int4(64, false);
  std::vector<float> clip =
      searchClipRatios(w.data(), rows, cols, format, in.hessian.data());
  ASSERT_EQ(clip.size(), size_t(rows * 2));
  for (float ratio : clip) {
    EXPECT_LE(ratio, 1.0f);
    EXPECT_GE(ratio, 0.5f);
  }
  double clipped =
      outputError(w.data(),
                  quantizeRtn(w.data(), rows, cols, format, clip.data())
                      .dequantize()
                      .data(),
                  rows, cols, in.hessian.data());
  double plain = outputError(
      w.data(), quantizeRtn(w.data(), rows, cols, format).dequantize().data(),
      rows, cols, in.hessian.data());
  EXPECT_LT(clipped, plain);
}

TEST(QuantizerTest, SmoothQuantFactorsFollowTheFormula) {
  std::vector<float> s =
      smoothQuantFactors({4.0f, 1.0f, 0.0f}, {1.0f, 4.0f, 2.0f}, 0.5);
  EXPECT_FLOAT_EQ(s[0], 2.0f);
  EXPECT_FLOAT_EQ(s[1], 0.5f);
  EXPECT_FLOAT_EQ(s[2], 1.0f); // no activation: left alone
  std::vector<float> w = {1, -3, 2, 0.5f};
  EXPECT_EQ(columnAbsMax(w.data(), 2, 2), (std::vector<float>{2, 3}));
}

TEST(QuantizerTest, FormatsThatCannotHoldTheMatrixAreNamed) {
  EXPECT_EQ(checkFormat(int4(128, false), 64, 4096), "");
  EXPECT_EQ(checkFormat(int4(96, false), 64, 4096),
            "group size 96 does not divide the 4096 input features");
  EXPECT_EQ(checkFormat(int4(0, false), 64, 4096),
            "group size 0 does not divide the 4096 input features");
}

TEST(CalibrationStatsTest, AccumulatesWritesAndReadsBack) {
  Inputs in = correlatedInputs(300, 24, 7);
  LinearInputAccumulator acc(24, 8);
  acc.add(in.x.data(), 100, 24);
  acc.add(in.x.data() + 100 * 24, 200, 24);
  CalibrationStats stats;
  stats.modelFingerprint = "xxh3:1234";
  stats.tokens = 300;
  stats.source = "calib.txt";
  stats.linears["model.layers.0.mlp.down_proj.weight"] = acc.finish();
  const LinearInputStats &s = stats.linears.begin()->second;
  EXPECT_EQ(s.rows, 300);
  EXPECT_EQ(s.sampleRows(), 8);
  // Mean |x| and X^T X / rows against a direct computation.
  double mean0 = 0, h01 = 0;
  for (int64_t r = 0; r < 300; ++r) {
    mean0 += std::fabs(in.x[r * 24]);
    h01 += double(in.x[r * 24]) * in.x[r * 24 + 1];
  }
  EXPECT_NEAR(s.absMean[0], mean0 / 300, 1e-4 * mean0 / 300);
  EXPECT_NEAR(s.hessian[1], h01 / 300, 1e-3 * std::fabs(h01 / 300));
  EXPECT_EQ(s.hessian[1], s.hessian[24]);

  std::string dir = ::testing::TempDir();
  std::string path = dir + "/stats.safetensors", error;
  ASSERT_TRUE(stats.write(path, error)) << error;
  std::unique_ptr<CalibrationStats> back =
      CalibrationStats::read(path, "xxh3:1234", error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->tokens, 300);
  EXPECT_EQ(back->source, "calib.txt");
  const LinearInputStats *b = back->find("model.layers.0.mlp.down_proj.weight");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->absMean, s.absMean);
  EXPECT_EQ(b->absMax, s.absMax);
  EXPECT_EQ(b->hessian, s.hessian);
  EXPECT_EQ(b->sample, s.sample);
  EXPECT_EQ(back->find("lm_head.weight"), nullptr);

  EXPECT_FALSE(CalibrationStats::read(path, "xxh3:9999", error));
  EXPECT_EQ(error, path + ": the calibration statistics are of another model "
                          "(fingerprint xxh3:1234, this model's is xxh3:9999)");
  // A safetensors file that is not a statistics file.
  std::string other = dir + "/weights.safetensors";
  float one = 1;
  ASSERT_TRUE(optmlir::writeSafeTensors(
      other, {{"w", optmlir::DType::F32, {1}, &one}}, {}, error));
  EXPECT_FALSE(CalibrationStats::read(other, "", error));
  EXPECT_EQ(error, other + ": not a calibration statistics file (made by "
                           "'optc calibrate')");
  std::filesystem::remove(path);
  std::filesystem::remove(other);
}

} // namespace
