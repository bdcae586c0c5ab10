//===- Quantizer.cpp - Weight quantization methods ------------------------===//

#include "optmlir/Quantization/Quantizer.h"

#include "runtime/core/NumberFormats.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace optmlir {
namespace quant {

using optrt::QuantizedCodes;

optrt::QuantizedMatrixView QuantizedMatrix::view() const {
  optrt::QuantizedMatrixView v;
  v.codes = format.codes;
  v.rows = rows;
  v.cols = cols;
  v.groupSize = format.codes == QuantizedCodes::Int4 ? format.groupSize : cols;
  v.perTensorScale = format.codes == QuantizedCodes::F8E4M3 && format.perTensor;
  v.values = values.data();
  v.scales = format.codes == QuantizedCodes::Int4
                 ? static_cast<const void *>(scalesF16.data())
                 : static_cast<const void *>(scalesF32.data());
  v.zeros = zeros.empty() ? nullptr : zeros.data();
  return v;
}

std::vector<float> QuantizedMatrix::dequantize() const {
  std::vector<float> out(size_t(rows) * cols);
  optrt::dequantizeRows(view(), 0, rows, out.data());
  return out;
}

std::string checkFormat(const WeightFormat &format, int64_t rows,
                        int64_t cols) {
  if (rows <= 0 || cols <= 0)
    return "a weight of " + std::to_string(rows) + " x " + std::to_string(cols);
  if (format.codes != QuantizedCodes::Int4)
    return "";
  if (format.groupSize <= 0 || cols % format.groupSize != 0)
    return "group size " + std::to_string(format.groupSize) +
           " does not divide the " + std::to_string(cols) + " input features";
  if (format.groupSize % 2 != 0)
    return "group size " + std::to_string(format.groupSize) +
           " is odd (int4 codes go two a byte)";
  return "";
}

namespace {

/// One int4 group's scale and zero point, as stored (the scale rounded to
/// f16 first, so that codes are chosen for the scale the kernels use).
struct Int4Params {
  float scale = 1;
  int zero = 8;
};

Int4Params int4Params(const float *w, int64_t count, int64_t stride,
                      bool symmetric, float clip = 1.0f) {
  float lo = 0, hi = 0; // 0 is always representable
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, w[i * stride]);
    hi = std::max(hi, w[i * stride]);
  }
  lo *= clip;
  hi *= clip;
  Int4Params p;
  if (symmetric) {
    float absMax = std::max(-lo, hi);
    p.scale = absMax > 0 ? absMax / 7.0f : 1.0f;
  } else {
    p.scale = hi > lo ? (hi - lo) / 15.0f : 1.0f;
  }
  p.scale = optrt::f16ToFloat(optrt::floatToF16(p.scale));
  if (!(p.scale > 0) || !std::isfinite(p.scale))
    p.scale = 1.0f;
  if (!symmetric)
    p.zero = int(std::clamp(std::nearbyint(-lo / p.scale), 0.0f, 15.0f));
  return p;
}

int int4Code(float w, const Int4Params &p) {
  return int(
      std::clamp(std::nearbyint(w / p.scale) + float(p.zero), 0.0f, 15.0f));
}

void setInt4Code(QuantizedMatrix &m, int64_t row, int64_t col, int code) {
  uint8_t &byte = m.values[row * (m.cols / 2) + col / 2];
  int shift = 4 * (col % 2);
  byte = uint8_t((byte & ~(0xf << shift)) | (code << shift));
}

QuantizedMatrix allocate(int64_t rows, int64_t cols,
                         const WeightFormat &format) {
  QuantizedMatrix m;
  m.format = format;
  m.rows = rows;
  m.cols = cols;
  if (format.codes == QuantizedCodes::Int4) {
    int64_t groups = rows * (cols / format.groupSize);
    m.values.assign(rows * cols / 2, 0);
    m.scalesF16.assign(groups, 0);
    if (!format.symmetric)
      m.zeros.assign(groups, 0);
  } else {
    m.values.assign(rows * cols, 0);
    bool one = format.codes == QuantizedCodes::F8E4M3 && format.perTensor;
    m.scalesF32.assign(one ? 1 : rows, 0);
  }
  return m;
}

void storeInt4Params(QuantizedMatrix &m, int64_t row, int64_t group,
                     const Int4Params &p) {
  int64_t at = row * (m.cols / m.format.groupSize) + group;
  m.scalesF16[at] = optrt::floatToF16(p.scale);
  if (!m.zeros.empty())
    m.zeros[at] = uint8_t(p.zero);
}

float rowAbsMax(const float *w, int64_t cols) {
  float m = 0;
  for (int64_t c = 0; c < cols; ++c)
    m = std::max(m, std::fabs(w[c]));
  return m;
}

/// Int8 and fp8 (one scale a row or for the matrix): codes from w / scale.
void quantizeRowScaled(const float *w, QuantizedMatrix &m) {
  const int64_t rows = m.rows, cols = m.cols;
  const bool fp8 = m.format.codes == QuantizedCodes::F8E4M3;
  const float top = fp8 ? 448.0f : 127.0f;
  float matrixMax = 0;
  if (m.scalesF32.size() == 1)
    for (int64_t r = 0; r < rows; ++r)
      matrixMax = std::max(matrixMax, rowAbsMax(w + r * cols, cols));
  for (int64_t r = 0; r < rows; ++r) {
    float absMax =
        m.scalesF32.size() == 1 ? matrixMax : rowAbsMax(w + r * cols, cols);
    float scale = absMax > 0 ? absMax / top : 1.0f;
    m.scalesF32[m.scalesF32.size() == 1 ? 0 : r] = scale;
    for (int64_t c = 0; c < cols; ++c) {
      float x = w[r * cols + c] / scale;
      m.values[r * cols + c] =
          fp8 ? optrt::encodeF8E4M3(x)
              : uint8_t(int8_t(std::clamp(std::nearbyint(x), -127.0f, 127.0f)));
    }
  }
}

/// Lower Cholesky factor of the symmetric positive definite a [n, n]
/// (double, in place: the upper triangle is cleared); false if a pivot is
/// not positive.
bool choleskyLower(std::vector<double> &a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k)
      d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0))
      return false;
    d = std::sqrt(d);
    a[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k)
        s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / d;
    }
    for (int64_t k = j + 1; k < n; ++k)
      a[j * n + k] = 0;
  }
  return true;
}

/// The upper factor U of H^-1 = U^T U, from H [n, n] (GPTQ's "Hinv").
bool inverseHessianFactor(std::vector<double> h, int64_t n,
                          std::vector<double> &u) {
  if (!choleskyLower(h, n))
    return false;
  // Linv = L^-1 (lower), by forward substitution column by column.
  std::vector<double> linv(n * n, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    linv[j * n + j] = 1.0 / h[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = j; k < i; ++k)
        s += h[i * n + k] * linv[k * n + j];
      linv[i * n + j] = -s / h[i * n + i];
    }
  }
  // H^-1 = Linv^T Linv.
  std::vector<double> inv(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = i; k < n; ++k)
        s += linv[k * n + i] * linv[k * n + j];
      inv[i * n + j] = inv[j * n + i] = s;
    }
  if (!choleskyLower(inv, n))
    return false;
  // U = L'^T.
  u.assign(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j)
      u[j * n + i] = inv[i * n + j];
  return true;
}

} // namespace

QuantizedMatrix quantizeRtn(const float *w, int64_t rows, int64_t cols,
                            const WeightFormat &format, const float *clip) {
  QuantizedMatrix m = allocate(rows, cols, format);
  if (format.codes != QuantizedCodes::Int4) {
    quantizeRowScaled(w, m);
    return m;
  }
  const int64_t g = format.groupSize;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t group = 0; group < cols / g; ++group) {
      const float *x = w + r * cols + group * g;
      Int4Params p = int4Params(x, g, 1, format.symmetric,
                                clip ? clip[r * (cols / g) + group] : 1.0f);
      storeInt4Params(m, r, group, p);
      for (int64_t c = 0; c < g; ++c)
        setInt4Code(m, r, group * g + c, int4Code(x[c], p));
    }
  return m;
}

bool quantizeGptq(const float *w, int64_t rows, int64_t cols,
                  const WeightFormat &format, const float *hessian,
                  const GptqOptions &options, QuantizedMatrix &out,
                  std::string &error) {
  if (format.codes != QuantizedCodes::Int4) {
    error = "GPTQ is implemented for int4 weights";
    return false;
  }
  const int64_t n = cols, g = format.groupSize;
  std::vector<double> h(hessian, hessian + n * n);
  std::vector<double> work(w, w + rows * cols); // [rows, cols], updated
  // Inputs that were always 0 carry no information: their weights are
  // dropped (as the reference implementation does).
  for (int64_t i = 0; i < n; ++i)
    if (h[i * n + i] == 0) {
      h[i * n + i] = 1;
      for (int64_t r = 0; r < rows; ++r)
        work[r * n + i] = 0;
    }
  // Static groups for act-order: each group's scale and zero point come
  // from the weight before any update, so the stored format stays plain.
  std::vector<Int4Params> staticParams;
  if (options.actOrder) {
    staticParams.resize(rows * (n / g));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t group = 0; group < n / g; ++group)
        staticParams[r * (n / g) + group] =
            int4Params(w + r * n + group * g, g, 1, format.symmetric);
  }
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  if (options.actOrder)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
      return h[a * n + a] > h[b * n + b];
    });
  // Permuted copies: column j of `wp` is column perm[j] of the weight.
  std::vector<double> hp(n * n), wp(rows * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      hp[i * n + j] = h[perm[i] * n + perm[j]];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      wp[r * n + j] = work[r * n + perm[j]];
  double meanDiag = 0;
  for (int64_t i = 0; i < n; ++i)
    meanDiag += hp[i * n + i];
  meanDiag /= double(n);
  for (int64_t i = 0; i < n; ++i)
    hp[i * n + i] += options.dampening * meanDiag;
  std::vector<double> u;
  if (!inverseHessianFactor(hp, n, u)) {
    error = "the damped Hessian is not positive definite (raise the "
            "dampening or calibrate on more text)";
    return false;
  }

  out = allocate(rows, cols, format);
  std::vector<Int4Params> current(rows);
  std::vector<double> err(rows);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t col = perm[j];
    if (!options.actOrder && j % g == 0)
      // The group's parameters from its columns as updated so far.
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> group(g);
        for (int64_t c = 0; c < g; ++c)
          group[c] = float(wp[r * n + j + c]);
        current[r] = int4Params(group.data(), g, 1, format.symmetric);
        storeInt4Params(out, r, j / g, current[r]);
      }
    const double d = u[j * n + j];
    for (int64_t r = 0; r < rows; ++r) {
      const Int4Params &p =
          options.actOrder ? staticParams[r * (n / g) + col / g] : current[r];
      double x = wp[r * n + j];
      int code = int4Code(float(x), p);
      setInt4Code(out, r, col, code);
      double q = double(p.scale) * double(code - p.zero);
      err[r] = (x - q) / d;
    }
    // Spread the error over the columns not yet quantized.
    for (int64_t r = 0; r < rows; ++r) {
      double e = err[r];
      if (e == 0)
        continue;
      double *rowW = &wp[r * n];
      const double *rowU = &u[j * n];
      for (int64_t k = j + 1; k < n; ++k)
        rowW[k] -= e * rowU[k];
    }
  }
  if (options.actOrder)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t group = 0; group < n / g; ++group)
        storeInt4Params(out, r, group, staticParams[r * (n / g) + group]);
  return true;
}

std::vector<float> searchClipRatios(const float *w, int64_t rows, int64_t cols,
                                    const WeightFormat &format,
                                    const float *hessian) {
  const int64_t g = format.groupSize, groups = cols / g;
  std::vector<float> best(rows * groups, 1.0f);
  std::vector<double> e(g);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t group = 0; group < groups; ++group) {
      const float *x = w + r * cols + group * g;
      const float *h = hessian + (group * g) * cols + group * g;
      double bestError = -1;
      for (int step = 0; step <= 10; ++step) {
        float ratio = 1.0f - 0.05f * float(step);
        Int4Params p = int4Params(x, g, 1, format.symmetric, ratio);
        for (int64_t c = 0; c < g; ++c)
          e[c] = double(p.scale) * double(int4Code(x[c], p) - p.zero) - x[c];
        double error = 0;
        for (int64_t i = 0; i < g; ++i) {
          double row = 0;
          for (int64_t j = 0; j < g; ++j)
            row += double(h[i * cols + j]) * e[j];
          error += e[i] * row;
        }
        if (bestError < 0 || error < bestError) {
          bestError = error;
          best[r * groups + group] = ratio;
        }
      }
    }
  return best;
}

double outputError(const float *exact, const float *approx, int64_t rows,
                   int64_t cols, const float *hessian) {
  std::vector<float> e(rows * cols), eh(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    e[i] = approx[i] - exact[i];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f,
              e.data(), cols, hessian, cols, 0.0f, eh.data(), cols);
  double sum = 0;
  for (int64_t i = 0; i < rows * cols; ++i)
    sum += double(e[i]) * double(eh[i]);
  return sum;
}

std::vector<float> searchAwqScales(const float *w, int64_t rows, int64_t cols,
                                   const WeightFormat &format,
                                   const float *meanAbs, const float *hessian,
                                   int grid) {
  std::vector<float> best(cols, 1.0f), scaled(rows * cols);
  double bestError = -1;
  for (int step = 0; step < grid; ++step) {
    double ratio = double(step) / grid;
    std::vector<float> s(cols);
    for (int64_t c = 0; c < cols; ++c)
      s[c] = float(std::pow(std::max(double(meanAbs[c]), 1e-4), ratio));
    auto [lo, hi] = std::minmax_element(s.begin(), s.end());
    float norm = std::sqrt(*lo * *hi);
    for (float &v : s)
      v /= norm;
    std::copy(w, w + rows * cols, scaled.begin());
    scaleColumns(scaled.data(), rows, cols, s);
    std::vector<float> approx =
        quantizeRtn(scaled.data(), rows, cols, format).dequantize();
    std::vector<float> inverse(cols);
    for (int64_t c = 0; c < cols; ++c)
      inverse[c] = 1.0f / s[c];
    scaleColumns(approx.data(), rows, cols, inverse);
    double error = outputError(w, approx.data(), rows, cols, hessian);
    if (bestError < 0 || error < bestError) {
      bestError = error;
      best = s;
    }
  }
  return best;
}

std::vector<float> smoothQuantFactors(const std::vector<float> &inputAbsMax,
                                      const std::vector<float> &weightAbsMax,
                                      double alpha) {
  std::vector<float> s(inputAbsMax.size(), 1.0f);
  for (size_t j = 0; j < s.size() && j < weightAbsMax.size(); ++j)
    if (inputAbsMax[j] > 0 && weightAbsMax[j] > 0)
      s[j] = float(std::pow(double(inputAbsMax[j]), alpha) /
                   std::pow(double(weightAbsMax[j]), 1.0 - alpha));
  return s;
}

std::vector<float> columnAbsMax(const float *w, int64_t rows, int64_t cols) {
  std::vector<float> m(cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      m[c] = std::max(m[c], std::fabs(w[r * cols + c]));
  return m;
}

void scaleColumns(float *w, int64_t rows, int64_t cols,
                  const std::vector<float> &scale) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      w[r * cols + c] *= scale[c];
}

} // namespace quant
} // namespace optmlir
