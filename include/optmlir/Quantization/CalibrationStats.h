//===- CalibrationStats.h - What calibration records per linear -*- C++ -*-===//
//
// `optc calibrate` runs a model over calibration text and records, for the
// input of every linear layer (keyed by the name of the weight the layer
// reads), what the quantization methods need:
//   - per input channel: mean |x| (AWQ) and max |x| (SmoothQuant, static
//     fp8 and int8 scales);
//   - X^T X / rows, the layer's input Hessian up to a constant (GPTQ, and
//     every method's output-error search);
//   - a sample of input rows (SmoothQuant's migration strength is chosen on
//     them, with the activations quantized as the runtime does).
// The file is a safetensors file (tensors NAME.abs_mean F32 [K], NAME.abs_max
// F32 [K], NAME.hessian F32 [K, K], NAME.sample F32 [S, K]) whose metadata
// says what it is: format "optmlir-calibration", version, the fingerprint of
// the model it was made from (refused for another model), the tokens seen.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_QUANTIZATION_CALIBRATIONSTATS_H
#define OPTMLIR_QUANTIZATION_CALIBRATIONSTATS_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace optmlir {
namespace quant {

/// Statistics of one linear layer's inputs.
struct LinearInputStats {
  int64_t channels = 0;               // K
  int64_t rows = 0;                   // input rows seen
  std::vector<float> absMean, absMax; // [K]
  std::vector<float> hessian;         // [K, K], X^T X / rows
  std::vector<float> sample;          // [sampleRows, K]
  int64_t sampleRows() const {
    return channels ? int64_t(sample.size()) / channels : 0;
  }
};

/// Accumulates LinearInputStats from batches of rows (f64 sums, so that
/// long calibration runs lose nothing).
class LinearInputAccumulator {
public:
  LinearInputAccumulator(int64_t channels, int64_t maxSampleRows);
  /// Adds `rows` rows of `channels` values, `stride` apart.
  void add(const float *x, int64_t rows, int64_t stride);
  LinearInputStats finish() const;

private:
  int64_t channels, maxSampleRows, rowsSeen = 0;
  std::vector<double> absSum, absMax, xtx;
  std::vector<float> sample;
};

class CalibrationStats {
public:
  static constexpr int kVersion = 1;

  std::string modelFingerprint;
  int64_t tokens = 0;
  /// Where the text came from (file name), for provenance.
  std::string source;
  std::map<std::string, LinearInputStats> linears;

  /// Writes the file (atomically: a temporary file renamed into place).
  bool write(const std::string &path, std::string &error) const;
  /// Reads and checks a file: format, version, shapes, and that it was made
  /// from the model with `expectedFingerprint` (unless empty). Errors are
  /// one line naming the file.
  static std::unique_ptr<CalibrationStats>
  read(const std::string &path, const std::string &expectedFingerprint,
       std::string &error);

  /// The statistics of the layer reading `weightName`, or null.
  const LinearInputStats *find(const std::string &weightName) const;
};

} // namespace quant
} // namespace optmlir

#endif // OPTMLIR_QUANTIZATION_CALIBRATIONSTATS_H
