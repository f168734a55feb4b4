// Prometheus metrics: counters, gauges and histograms, optionally labelled, rendered in the
// text exposition format 0.0.4 (docs/operations.md, "Metrics", lists the daemons' metrics).
//
// Hot paths pay one atomic operation per update; a labelled family finds its child under a
// mutex of its own, so a caller that updates the same series often keeps the reference that
// With() returns (children live as long as the registry). State the program keeps anyway (a
// queue's depth, a device's stored frames) is not copied into gauges: a callback family reads
// it when /metrics is scraped.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace sd {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds (le), ascending; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; last: +Inf
  std::atomic<double> sum_{0};
};

// Bucket bounds (seconds) for the daemons' latencies, from their measured ranges.
namespace buckets {
extern const std::vector<double> kInferenceSeconds;  // the student per frame: 6-20 ms measured
extern const std::vector<double> kLabelSeconds;      // queue wait + teacher: HOG takes ~155 ms
extern const std::vector<double> kRoundSeconds;      // a training round: 18-50 s measured
extern const std::vector<double> kStoreSeconds;      // a frame's row and image made durable: ms
}  // namespace buckets

// One metric name with its series, by label values.
template <typename T>
class Family {
 public:
  // The series with these label values, one per label name (a miscount renders missing
  // values empty and drops extra ones), made on first use.
  T& With(const std::vector<std::string>& label_values) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = children_.find(label_values);
    if (it == children_.end()) it = children_.emplace(label_values, make_()).first;
    return *it->second;
  }

 private:
  friend class MetricsRegistry;
  explicit Family(std::function<std::unique_ptr<T>()> make) : make_(std::move(make)) {}
  std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mu_;  // guards children_ (not the series, which are atomics)
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Names follow Prometheus ([a-zA-Z_:][a-zA-Z0-9_:]*, labels without ':' nor a leading "__").
  // A bad or repeated name, or a histogram's bounds that do not ascend, is a mistake in the
  // program: the family is still returned (and rendered nowhere), and status() reports it,
  // which the daemons check at start.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                  std::vector<std::string> label_names = {});

  // A family read at scrape time: `collect` calls `emit` once per series. It runs on the HTTP
  // thread with no registry lock held, so it may take the program's own locks.
  enum class Type { kCounter, kGauge };
  using Emit = std::function<void(const std::vector<std::string>& label_values, double value)>;
  void AddCallback(Type type, const std::string& name, const std::string& help, std::vector<std::string> label_names,
                   std::function<void(const Emit&)> collect);

  // Ok, or the first registration mistake.
  Status status() const;
  // Every family in the order registered, as text exposition format 0.0.4.
  std::string Render() const;

 private:
  struct Entry;
  Entry* Register(const std::string& type, const std::string& name, const std::string& help,
                  std::vector<std::string> label_names);

  mutable std::mutex mu_;  // guards entries_ and status_; held only to register or list
  std::vector<std::unique_ptr<Entry>> entries_;
  Status status_;
};

// The exposition format's escapes: a label value's backslash, double quote and newline, and
// a HELP text's backslash and newline.
std::string EscapeLabelValue(const std::string& value);
std::string EscapeHelp(const std::string& help);

}  // namespace sd
