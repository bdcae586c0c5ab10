//===- QuantizedWeights.cpp - Stored formats of quantized matrices --------===//

#include "runtime/core/QuantizedWeights.h"

#include "runtime/core/NumberFormats.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace optrt {

std::string checkQuantizedMatrix(const QuantizedMatrixView &m) {
  if (m.rows <= 0 || m.cols <= 0)
    return "a quantized matrix of " + std::to_string(m.rows) + " x " +
           std::to_string(m.cols);
  if (!m.values || !m.scales)
    return "a quantized matrix without its values or scales";
  if (m.codes == QuantizedCodes::Int4) {
    if (m.cols % 2 != 0)
      return "int4 rows of an odd length " + std::to_string(m.cols);
    if (m.groupSize <= 0 || m.cols % m.groupSize != 0)
      return "int4 groups of " + std::to_string(m.groupSize) +
             " columns do not divide rows of " + std::to_string(m.cols);
    if (m.perTensorScale)
      return "int4 with one scale for the matrix";
    return "";
  }
  if (m.zeros)
    return "zero points on a symmetric int8 or fp8 matrix";
  if (m.groupSize != m.cols)
    return "int8 and fp8 matrices have one scale a row (group of " +
           std::to_string(m.cols) + "), not groups of " +
           std::to_string(m.groupSize);
  if (m.perTensorScale && m.codes != QuantizedCodes::F8E4M3)
    return "one scale for an int8 matrix";
  return "";
}

void dequantizeRows(const QuantizedMatrixView &m, int64_t firstRow,
                    int64_t numRows, float *out) {
  const int64_t cols = m.cols;
  for (int64_t r = 0; r < numRows; ++r) {
    const int64_t row = firstRow + r;
    float *dst = out + r * cols;
    switch (m.codes) {
    case QuantizedCodes::Int4: {
      const uint8_t *codes = m.values + row * (cols / 2);
      const uint16_t *scales =
          static_cast<const uint16_t *>(m.scales) + row * m.groupsPerRow();
      const uint8_t *zeros =
          m.zeros ? m.zeros + row * m.groupsPerRow() : nullptr;
      for (int64_t g = 0; g < m.groupsPerRow(); ++g) {
        float scale = f16ToFloat(scales[g]);
        int zero = zeros ? zeros[g] : 8;
        for (int64_t c = g * m.groupSize; c < (g + 1) * m.groupSize; ++c) {
          int code = (codes[c / 2] >> (4 * (c % 2))) & 0xf;
          dst[c] = scale * float(code - zero);
        }
      }
      break;
    }
    case QuantizedCodes::Int8: {
      const int8_t *codes =
          reinterpret_cast<const int8_t *>(m.values) + row * cols;
      float scale = static_cast<const float *>(m.scales)[row];
      for (int64_t c = 0; c < cols; ++c)
        dst[c] = scale * float(codes[c]);
      break;
    }
    case QuantizedCodes::F8E4M3: {
      const uint8_t *codes = m.values + row * cols;
      float scale =
          static_cast<const float *>(m.scales)[m.perTensorScale ? 0 : row];
      for (int64_t c = 0; c < cols; ++c)
        dst[c] = scale * decodeF8E4M3(codes[c]);
      break;
    }
    }
  }
}

void encodeInt8KvRow(const float *x, int64_t headDim, uint8_t *row) {
  float absMax = 0;
  for (int64_t i = 0; i < headDim; ++i)
    absMax = std::max(absMax, std::fabs(x[i]));
  float scale = absMax / 127.0f;
  float divisor = absMax > 0 ? scale : 1.0f;
  for (int64_t i = 0; i < headDim; ++i)
    row[i] = uint8_t(
        int8_t(std::clamp(std::nearbyint(x[i] / divisor), -127.0f, 127.0f)));
  std::memcpy(row + headDim, &scale, 4);
}

void decodeInt8KvRow(const uint8_t *row, int64_t headDim, float *x) {
  float scale;
  std::memcpy(&scale, row + headDim, 4);
  for (int64_t i = 0; i < headDim; ++i)
    x[i] = scale * float(int8_t(row[i]));
}

void fakeQuantizeActivations(ActivationQuant mode, float *x, int64_t rows,
                             int64_t cols, int64_t stride, float staticScale) {
  auto absMax = [&](int64_t firstRow, int64_t numRows) {
    float m = 0;
    for (int64_t r = firstRow; r < firstRow + numRows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        m = std::max(m, std::fabs(x[r * stride + c]));
    return m;
  };
  auto toF8 = [&](float scale) {
    if (!(scale > 0))
      return;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float &v = x[r * stride + c];
        v = scale * decodeF8E4M3(encodeF8E4M3(v / scale));
      }
  };
  switch (mode) {
  case ActivationQuant::None:
    return;
  case ActivationQuant::Int8PerToken:
    for (int64_t r = 0; r < rows; ++r) {
      float scale = absMax(r, 1) / 127.0f;
      if (!(scale > 0))
        continue;
      for (int64_t c = 0; c < cols; ++c) {
        float &v = x[r * stride + c];
        v = scale * std::clamp(std::nearbyint(v / scale), -127.0f, 127.0f);
      }
    }
    return;
  case ActivationQuant::F8DynamicPerTensor:
    toF8(absMax(0, rows) / 448.0f);
    return;
  case ActivationQuant::F8StaticPerTensor:
    toF8(staticScale);
    return;
  }
}

} // namespace optrt
