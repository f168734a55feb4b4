#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace sd {
namespace {

constexpr char kBaseline[] = "all_frames";

// Strategies in first-seen order, each with its rows grouped by budget.
struct Grouped {
  std::vector<std::string> strategies;
  std::map<std::string, std::map<int, std::vector<const RunRow*>>> by_strategy;
  std::vector<int> budgets;  // ascending, without the baseline's
};

Grouped Group(const std::vector<RunRow>& rows) {
  Grouped g;
  std::map<int, bool> budgets;
  for (const RunRow& r : rows) {
    if (!g.by_strategy.count(r.strategy)) g.strategies.push_back(r.strategy);
    g.by_strategy[r.strategy][r.budget].push_back(&r);
    if (r.strategy != kBaseline) budgets[r.budget] = true;
  }
  for (const auto& [b, unused] : budgets) g.budgets.push_back(b);
  return g;
}

template <typename Field>
Spread SpreadOfField(const std::vector<const RunRow*>& rows, Field field) {
  std::vector<double> values;
  for (const RunRow* r : rows) values.push_back(field(*r));
  return SpreadOf(values);
}

std::string Format(const char* format, double a, double b = 0) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, a, b);
  return buffer;
}

Status RunGnuplot(const std::string& script_path) {
  const std::string command = "gnuplot '" + script_path + "' 2>&1";
  if (std::system(command.c_str()) != 0)
    return Status::Unavailable("gnuplot failed or is missing (apt-get install gnuplot-nox); rerun: gnuplot " +
                               script_path);
  return Status::Ok();
}

}  // namespace

const char kStrategiesCsvHeader[] = "strategy,budget,seed,map50,map50_95,queried,uplink_bytes";

std::string StrategiesCsvHeader(const std::vector<std::string>& eval_sets) {
  std::string header = kStrategiesCsvHeader;
  for (const std::string& name : eval_sets) header += ",map50_" + name;
  return header;
}

std::string CsvLine(const RunRow& r) {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), "%s,%d,%llu,%.4f,%.4f,%lld,%lld", r.strategy.c_str(), r.budget,
                static_cast<unsigned long long>(r.seed), r.map50, r.map50_95, static_cast<long long>(r.queried),
                static_cast<long long>(r.uplink_bytes));
  std::string line = buffer;
  for (double m : r.set_map50) line += Format(",%.4f", m);
  return line;
}

std::optional<RunRow> ParseCsvLine(const std::string& line, size_t eval_sets) {
  RunRow r;
  char strategy[64];
  unsigned long long seed;
  long long queried, bytes;
  int consumed = 0;
  if (std::sscanf(line.c_str(), "%63[^,],%d,%llu,%lf,%lf,%lld,%lld%n", strategy, &r.budget, &seed, &r.map50,
                  &r.map50_95, &queried, &bytes, &consumed) != 7)
    return std::nullopt;
  r.strategy = strategy;
  r.seed = seed;
  r.queried = queried;
  r.uplink_bytes = bytes;
  std::istringstream rest(line.substr(consumed));
  std::string field;
  std::getline(rest, field, ',');  // empty: the text before the first extra comma
  while (std::getline(rest, field, ',')) {
    char* end = nullptr;
    const double value = std::strtod(field.c_str(), &end);
    if (end == field.c_str()) return std::nullopt;
    r.set_map50.push_back(value);
  }
  if (r.set_map50.size() != eval_sets) return std::nullopt;
  return r;
}

Spread SpreadOf(const std::vector<double>& values) {
  Spread s;
  s.n = static_cast<int>(values.size());
  if (s.n == 0) return s;
  for (double v : values) s.mean += v;
  s.mean /= s.n;
  if (s.n > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.stddev = std::sqrt(squares / (s.n - 1));
  }
  return s;
}

std::string StrategiesMarkdown(const std::string& title, const std::vector<RunRow>& rows, double stream_seconds,
                               double student_ms) {
  const Grouped g = Group(rows);
  std::ostringstream md;
  md << "### " << title << "\n\n";
  md << "mAP50 on the held-out frames, mean ± standard deviation over seeds (mAP50-95 below it).\n\n";
  md << "| strategy |";
  for (int b : g.budgets) md << " " << b << " frames |";
  md << "\n|---|";
  for (size_t i = 0; i < g.budgets.size(); ++i) md << "---|";
  md << "\n";
  for (const std::string& s : g.strategies) {
    if (s == kBaseline) continue;
    md << "| " << s << " |";
    for (int b : g.budgets) {
      auto it = g.by_strategy.at(s).find(b);
      if (it == g.by_strategy.at(s).end()) {
        md << " |";
        continue;
      }
      const Spread m50 = SpreadOfField(it->second, [](const RunRow& r) { return r.map50; });
      const Spread m95 = SpreadOfField(it->second, [](const RunRow& r) { return r.map50_95; });
      md << " " << Format("%.3f ± %.3f", m50.mean, m50.stddev) << "<br>" << Format("%.3f ± %.3f", m95.mean, m95.stddev)
         << " |";
    }
    md << "\n";
  }
  if (g.by_strategy.count(kBaseline)) {
    for (const auto& [budget, runs] : g.by_strategy.at(kBaseline)) {
      const Spread m50 = SpreadOfField(runs, [](const RunRow& r) { return r.map50; });
      const Spread m95 = SpreadOfField(runs, [](const RunRow& r) { return r.map50_95; });
      md << "\nAll " << budget << " frames (baseline): mAP50 " << Format("%.3f ± %.3f", m50.mean, m50.stddev)
         << ", mAP50-95 " << Format("%.3f ± %.3f", m95.mean, m95.stddev) << " (" << m50.n << " seeds).\n";
    }
  }

  md << "\nFrames sent and uplink (kbit/s over the stream's " << Format("%.0f", stream_seconds)
     << " s), mean over seeds; sampler cost per frame of the stream at 1 thread (the start student's"
     << " inference took " << Format("%.2f", student_ms) << " ms per frame in the same run):\n\n";
  md << "| strategy |";
  for (int b : g.budgets) md << " " << b << " |";
  md << " sampler µs/frame |\n|---|";
  for (size_t i = 0; i <= g.budgets.size(); ++i) md << "---|";
  md << "\n";
  for (const std::string& s : g.strategies) {
    if (s == kBaseline) continue;
    md << "| " << s << " |";
    std::vector<const RunRow*> all;
    for (int b : g.budgets) {
      auto it = g.by_strategy.at(s).find(b);
      if (it == g.by_strategy.at(s).end()) {
        md << " |";
        continue;
      }
      all.insert(all.end(), it->second.begin(), it->second.end());
      const Spread q = SpreadOfField(it->second, [](const RunRow& r) { return double(r.queried); });
      const Spread up = SpreadOfField(it->second, [](const RunRow& r) { return double(r.uplink_bytes); });
      md << " " << Format("%.0f", q.mean) << " fr, " << Format("%.0f", up.mean * 8 / 1000 / stream_seconds) << " kbit/s |";
    }
    const Spread cost = SpreadOfField(all, [](const RunRow& r) { return r.sampler_us_per_frame; });
    md << " " << Format("%.2f", cost.mean) << " |\n";
  }
  return md.str();
}

std::string EvalSetsMarkdown(const std::vector<RunRow>& rows, const std::vector<std::string>& eval_sets) {
  const Grouped g = Group(rows);
  std::ostringstream md;
  for (size_t set = 0; set < eval_sets.size(); ++set) {
    md << "\nmAP50 on `" << eval_sets[set] << "`, mean ± standard deviation over seeds:\n\n| strategy |";
    for (int b : g.budgets) md << " " << b << " frames |";
    md << "\n|---|";
    for (size_t i = 0; i < g.budgets.size(); ++i) md << "---|";
    md << "\n";
    for (const std::string& s : g.strategies) {
      md << "| " << s << " |";
      for (int b : g.budgets) {
        // The baseline's one budget (the whole stream) goes in every column.
        const auto& by_budget = g.by_strategy.at(s);
        auto it = s == kBaseline ? by_budget.begin() : by_budget.find(b);
        if (it == by_budget.end()) {
          md << " |";
          continue;
        }
        std::vector<double> values;
        for (const RunRow* r : it->second)
          if (set < r->set_map50.size()) values.push_back(r->set_map50[set]);
        const Spread m = SpreadOf(values);
        md << " " << Format("%.3f ± %.3f", m.mean, m.stddev) << " |";
      }
      md << "\n";
    }
  }
  return md.str();
}

double TCritical5Percent(int df) {
  static const double kTable[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                  2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                  2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df < 1) return INFINITY;
  return df <= 30 ? kTable[df - 1] : 2.0;
}

std::string PairedDifferenceCell(const std::vector<double>& differences) {
  const Spread d = SpreadOf(differences);
  if (d.n < 2) return Format("%+.3f", d.mean) + " (n " + std::to_string(d.n) + ")";
  const double t = d.stddev > 0 ? d.mean / (d.stddev / std::sqrt(double(d.n))) : (d.mean != 0 ? INFINITY : 0);
  const bool significant = std::abs(t) > TCritical5Percent(d.n - 1);
  const std::string cell = Format("%+.3f ± %.3f", d.mean, d.stddev);
  return (significant ? "**" + cell + "**" : cell) + " (t " + Format("%.1f", t) + ")";
}

std::string PairedDifferencesMarkdown(const std::vector<RunRow>& rows, const std::string& reference) {
  const Grouped g = Group(rows);
  if (!g.by_strategy.count(reference)) return "";
  std::ostringstream md;
  md << "\nmAP50 minus `" << reference << "`'s at the same budget and seed: mean ± standard deviation of the "
     << "differences over the n seeds both ran; **bold** where a paired t-test at 5% (two-sided) finds the mean "
     << "non-zero, i.e. |mean| > t(n-1) · std / √n:\n\n| strategy |";
  for (int b : g.budgets) md << " " << b << " frames |";
  md << "\n|---|";
  for (size_t i = 0; i < g.budgets.size(); ++i) md << "---|";
  md << "\n";
  const auto& reference_rows = g.by_strategy.at(reference);
  for (const std::string& s : g.strategies) {
    if (s == reference || s == kBaseline) continue;
    md << "| " << s << " |";
    for (int b : g.budgets) {
      auto mine = g.by_strategy.at(s).find(b);
      auto theirs = reference_rows.find(b);
      if (mine == g.by_strategy.at(s).end() || theirs == reference_rows.end()) {
        md << " |";
        continue;
      }
      std::map<uint64_t, double> reference_by_seed;
      for (const RunRow* r : theirs->second) reference_by_seed[r->seed] = r->map50;
      std::vector<double> differences;
      for (const RunRow* r : mine->second)
        if (reference_by_seed.count(r->seed)) differences.push_back(r->map50 - reference_by_seed[r->seed]);
      md << " " << PairedDifferenceCell(differences) << " |";
    }
    md << "\n";
  }
  return md.str();
}

StatusOr<std::vector<RunRow>> ReadStrategiesCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::string header;
  std::getline(in, header);
  const std::string base = kStrategiesCsvHeader;
  if (header.compare(0, base.size(), base) != 0)
    return Status::InvalidArgument(path + ": not a strategies.csv header: '" + header + "'");
  const auto eval_sets = static_cast<size_t>(std::count(header.begin() + base.size(), header.end(), ','));
  std::vector<RunRow> rows;
  std::string line;
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    auto row = ParseCsvLine(line, eval_sets);
    if (!row) return Status::InvalidArgument(path + ":" + std::to_string(number) + ": not a run: '" + line + "'");
    rows.push_back(std::move(*row));
  }
  return rows;
}

namespace {

const std::vector<const RunRow*>* RunsOf(const Grouped& g, const std::string& strategy, int budget) {
  auto by_budget = g.by_strategy.find(strategy);
  if (by_budget == g.by_strategy.end()) return nullptr;
  auto runs = by_budget->second.find(budget);
  return runs == by_budget->second.end() ? nullptr : &runs->second;
}

// One stream's mean of the seed-paired mAP50 differences of `strategy` from `reference`, and
// the strategy's mean frames sent in those seeds; nullopt when no seed has both.
struct StreamDifference {
  double map50 = 0, sent = 0;
};
std::optional<StreamDifference> DifferenceInStream(const Grouped& g, const std::string& strategy,
                                                   const std::string& reference, int budget) {
  const auto* mine = RunsOf(g, strategy, budget);
  const auto* theirs = RunsOf(g, reference, budget);
  if (!mine || !theirs) return std::nullopt;
  std::vector<double> differences, sent;
  for (const RunRow* m : *mine)
    for (const RunRow* t : *theirs)
      if (m->seed == t->seed) {
        differences.push_back(m->map50 - t->map50);
        sent.push_back(static_cast<double>(m->queried));
      }
  if (differences.empty()) return std::nullopt;
  return StreamDifference{SpreadOf(differences).mean, SpreadOf(sent).mean};
}

}  // namespace

std::string AcrossStreamsMarkdown(const std::vector<StreamRuns>& streams, const std::string& reference) {
  std::vector<Grouped> grouped;
  for (const StreamRuns& stream : streams) grouped.push_back(Group(stream.rows));
  // Strategies in first-seen order over the streams; budgets ascending.
  std::vector<std::string> strategies;
  std::map<int, bool> budgets;
  for (const Grouped& g : grouped) {
    for (const std::string& s : g.strategies)
      if (s != reference && s != kBaseline && std::find(strategies.begin(), strategies.end(), s) == strategies.end())
        strategies.push_back(s);
    for (int b : g.budgets) budgets[b] = true;
  }
  std::ostringstream md;
  md << "mAP50 of `" << reference << "` per stream (mean over seeds), then each strategy minus `" << reference
     << "`, paired by seed and averaged within each stream; the mean ± std over streams is **bold** where a t-test "
     << "with the streams as replicates finds it non-zero at 5%:\n\n| strategy | budget |";
  for (const StreamRuns& stream : streams) md << " " << stream.name << " |";
  md << " mean ± std over streams (t) | streams | sent |\n|---|---|";
  for (size_t i = 0; i < streams.size() + 3; ++i) md << "---|";
  md << "\n";
  for (const auto& [budget, unused] : budgets) {
    md << "| " << reference << " | " << budget << " |";
    for (const Grouped& g : grouped) {
      const auto* runs = RunsOf(g, reference, budget);
      md << " " << (runs ? Format("%.3f", SpreadOfField(*runs, [](const RunRow& r) { return r.map50; }).mean) : "-")
         << " |";
    }
    md << " | | |\n";
  }
  for (const auto& [budget, unused] : budgets) {
    for (const std::string& s : strategies) {
      std::vector<double> per_stream, sent;
      std::string cells;
      for (const Grouped& g : grouped) {
        const auto d = DifferenceInStream(g, s, reference, budget);
        cells += d ? " " + Format("%+.3f", d->map50) + " |" : " - |";
        if (!d) continue;
        per_stream.push_back(d->map50);
        sent.push_back(d->sent);
      }
      if (per_stream.empty()) continue;
      md << "| " << s << " | " << budget << " |" << cells << " " << PairedDifferenceCell(per_stream) << " | "
         << per_stream.size() << " | " << Format("%.0f", SpreadOf(sent).mean) << " |\n";
    }
  }
  return md.str();
}

Status PlotStrategies(const std::string& dir, const std::string& stem, const std::string& title,
                      const std::vector<RunRow>& rows) {
  const Grouped g = Group(rows);
  const std::string data_path = dir + "/" + stem + ".dat";
  const std::string script_path = dir + "/" + stem + ".gp";
  std::ofstream data(data_path);
  std::vector<std::string> plotted;
  for (const std::string& s : g.strategies) {
    if (s == kBaseline) continue;
    data << "# " << s << "\n";
    for (const auto& [budget, runs] : g.by_strategy.at(s)) {
      const Spread m50 = SpreadOfField(runs, [](const RunRow& r) { return r.map50; });
      data << budget << " " << m50.mean << " " << m50.stddev << "\n";
    }
    data << "\n\n";  // gnuplot: the next data set (index)
    plotted.push_back(s);
  }
  double baseline = -1;
  if (g.by_strategy.count(kBaseline)) {
    std::vector<const RunRow*> runs;
    for (const auto& [budget, r] : g.by_strategy.at(kBaseline)) runs.insert(runs.end(), r.begin(), r.end());
    baseline = SpreadOfField(runs, [](const RunRow& r) { return r.map50; }).mean;
  }
  data.close();
  if (!data) return Status::IOError(data_path + ": cannot write");

  std::ofstream gp(script_path);
  gp << "set terminal pngcairo size 900,560 noenhanced\n"
     << "set output '" << dir << "/" << stem << ".png'\n"
     << "set title '" << title << "'\n"
     << "set xlabel 'frames queried (budget)'\nset ylabel 'held-out mAP50'\n"
     << "set logscale x 2\nset key outside right\nset grid\n"
     << "names = '";
  for (const std::string& s : plotted) gp << s << " ";
  gp << "'\nplot for [i=1:words(names)] '" << data_path
     << "' index (i-1) using 1:2:3 with yerrorlines title word(names, i)";
  if (baseline >= 0) gp << ", " << baseline << " with lines dashtype 2 lc rgb 'black' title 'all frames'";
  gp << "\n";
  gp.close();
  if (!gp) return Status::IOError(script_path + ": cannot write");
  return RunGnuplot(script_path);
}

const char kUpdatesCsvHeader[] = "encoding,fraction,seed,map50,downlink_bytes,updates,mean_update_bytes";

std::string CsvLine(const UpdateRow& r) {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), "%s,%.2f,%llu,%.4f,%lld,%d,%.0f", r.encoding.c_str(), r.fraction,
                static_cast<unsigned long long>(r.seed), r.map50, static_cast<long long>(r.downlink_bytes), r.updates,
                r.updates > 0 ? double(r.downlink_bytes) / r.updates : 0.0);
  return buffer;
}

namespace {

// (encoding, fraction) groups in first-seen order.
std::vector<std::pair<std::string, std::vector<const UpdateRow*>>> GroupUpdates(const std::vector<UpdateRow>& rows) {
  std::vector<std::pair<std::string, std::vector<const UpdateRow*>>> groups;
  for (const UpdateRow& r : rows) {
    const std::string name = r.encoding == "sparse" ? r.encoding + " f=" + Format("%.2f", r.fraction) : r.encoding;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == name; });
    if (it == groups.end()) it = groups.insert(groups.end(), {name, {}});
    it->second.push_back(&r);
  }
  return groups;
}

Spread SpreadOfUpdates(const std::vector<const UpdateRow*>& rows, double (*field)(const UpdateRow&)) {
  std::vector<double> values;
  for (const UpdateRow* r : rows) values.push_back(field(*r));
  return SpreadOf(values);
}

}  // namespace

std::string UpdatesMarkdown(const std::string& title, const std::vector<UpdateRow>& rows, double stream_seconds) {
  std::ostringstream md;
  md << "### " << title << "\n\n";
  md << "| encoding | mAP50 | mAP50-95 | updates | downlink bytes | downlink kbit/s | bytes per update |\n"
     << "|---|---|---|---|---|---|---|\n";
  for (const auto& [name, group] : GroupUpdates(rows)) {
    const Spread m50 = SpreadOfUpdates(group, [](const UpdateRow& r) { return r.map50; });
    const Spread m95 = SpreadOfUpdates(group, [](const UpdateRow& r) { return r.map50_95; });
    const Spread bytes = SpreadOfUpdates(group, [](const UpdateRow& r) { return double(r.downlink_bytes); });
    const Spread updates = SpreadOfUpdates(group, [](const UpdateRow& r) { return double(r.updates); });
    md << "| " << name << " | " << Format("%.3f ± %.3f", m50.mean, m50.stddev) << " | "
       << Format("%.3f ± %.3f", m95.mean, m95.stddev) << " | " << Format("%.1f", updates.mean) << " | "
       << Format("%.0f", bytes.mean) << " | " << Format("%.1f", bytes.mean * 8 / 1000 / stream_seconds) << " | "
       << Format("%.0f", updates.mean > 0 ? bytes.mean / updates.mean : 0) << " |\n";
  }
  return md.str();
}

Status PlotUpdates(const std::string& dir, const std::string& title, const std::vector<UpdateRow>& rows) {
  const std::string data_path = dir + "/updates.dat", script_path = dir + "/updates.gp";
  std::ofstream data(data_path);
  for (const auto& [name, group] : GroupUpdates(rows)) {
    const Spread m50 = SpreadOfUpdates(group, [](const UpdateRow& r) { return r.map50; });
    const Spread bytes = SpreadOfUpdates(group, [](const UpdateRow& r) { return double(r.downlink_bytes); });
    data << bytes.mean / 1000 << " " << m50.mean << " " << m50.stddev << " \"" << name << "\"\n";
  }
  data.close();
  if (!data) return Status::IOError(data_path + ": cannot write");
  std::ofstream gp(script_path);
  gp << "set terminal pngcairo size 900,560 noenhanced\n"
     << "set output '" << dir << "/updates.png'\n"
     << "set title '" << title << "'\n"
     << "set xlabel 'downlink over the run (kB, log scale)'\nset ylabel 'held-out mAP50'\n"
     << "set logscale x\nset grid\nset key off\nset offsets graph 0.05, graph 0.15, graph 0.05, graph 0.05\n"
     << "plot '" << data_path << "' using 1:2:3 with yerrorbars pt 7, '' using 1:2:4 with labels offset 0,1\n";
  gp.close();
  if (!gp) return Status::IOError(script_path + ": cannot write");
  return RunGnuplot(script_path);
}

}  // namespace sd
