//===- Metrics.cpp - Prometheus text exposition ---------------------------===//

#include "runtime/serve/Metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace optrt {
namespace serve {

Histogram::Histogram(std::vector<double> bounds)
    : upper(std::move(bounds)), counts(upper.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t bucket =
      std::lower_bound(upper.begin(), upper.end(), value) - upper.begin();
  ++counts[bucket];
  ++total;
  sumOfValues += value;
}

uint64_t Histogram::cumulativeCount(size_t i) const {
  uint64_t n = 0;
  for (size_t b = 0; b <= i && b < counts.size(); ++b)
    n += counts[b];
  return n;
}

std::string formatMetricValue(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (value == std::floor(value) && std::fabs(value) < 1e15)
    std::snprintf(buf, sizeof(buf), "%.0f", value);
  else
    std::snprintf(buf, sizeof(buf), "%.9g", value);
  return buf;
}

void Histogram::render(const std::string &name, const std::string &help,
                       std::string &out) const {
  out += "# HELP " + name + " " + help + "\n";
  out += "# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < upper.size(); ++i) {
    cumulative += counts[i];
    out += name + "_bucket{le=\"" + formatMetricValue(upper[i]) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(total) + "\n";
  out += name + "_sum " + formatMetricValue(sumOfValues) + "\n";
  out += name + "_count " + std::to_string(total) + "\n";
}

void appendGauge(std::string &out, const std::string &name,
                 const std::string &help, double value) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n" +
         name + " " + formatMetricValue(value) + "\n";
}

void appendCounter(
    std::string &out, const std::string &name, const std::string &help,
    double value, const std::vector<std::pair<std::string, double>> &labelled) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n";
  if (labelled.empty()) {
    out += name + " " + formatMetricValue(value) + "\n";
    return;
  }
  for (const auto &[labels, sample] : labelled)
    out += name + "{" + labels + "} " + formatMetricValue(sample) + "\n";
}

int64_t residentMemoryBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0)
      continue;
    std::istringstream fields(line.substr(6));
    int64_t kib = -1;
    fields >> kib;
    return kib < 0 ? -1 : kib * 1024;
  }
  return -1;
}

} // namespace serve
} // namespace optrt
