#include "fleet/server_metrics_text.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace sd {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// `line`'s value when it is a sample of `series` (name and labels exactly).
bool SampleValue(const std::string& line, const std::string& series, double* value) {
  if (line.size() <= series.size() || line.compare(0, series.size(), series) != 0 || line[series.size()] != ' ')
    return false;
  const std::string text = line.substr(series.size() + 1);
  if (text.rfind("+Inf", 0) == 0) {
    *value = std::numeric_limits<double>::infinity();
    return true;
  }
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return end != text.c_str();
}

}  // namespace

double MetricSample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  double value = kNaN;
  while (std::getline(lines, line))
    if (SampleValue(line, series, &value)) return value;
  return kNaN;
}

std::vector<HistogramBucket> MetricHistogram(const std::string& text, const std::string& name) {
  const std::string prefix = name + "_bucket{le=\"";
  std::vector<HistogramBucket> buckets;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t close = line.find("\"}", prefix.size());
    if (close == std::string::npos) continue;
    const std::string bound = line.substr(prefix.size(), close - prefix.size());
    HistogramBucket bucket;
    bucket.le = bound == "+Inf" ? std::numeric_limits<double>::infinity() : std::strtod(bound.c_str(), nullptr);
    if (!SampleValue(line, line.substr(0, close + 2), &bucket.count)) continue;
    buckets.push_back(bucket);
  }
  std::sort(buckets.begin(), buckets.end(),
            [](const HistogramBucket& a, const HistogramBucket& b) { return a.le < b.le; });
  return buckets;
}

double HistogramQuantile(double q, const std::vector<HistogramBucket>& buckets) {
  if (buckets.empty() || !(q >= 0 && q <= 1)) return kNaN;
  const double total = buckets.back().count;
  if (!(total > 0)) return kNaN;
  const double rank = q * total;
  double lower = 0, below = 0;  // the previous bucket's bound and cumulative count
  for (size_t i = 0; i < buckets.size(); ++i) {
    const HistogramBucket& b = buckets[i];
    if (b.count >= rank && b.count > below) {
      if (std::isinf(b.le)) return i > 0 ? buckets[i - 1].le : kNaN;
      if (i == 0 && b.le <= 0) return b.le;
      return lower + (b.le - lower) * (rank - below) / (b.count - below);
    }
    lower = b.le;
    below = b.count;
  }
  return buckets.size() > 1 ? buckets[buckets.size() - 2].le : kNaN;
}

StatusOr<std::string> FetchMetrics(int port, double timeout_s) {
  httplib::Client client("127.0.0.1", port);
  const auto seconds = static_cast<time_t>(std::ceil(timeout_s));
  client.set_connection_timeout(seconds, 0);
  client.set_read_timeout(seconds, 0);
  const auto response = client.Get("/metrics");
  if (!response) return Status::Unavailable("GET 127.0.0.1:" + std::to_string(port) + "/metrics: " +
                                            httplib::to_string(response.error()));
  if (response->status != 200)
    return Status::Unavailable("GET 127.0.0.1:" + std::to_string(port) + "/metrics: HTTP " +
                               std::to_string(response->status));
  return response->body;
}

}  // namespace sd
