//===- CalibrationStats.cpp - What calibration records per linear ---------===//

#include "optmlir/Quantization/CalibrationStats.h"

#include "optmlir/Support/SafeTensors.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace optmlir {
namespace quant {

namespace {
constexpr const char *kFormat = "optmlir-calibration";
const char *kSuffixes[] = {".abs_mean", ".abs_max", ".hessian", ".sample"};
} // namespace

LinearInputAccumulator::LinearInputAccumulator(int64_t channels,
                                               int64_t maxSampleRows)
    : channels(channels), maxSampleRows(maxSampleRows), absSum(channels, 0.0),
      absMax(channels, 0.0), xtx(channels * channels, 0.0) {}

void LinearInputAccumulator::add(const float *x, int64_t rows, int64_t stride) {
  if (rows <= 0)
    return;
  // X^T X of the batch through BLAS (f32 within a batch, f64 across them):
  // the lower triangle.
  std::vector<float> batch(channels * channels, 0.0f);
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, channels, rows, 1.0f, x,
              stride, 0.0f, batch.data(), channels);
  for (int64_t i = 0; i < channels; ++i)
    for (int64_t j = 0; j <= i; ++j)
      xtx[i * channels + j] += batch[i * channels + j];
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * stride;
    for (int64_t i = 0; i < channels; ++i) {
      double v = row[i];
      absSum[i] += std::fabs(v);
      absMax[i] = std::max(absMax[i], std::fabs(v));
    }
    // Reservoir sampling with a fixed seed: a uniform, reproducible sample
    // of every row seen.
    ++rowsSeen;
    if (int64_t(sample.size()) < maxSampleRows * channels) {
      sample.insert(sample.end(), row, row + channels);
    } else if (maxSampleRows > 0) {
      uint64_t pick =
          std::mt19937_64(uint64_t(rowsSeen))() % uint64_t(rowsSeen);
      if (int64_t(pick) < maxSampleRows)
        std::copy(row, row + channels, sample.begin() + pick * channels);
    }
  }
}

LinearInputStats LinearInputAccumulator::finish() const {
  LinearInputStats s;
  s.channels = channels;
  s.rows = rowsSeen;
  double n = std::max<double>(1, double(rowsSeen));
  for (int64_t i = 0; i < channels; ++i) {
    s.absMean.push_back(float(absSum[i] / n));
    s.absMax.push_back(float(absMax[i]));
  }
  s.hessian.resize(channels * channels);
  for (int64_t i = 0; i < channels; ++i)
    for (int64_t j = 0; j <= i; ++j)
      s.hessian[i * channels + j] = s.hessian[j * channels + i] =
          float(xtx[i * channels + j] / n);
  s.sample = sample;
  return s;
}

bool CalibrationStats::write(const std::string &path,
                             std::string &error) const {
  std::vector<TensorToWrite> tensors;
  for (const auto &[name, s] : linears) {
    const int64_t k = s.channels;
    tensors.push_back({name + ".abs_mean", DType::F32, {k}, s.absMean.data()});
    tensors.push_back({name + ".abs_max", DType::F32, {k}, s.absMax.data()});
    tensors.push_back(
        {name + ".hessian", DType::F32, {k, k}, s.hessian.data()});
    tensors.push_back(
        {name + ".sample", DType::F32, {s.sampleRows(), k}, s.sample.data()});
  }
  std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"version", std::to_string(kVersion)},
      {"model", modelFingerprint},
      {"tokens", std::to_string(tokens)},
      {"source", source}};
  return writeSafeTensors(path, tensors, metadata, error);
}

std::unique_ptr<CalibrationStats>
CalibrationStats::read(const std::string &path,
                       const std::string &expectedFingerprint,
                       std::string &error) {
  std::unique_ptr<SafeTensorsFile> file = SafeTensorsFile::open(path, &error);
  if (!file)
    return nullptr;
  const auto &meta = file->metadata();
  auto field = [&](const char *key) -> std::string {
    auto it = meta.find(key);
    return it == meta.end() ? "" : it->second;
  };
  if (field("format") != kFormat) {
    error = path + ": not a calibration statistics file (made by 'optc "
                   "calibrate')";
    return nullptr;
  }
  if (field("version") != std::to_string(kVersion)) {
    error = path + ": calibration statistics version '" +
            escapeForMessage(field("version")) + "', this optc reads " +
            std::to_string(kVersion) + " (calibrate again)";
    return nullptr;
  }
  auto stats = std::make_unique<CalibrationStats>();
  stats->modelFingerprint = field("model");
  stats->source = field("source");
  stats->tokens = std::atoll(field("tokens").c_str());
  if (!expectedFingerprint.empty() &&
      stats->modelFingerprint != expectedFingerprint) {
    error = path +
            ": the calibration statistics are of another model "
            "(fingerprint " +
            escapeForMessage(stats->modelFingerprint) + ", this model's is " +
            expectedFingerprint + ")";
    return nullptr;
  }
  auto copy = [&](const TensorInfo &t, std::vector<float> &out) {
    out.resize(t.numElements());
    std::memcpy(out.data(), file->tensorData(t), t.byteSize());
  };
  for (const TensorInfo &t : file->tensors()) {
    std::string name = t.name, suffix;
    for (const char *s : kSuffixes)
      if (name.size() > std::strlen(s) &&
          name.compare(name.size() - std::strlen(s), std::string::npos, s) == 0)
        suffix = s;
    if (suffix.empty() || t.dtype != DType::F32) {
      error = path + ": unexpected tensor '" + escapeForMessage(t.name) + "'";
      return nullptr;
    }
    name.resize(name.size() - suffix.size());
    LinearInputStats &s = stats->linears[name];
    int64_t k = t.shape.empty() ? 0 : t.shape.back();
    if (s.channels == 0)
      s.channels = k;
    bool shapeOk =
        s.channels == k && k > 0 &&
        ((suffix == ".hessian" && t.shape.size() == 2 && t.shape[0] == k) ||
         (suffix == ".sample" && t.shape.size() == 2) ||
         (suffix != ".hessian" && suffix != ".sample" && t.shape.size() == 1));
    if (!shapeOk) {
      error = path + ": tensor '" + escapeForMessage(t.name) + "' has shape " +
              formatShape(t.shape) + ", not one for " + std::to_string(k) +
              " input channels";
      return nullptr;
    }
    copy(t, suffix == ".abs_mean"  ? s.absMean
            : suffix == ".abs_max" ? s.absMax
            : suffix == ".hessian" ? s.hessian
                                   : s.sample);
  }
  for (const auto &[name, s] : stats->linears)
    if (s.absMean.empty() || s.absMax.empty() || s.hessian.empty()) {
      error = path + ": the statistics of '" + escapeForMessage(name) +
              "' are incomplete";
      return nullptr;
    }
  return stats;
}

const LinearInputStats *
CalibrationStats::find(const std::string &weightName) const {
  auto it = linears.find(weightName);
  return it == linears.end() ? nullptr : &it->second;
}

} // namespace quant
} // namespace optmlir
