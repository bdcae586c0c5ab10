//===- Metrics.h - Prometheus text exposition -------------------*- C++ -*-===//
//
// The pieces of /metrics: histograms with fixed buckets, and writers for
// gauges and counters in Prometheus' text format (version 0.0.4). Not
// thread-safe: the owner locks.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_SERVE_METRICS_H
#define OPTMLIR_RUNTIME_SERVE_METRICS_H

#include <cstdint>
#include <string>
#include <vector>

namespace optrt {
namespace serve {

class Histogram {
public:
  /// `bounds`: the buckets' upper bounds, increasing (+Inf is implied).
  explicit Histogram(std::vector<double> bounds);

  void observe(double value);
  uint64_t count() const { return total; }
  double sum() const { return sumOfValues; }
  /// Observations <= bounds[i] (cumulative, as exposed).
  uint64_t cumulativeCount(size_t i) const;
  const std::vector<double> &bounds() const { return upper; }

  /// # HELP, # TYPE, then name_bucket{le="..."}, name_sum, name_count.
  void render(const std::string &name, const std::string &help,
              std::string &out) const;

private:
  std::vector<double> upper;
  /// Observations in each bucket (not cumulative); one more for +Inf.
  std::vector<uint64_t> counts;
  uint64_t total = 0;
  double sumOfValues = 0;
};

/// "# HELP name help\n# TYPE name gauge\nname value\n".
void appendGauge(std::string &out, const std::string &name,
                 const std::string &help, double value);
/// As appendGauge, for a counter; `labelled` lists (label text, value)
/// samples such as {"finished_reason=\"stop\"", 3}; empty: one sample.
void appendCounter(
    std::string &out, const std::string &name, const std::string &help,
    double value,
    const std::vector<std::pair<std::string, double>> &labelled = {});

/// The process's resident set (VmRSS of /proc/self/status) in bytes; -1
/// where it cannot be read.
int64_t residentMemoryBytes();

/// Prometheus' number format: integers without a fraction, +Inf, NaN.
std::string formatMetricValue(double value);

} // namespace serve
} // namespace optrt

#endif // OPTMLIR_RUNTIME_SERVE_METRICS_H
