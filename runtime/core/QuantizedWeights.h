//===- QuantizedWeights.h - Stored formats of quantized matrices -*- C++
//-*-===//
//
// A quantized linear weight W [N, K] (N output features, K input features)
// is stored as two or three artifact weights, its format told by their types
// and shapes (docs/quantization.md):
//
//   int4, groups of G along K (G divides K):
//     values U4 [N, K]    codes q in [0, 15], two a byte along K, the even
//                         column in the low nibble; a row is K / 2 bytes
//     scales F16 [N, K/G]
//     zeros  U8 [N, K/G]  asymmetric formats: the zero point z in [0, 15];
//                         symmetric formats have none and z = 8
//     w = s * (q - z)
//   int8, one scale a row (per output channel), symmetric:
//     values I8 [N, K]    codes in [-127, 127]
//     scales F32 [N, 1]
//     w = s * q
//   fp8 e4m3, one scale a row or one for the matrix:
//     values F8E4M3 [N, K]
//     scales F32 [N, 1] or [1, 1]
//     w = s * e4m3(q)
//
// Rows are contiguous, so that a decode GEMV streams each row with 16-byte
// loads (32 int4 codes, 16 int8 or fp8 codes a load); the scales of a row
// sit together. This header is the reference decoder: the CPU executor
// dequantizes with it, and the generated kernels are tested against it.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CORE_QUANTIZEDWEIGHTS_H
#define OPTMLIR_RUNTIME_CORE_QUANTIZEDWEIGHTS_H

#include <cstdint>
#include <string>

namespace optrt {

enum class QuantizedCodes { Int4, Int8, F8E4M3 };

/// Where a quantized matrix's arrays are and how to read them.
struct QuantizedMatrixView {
  QuantizedCodes codes = QuantizedCodes::Int4;
  int64_t rows = 0, cols = 0; // N, K
  /// Columns a scale covers: G for int4, K for int8 and fp8 per row, and
  /// for an fp8 matrix with one scale, K with perTensorScale set.
  int64_t groupSize = 0;
  bool perTensorScale = false;
  const uint8_t *values = nullptr;
  /// F16 for int4, F32 otherwise.
  const void *scales = nullptr;
  /// Int4 asymmetric only; null means symmetric (z = 8).
  const uint8_t *zeros = nullptr;

  int64_t groupsPerRow() const { return groupSize ? cols / groupSize : 0; }
  /// Bytes of the values array.
  int64_t valueBytes() const {
    return codes == QuantizedCodes::Int4 ? rows * cols / 2 : rows * cols;
  }
};

/// Checks sizes and grouping (positive sizes, G dividing K, even K for
/// int4, arrays present); an empty string when the view can be read, else
/// what is wrong.
std::string checkQuantizedMatrix(const QuantizedMatrixView &matrix);

/// Writes rows [firstRow, firstRow + numRows) of the matrix as f32 into
/// `out` (numRows * cols values, row-major). The view must pass
/// checkQuantizedMatrix.
void dequantizeRows(const QuantizedMatrixView &matrix, int64_t firstRow,
                    int64_t numRows, float *out);

/// How a quantized matmul quantizes its activations (the rows of x) before
/// the product; the values are the plan's (PlanAbi.h) and the artifact's.
enum class ActivationQuant : int32_t {
  None = 0,
  /// int8, one scale a row (token): s = max|x_row| / 127, q = round(x / s)
  /// clamped to [-127, 127].
  Int8PerToken = 1,
  /// fp8 e4m3, one scale for the whole step: s = max|x| / 448.
  F8DynamicPerTensor = 2,
  /// fp8 e4m3 with the scale fixed at compile time from calibration (values
  /// beyond it saturate at +-448 s).
  F8StaticPerTensor = 3,
};

/// Replaces each of the rows x[r * stride, + cols) by its quantized and
/// dequantized value: the numbers a quantized matmul multiplies (exact
/// products, so the CPU target reproduces what int8 and fp8 tensor cores
/// compute up to the order of the f32 sums). `staticScale` is used by
/// F8StaticPerTensor only.
void fakeQuantizeActivations(ActivationQuant mode, float *x, int64_t rows,
                             int64_t cols, int64_t stride,
                             float staticScale = 0);

/// An int8 KV cache (optc --kv-cache-dtype=int8) stores each token's keys
/// (and values) of one kv head as a row of `headDim` int8 codes followed by
/// its f32 scale, 4 bytes: s = max|x| / 127, q = round(x / s) (to nearest
/// even), clamped to [-127, 127]; x = s q. One scale per token and head: a
/// token's row is written once and never rescaled, an outlier token costs
/// only its own precision, and attention reads the scale with the row.
inline int64_t int8KvRowBytes(int64_t headDim) { return headDim + 4; }
void encodeInt8KvRow(const float *x, int64_t headDim, uint8_t *row);
void decodeInt8KvRow(const uint8_t *row, int64_t headDim, float *x);

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_QUANTIZEDWEIGHTS_H
