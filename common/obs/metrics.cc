#include "common/obs/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace sd {

namespace buckets {
const std::vector<double> kInferenceSeconds = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                               0.03,  0.05,   0.1,   0.25,   0.5,  1};
const std::vector<double> kLabelSeconds = {0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30};
const std::vector<double> kRoundSeconds = {1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600};
const std::vector<double> kStoreSeconds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}  // namespace buckets

namespace {

// Whole numbers (counts, bytes) in full; others as the shortest text that reads back as the
// same double; the format's spellings of the infinities and NaN.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, result.ptr);
}

bool IsNameChar(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (c == ':') return colon_ok;
  return !first && c >= '0' && c <= '9';
}

bool IsValidName(const std::string& name, bool colon_ok) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!IsNameChar(name[i], i == 0, colon_ok)) return false;
  return true;
}

// Label values padded or cut to the family's label names: a caller's miscount never makes
// the output unparseable.
std::vector<std::string> Fit(std::vector<std::string> values, size_t n) {
  values.resize(n);
  return values;
}

// `{a="x",b="y"}`, with `extra` (a histogram's le) last; empty for no labels at all.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(i < values.size() ? values[i] : "") + "\"";
  }
  if (!extra.empty()) out += (out.empty() ? "{" : ",") + extra;
  if (!out.empty()) out += "}";
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double value) {
  // le is inclusive: the first bound >= value; past the last, the +Inf bucket.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  // Counted from the buckets, so the count always equals the +Inf bucket even while
  // observations land during the read.
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

struct MetricsRegistry::Entry {
  std::string type;  // as the TYPE line says it
  std::string name, help;
  std::vector<std::string> label_names;
  bool valid = true;
  // Exactly one of these is set.
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<void(const Emit&)> collect;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Entry* MetricsRegistry::Register(const std::string& type, const std::string& name,
                                                  const std::string& help, std::vector<std::string> label_names) {
  auto entry = std::make_unique<Entry>();
  entry->type = type;
  entry->name = name;
  entry->help = help;
  entry->label_names = std::move(label_names);
  std::string problem;
  if (!IsValidName(name, /*colon_ok=*/true)) problem = "is not a valid metric name";
  for (const std::string& label : entry->label_names)
    if (!IsValidName(label, /*colon_ok=*/false) || label.rfind("__", 0) == 0)
      problem = "has an invalid label name '" + label + "'";
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& other : entries_)
    if (other->name == name) problem = "is registered twice";
  if (!problem.empty()) {
    entry->valid = false;
    if (status_.ok()) status_ = Status::Internal("metric '" + name + "' " + problem);
  }
  entries_.push_back(std::move(entry));
  return entries_.back().get();
}

Family<Counter>& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                             std::vector<std::string> label_names) {
  Entry* entry = Register("counter", name, help, std::move(label_names));
  entry->counters.reset(new Family<Counter>([] { return std::make_unique<Counter>(); }));
  // An unlabelled series shows 0 from the start, so rate() and increase() have a first point.
  if (entry->label_names.empty()) entry->counters->With({});
  return *entry->counters;
}

Family<Gauge>& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                         std::vector<std::string> label_names) {
  Entry* entry = Register("gauge", name, help, std::move(label_names));
  entry->gauges.reset(new Family<Gauge>([] { return std::make_unique<Gauge>(); }));
  if (entry->label_names.empty()) entry->gauges->With({});
  return *entry->gauges;
}

Family<Histogram>& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                                 std::vector<double> bounds, std::vector<std::string> label_names) {
  Entry* entry = Register("histogram", name, help, std::move(label_names));
  // A histogram's own label, on its buckets.
  const bool le_label =
      std::find(entry->label_names.begin(), entry->label_names.end(), "le") != entry->label_names.end();
  const bool ascending = !bounds.empty() && std::adjacent_find(bounds.begin(), bounds.end(), [](double a, double b) {
                                              return !(a < b);
                                            }) == bounds.end();
  if (le_label || !ascending || !std::isfinite(bounds.back())) {
    std::lock_guard<std::mutex> lock(mu_);
    entry->valid = false;
    if (status_.ok())
      status_ = Status::Internal("metric '" + name + (le_label ? "' has an invalid label name 'le'"
                                                               : "': bucket bounds must be finite and ascend"));
  }
  entry->histograms.reset(new Family<Histogram>([bounds] { return std::make_unique<Histogram>(bounds); }));
  if (entry->label_names.empty()) entry->histograms->With({});
  return *entry->histograms;
}

void MetricsRegistry::AddCallback(Type type, const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names, std::function<void(const Emit&)> collect) {
  Entry* entry = Register(type == Type::kCounter ? "counter" : "gauge", name, help, std::move(label_names));
  entry->collect = std::move(collect);
}

Status MetricsRegistry::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::string MetricsRegistry::Render() const {
  std::vector<const Entry*> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& entry : entries_)
      if (entry->valid) entries.push_back(entry.get());
  }
  std::string out;
  for (const Entry* e : entries) {
    out += "# HELP " + e->name + " " + EscapeHelp(e->help) + "\n";
    out += "# TYPE " + e->name + " " + e->type + "\n";
    auto sample = [&](const std::string& suffix, const std::string& labels, double value) {
      out += e->name + suffix + labels + " " + FormatValue(value) + "\n";
    };
    const size_t n = e->label_names.size();
    if (e->collect) {
      e->collect([&](const std::vector<std::string>& values, double value) {
        sample("", LabelSet(e->label_names, Fit(values, n)), value);
      });
    } else if (e->counters) {
      std::lock_guard<std::mutex> lock(e->counters->mu_);
      for (const auto& [values, counter] : e->counters->children_)
        sample("", LabelSet(e->label_names, Fit(values, n)), static_cast<double>(counter->value()));
    } else if (e->gauges) {
      std::lock_guard<std::mutex> lock(e->gauges->mu_);
      for (const auto& [values, gauge] : e->gauges->children_)
        sample("", LabelSet(e->label_names, Fit(values, n)), gauge->value());
    } else if (e->histograms) {
      std::lock_guard<std::mutex> lock(e->histograms->mu_);
      for (const auto& [values, histogram] : e->histograms->children_) {
        const std::vector<std::string> fitted = Fit(values, n);
        const Histogram::Snapshot s = histogram->snapshot();
        for (size_t i = 0; i < s.bounds.size(); ++i)
          sample("_bucket", LabelSet(e->label_names, fitted, "le=\"" + FormatValue(s.bounds[i]) + "\""),
                 static_cast<double>(s.cumulative[i]));
        sample("_bucket", LabelSet(e->label_names, fitted, "le=\"+Inf\""), static_cast<double>(s.cumulative.back()));
        sample("_sum", LabelSet(e->label_names, fitted), s.sum);
        sample("_count", LabelSet(e->label_names, fitted), static_cast<double>(s.cumulative.back()));
      }
    }
  }
  return out;
}

}  // namespace sd
