//===- Quantizer.h - Weight quantization methods ----------------*- C++ -*-===//
//
// The numerical half of tfm-quantize, free of MLIR: each method turns a
// linear's weight W [N, K] (f32, row-major: N output features, K input
// features) into the stored format of runtime/core/QuantizedWeights.h.
//
//   RTN    round to nearest with the group's own scale (and zero point).
//   GPTQ   columns quantized one at a time, each one's error spread over
//          the columns not yet quantized through the inverse Hessian of the
//          layer's inputs (Frantar et al., 2022), optionally in order of
//          decreasing Hessian diagonal (act-order, with the groups' scales
//          fixed before the pass so the stored format stays plain).
//   AWQ    a per-input-channel scale s = mean|x|^a (a searched on [0, 1))
//          multiplies W's columns before RTN and divides the input, chosen
//          to minimize the layer's output error on the calibration inputs
//          (Lin et al., 2023); the caller folds 1 / s into the producer of
//          the input.
//   SmoothQuant  s = max|x|^a / max|W_col|^(1 - a) moves the activations'
//          outlier channels into the weights before W8A8 (Xiao et al.,
//          2022); the caller folds 1 / s likewise.
//
// The output error of W' against W on inputs X is ||(W' - W) X^T||^2 =
// tr(E H E^T) with E = W' - W and H = X^T X: the calibration statistics
// carry H per linear, and every search here minimizes that.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_QUANTIZATION_QUANTIZER_H
#define OPTMLIR_QUANTIZATION_QUANTIZER_H

#include "runtime/core/QuantizedWeights.h"

#include <cstdint>
#include <string>
#include <vector>

namespace optmlir {
namespace quant {

/// What a quantized weight is stored as.
struct WeightFormat {
  optrt::QuantizedCodes codes = optrt::QuantizedCodes::Int4;
  /// Int4: columns a scale covers (32, 64, 128, ...). Int8 and fp8: 0 (one
  /// scale a row).
  int64_t groupSize = 128;
  /// Int4: no zero point (z = 8).
  bool symmetric = false;
  /// Fp8: one scale for the matrix instead of one a row.
  bool perTensor = false;
};

/// A quantized matrix with its arrays, as stored.
struct QuantizedMatrix {
  WeightFormat format;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> values;
  /// F16 codes for int4, f32 for the others.
  std::vector<uint16_t> scalesF16;
  std::vector<float> scalesF32;
  std::vector<uint8_t> zeros; // int4 asymmetric only

  optrt::QuantizedMatrixView view() const;
  /// The matrix the stored arrays give back (f32 [rows, cols]).
  std::vector<float> dequantize() const;
};

/// "" when `format` can store a [rows, cols] matrix, else why not
/// ("group size 96 does not divide the 4096 input features").
std::string checkFormat(const WeightFormat &format, int64_t rows, int64_t cols);

/// Round to nearest. `w` is [rows, cols]. `clip` (int4 only; null: none)
/// holds a ratio in (0, 1] per row and group that shrinks the group's range
/// before its scale is taken (the values outside saturate).
QuantizedMatrix quantizeRtn(const float *w, int64_t rows, int64_t cols,
                            const WeightFormat &format,
                            const float *clip = nullptr);

/// AWQ's clipping search: per row and group of an int4 format, the ratio in
/// {1, 0.95, ..., 0.5} of the group's range whose RTN error on the inputs
/// is least, e_g H_gg e_g^T with H_gg the group's block of `hessian`.
std::vector<float> searchClipRatios(const float *w, int64_t rows, int64_t cols,
                                    const WeightFormat &format,
                                    const float *hessian);

struct GptqOptions {
  /// Added to H's diagonal: this fraction of its mean.
  double dampening = 0.01;
  bool actOrder = false;
  /// Columns processed between updates of the rest of the matrix.
  int64_t blockSize = 128;
};

/// GPTQ with the Hessian `hessian` ([cols, cols], X^T X of the layer's
/// inputs, any positive multiple). Fails (returns false, sets `error`) when
/// the damped Hessian is not positive definite.
bool quantizeGptq(const float *w, int64_t rows, int64_t cols,
                  const WeightFormat &format, const float *hessian,
                  const GptqOptions &options, QuantizedMatrix &out,
                  std::string &error);

/// tr(E H E^T) for E = approx - exact, both [rows, cols].
double outputError(const float *exact, const float *approx, int64_t rows,
                   int64_t cols, const float *hessian);

/// AWQ's search: the per-input-channel scale (cols values) that minimizes
/// the output error of RTN(W diag(s)) diag(s)^-1, from s = meanAbs^a for a
/// in {0, 1/grid, ..., (grid-1)/grid} (a = 0 is plain RTN), normalized so
/// that max(s) * min(s) = 1. `meanAbs` is the mean |x| per input channel.
std::vector<float> searchAwqScales(const float *w, int64_t rows, int64_t cols,
                                   const WeightFormat &format,
                                   const float *meanAbs, const float *hessian,
                                   int grid = 20);

/// SmoothQuant's factors for migration strength `alpha`:
/// s_j = max|x_j|^alpha / max|w_j|^(1 - alpha), from the per-channel maxima
/// of the inputs and of the weight columns (over every matrix that reads
/// the input). Channels where either maximum is 0 get s = 1.
std::vector<float> smoothQuantFactors(const std::vector<float> &inputAbsMax,
                                      const std::vector<float> &weightAbsMax,
                                      double alpha);

/// max |w[:, j]| per column j of a [rows, cols] matrix.
std::vector<float> columnAbsMax(const float *w, int64_t rows, int64_t cols);

/// W diag(scale): multiplies column j by scale[j] (in place).
void scaleColumns(float *w, int64_t rows, int64_t cols,
                  const std::vector<float> &scale);

} // namespace quant
} // namespace optmlir

#endif // OPTMLIR_QUANTIZATION_QUANTIZER_H
