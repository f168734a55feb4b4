// The server's /metrics (Prometheus text exposition) as the fleet reads it at the end of a
// run: single samples, and a histogram's quantiles interpolated within its buckets.
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

struct HistogramBucket {
  double le = 0;     // upper bound, inclusive; +infinity for the last
  double count = 0;  // cumulative: observations <= le
};

// The value of the sample `series` (its name and labels exactly as rendered, e.g.
// `name{device="a"}`, or a name without labels); NaN when there is none.
double MetricSample(const std::string& text, const std::string& series);

// The cumulative buckets of the label-less histogram `name` (its `name_bucket{le="..."}`
// lines), sorted by bound; empty when there is none.
std::vector<HistogramBucket> MetricHistogram(const std::string& text, const std::string& name);

// The q-quantile (0 <= q <= 1) of a histogram the way Prometheus' histogram_quantile()
// estimates it: the bucket where the rank q x count falls, and linear interpolation within it
// (from 0 for the first bucket); a rank in the +Inf bucket gives the largest finite bound.
// NaN without observations.
double HistogramQuantile(double q, const std::vector<HistogramBucket>& buckets);

// GET http://127.0.0.1:<port>/metrics (plain HTTP, the fleet's own server).
StatusOr<std::string> FetchMetrics(int port, double timeout_s = 10);

}  // namespace sd
