#include "bench/memory_rounds.h"

#include <algorithm>
#include <limits>
#include <cstdio>
#include <sstream>

#include "bench/arrival_history.h"
#include "bench/report.h"
#include "common/student/student.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"

namespace sd {

RoundOptions MemoryRunOptions::DefaultRound() {
  RoundOptions round;
  round.iterations = 40;
  round.replay_frames = 60;
  round.max_forgetting = 0.03;
  round.trainer = TrainerOptions();
  return round;
}

RoundWindowSizes MemoryRunOptions::DefaultWindows() {
  RoundWindowSizes windows;
  windows.replay_frames = 60;
  windows.validation_frames = 10;
  windows.memory_history = std::numeric_limits<int>::max();
  return windows;
}


StatusOr<std::vector<MemoryRoundRecord>> ReplayWithMemory(const std::string& start_weights,
                                                          const std::vector<ReceivedFrame>& received,
                                                          const MemoryRunOptions& options,
                                                          const std::map<std::string, std::vector<LabelledFrame>>& eval) {
  SD_ASSIGN_OR_RETURN(auto start, StudentModel::FromBytes(start_weights));
  RoundOptions round = options.round;
  round.replay_frames = options.windows.replay_frames;
  SD_ASSIGN_OR_RETURN(auto trainer, DeviceTrainer::Create("bench", start->architecture(), start_weights,
                                                          /*initial_version=*/1, round));
  auto to_sample = [&](const FrameRecord& r) { return received[r.sequence - 1].sample; };
  auto to_labelled = [&](const FrameRecord& r) {
    const TrainingSample& sample = received[r.sequence - 1].sample;
    return LabelledFrame{static_cast<int64_t>(r.sequence - 1), sample.bgr, sample.boxes};
  };
  std::vector<MemoryRoundRecord> records;
  for (size_t count = options.round_every; count <= received.size(); count += options.round_every) {
    SD_ASSIGN_OR_RETURN(RoundRecords chosen,
                        SelectRoundRecords(ArrivalHistory(count, options.validation_every,
                                                          [&received](size_t i) { return received[i].embedding; }),
                                           {"bench"},
                                           options.windows));
    std::vector<TrainingSample> train;
    std::vector<LabelledFrame> validation;
    LongTermMemory memory;
    for (const FrameRecord& r : chosen.train) train.push_back(to_sample(r));
    for (const FrameRecord& r : chosen.validation) validation.push_back(to_labelled(r));
    for (const FrameRecord& r : chosen.memory) memory.replay.push_back(to_sample(r));
    for (const FrameRecord& r : chosen.longterm_validation) memory.validation.push_back(to_labelled(r));

    SD_ASSIGN_OR_RETURN(RoundResult result, trainer->RunRound(train, validation, 0, memory));
    MemoryRoundRecord record;
    record.round = static_cast<int>(records.size()) + 1;
    record.received = static_cast<int>(count);
    record.condition = received[count - 1].condition;
    record.segment = received[count - 1].segment;
    record.published = result.published;
    record.reason = result.reason;
    for (const auto& [name, frames] : eval) {
      SD_ASSIGN_OR_RETURN(EvalResult scored, trainer->EvaluatePublished(frames));
      record.map50[name] = scored.map50;
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace sd

namespace sd {
namespace {

std::string Fmt(const char* format, double a, double b = 0) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, a, b);
  return buffer;
}

std::string MeanStd(const std::vector<double>& values) {
  const Spread s = SpreadOf(values);
  return s.n == 0 ? "-" : Fmt("%.3f ± %.3f", s.mean, s.stddev);
}

// A scored condition's segment that a change ends: its last round, and the last round before
// the condition is back (or the stream's last), by position in a run's rounds.
struct Lapse {
  std::string condition;
  int segment = 0;
  size_t before = 0, after = 0;
  int received_before = 0, received_after = 0;
};

std::vector<Lapse> Lapses(const std::vector<MemoryRoundRecord>& rounds, const std::vector<std::string>& eval_sets) {
  std::vector<Lapse> out;
  for (size_t i = 0; i + 1 < rounds.size(); ++i) {
    const MemoryRoundRecord& r = rounds[i];
    if (rounds[i + 1].segment == r.segment) continue;  // not the segment's last round
    if (std::find(eval_sets.begin(), eval_sets.end(), r.condition) == eval_sets.end()) continue;
    size_t j = i + 1;
    while (j + 1 < rounds.size() && rounds[j + 1].condition != r.condition) ++j;
    if (rounds[j].condition == r.condition) continue;  // back at once: nothing lapsed
    out.push_back({r.condition, r.segment, i, j, r.received, rounds[j].received});
  }
  return out;
}

}  // namespace

std::string MemoryMarkdown(const std::string& title, const std::vector<MemoryRun>& runs,
                           const std::vector<std::string>& eval_sets) {
  std::vector<std::string> modes;
  std::map<std::string, std::map<uint64_t, const MemoryRun*>> by_mode;
  for (const MemoryRun& run : runs) {
    if (!by_mode.count(run.mode)) modes.push_back(run.mode);
    by_mode[run.mode][run.seed] = &run;
  }
  std::ostringstream md;
  md << "### " << title << "\n\nmAP50 of the published student on each condition's held-out frames after the last "
     << "round, mean ± standard deviation over seeds:\n\n| mode | rounds published / discarded |";
  for (const std::string& set : eval_sets) md << " " << set << " |";
  md << " mean |\n|---|---|";
  for (size_t i = 0; i <= eval_sets.size(); ++i) md << "---|";
  md << "\n";
  for (const std::string& mode : modes) {
    std::vector<double> published, discarded, mean;
    std::map<std::string, std::vector<double>> final_map50;
    for (const auto& [seed, run] : by_mode[mode]) {
      if (run->rounds.empty()) continue;
      int p = 0;
      for (const MemoryRoundRecord& r : run->rounds) p += r.published;
      published.push_back(p);
      discarded.push_back(static_cast<double>(run->rounds.size()) - p);
      double sum = 0;
      for (const std::string& set : eval_sets) {
        const double v = run->rounds.back().map50.at(set);
        final_map50[set].push_back(v);
        sum += v;
      }
      mean.push_back(sum / std::max<size_t>(1, eval_sets.size()));
    }
    md << "| " << mode << " | " << Fmt("%.1f / %.1f", SpreadOf(published).mean, SpreadOf(discarded).mean) << " |";
    for (const std::string& set : eval_sets) md << " " << MeanStd(final_map50[set]) << " |";
    md << " " << MeanStd(mean) << " |\n";
  }

  // Forgetting: the lapses are the same in every run (the rounds fall at the same frames).
  const MemoryRun* any = runs.empty() ? nullptr : &runs.front();
  const std::vector<Lapse> lapses = any ? Lapses(any->rounds, eval_sets) : std::vector<Lapse>{};
  if (!lapses.empty() && modes.size() >= 2) {
    const std::string& reference = modes.front();
    md << "\nForgetting: each condition's mAP50 when its segment ends (\"before\") and at the last round before it "
       << "comes back or the stream ends (\"after\"), mean ± std over seeds; the last column is the drop with `"
       << modes.back() << "` minus the drop with `" << reference << "`, paired by seed (**bold**: a paired t-test at "
       << "5% finds it non-zero):\n\n| condition (frames received) |";
    for (const std::string& mode : modes) md << " " << mode << ": before → after |";
    md << " drop difference |\n|---|";
    for (size_t i = 0; i <= modes.size(); ++i) md << "---|";
    md << "\n";
    for (const Lapse& lapse : lapses) {
      md << "| " << lapse.condition << " (" << lapse.received_before << " → " << lapse.received_after << ") |";
      std::map<std::string, std::map<uint64_t, double>> drop;
      for (const std::string& mode : modes) {
        std::vector<double> before, after;
        for (const auto& [seed, run] : by_mode[mode]) {
          if (run->rounds.size() <= lapse.after) continue;
          const double b = run->rounds[lapse.before].map50.at(lapse.condition);
          const double a = run->rounds[lapse.after].map50.at(lapse.condition);
          before.push_back(b);
          after.push_back(a);
          drop[mode][seed] = b - a;
        }
        md << " " << MeanStd(before) << " → " << MeanStd(after) << " |";
      }
      std::vector<double> differences;
      for (const auto& [seed, d] : drop[modes.back()])
        if (drop[reference].count(seed)) differences.push_back(d - drop[reference][seed]);
      md << " " << PairedDifferenceCell(differences) << " |\n";
    }
  }
  return md.str();
}

}  // namespace sd
