#include "bench/memory_rounds.h"

#include "common/student.h"
#include "server/device_trainer.h"
#include "server/frame_store.h"
#include "server/long_term_memory.h"

namespace sd {
namespace {

// The records ChooseLongTermFrames works on: position in `received` as the sequence (+1).
std::vector<FrameRecord> Records(const std::vector<ReceivedFrame>& received, const std::vector<size_t>& positions) {
  std::vector<FrameRecord> out;
  out.reserve(positions.size());
  for (size_t p : positions) {
    FrameRecord r;
    r.sequence = p + 1;
    r.embedding = received[p].embedding;
    out.push_back(std::move(r));
  }
  return out;
}

// The newest `n` of `positions` (oldest first) and those before them.
void SplitNewest(const std::vector<size_t>& positions, int n, std::vector<size_t>* older, std::vector<size_t>* recent) {
  const size_t first = positions.size() > static_cast<size_t>(n) ? positions.size() - n : 0;
  older->assign(positions.begin(), positions.begin() + first);
  recent->assign(positions.begin() + first, positions.end());
}

}  // namespace

StatusOr<std::vector<MemoryRoundRecord>> ReplayWithMemory(const std::string& start_weights,
                                                          const std::vector<ReceivedFrame>& received,
                                                          const MemoryRunOptions& options,
                                                          const std::map<std::string, std::vector<LabelledFrame>>& eval) {
  SD_ASSIGN_OR_RETURN(auto start, StudentModel::FromBytes(start_weights));
  RoundOptions round;
  round.iterations = options.iterations;
  round.replay_frames = options.replay_frames;
  round.max_map50_drop = options.max_map50_drop;
  round.max_forgetting = options.max_forgetting;
  round.min_validation_frames = options.min_validation_frames;
  round.trainer = options.trainer;
  SD_ASSIGN_OR_RETURN(auto trainer, DeviceTrainer::Create("bench", start->architecture(), start_weights,
                                                          /*initial_version=*/1, round));
  auto to_sample = [&](size_t p) { return received[p].sample; };
  auto to_labelled = [&](size_t p) { return LabelledFrame{static_cast<int64_t>(p), received[p].sample.bgr,
                                                          received[p].sample.boxes}; };
  std::vector<MemoryRoundRecord> records;
  for (size_t count = options.round_every; count <= received.size(); count += options.round_every) {
    std::vector<size_t> train_positions, val_positions;
    for (size_t p = 0; p < count; ++p) ((p + 1) % options.validation_every == 0 ? val_positions : train_positions).push_back(p);
    std::vector<size_t> older_train, recent_train, older_val, recent_val;
    SplitNewest(train_positions, options.replay_frames, &older_train, &recent_train);
    SplitNewest(val_positions, options.validation_frames, &older_val, &recent_val);

    std::vector<TrainingSample> train;
    std::vector<LabelledFrame> validation;
    LongTermMemory memory;
    for (size_t p : recent_train) train.push_back(to_sample(p));
    for (size_t p : recent_val) validation.push_back(to_labelled(p));
    for (const FrameRecord& r : ChooseLongTermFrames(Records(received, older_train), Records(received, recent_train),
                                                     options.memory_frames))
      memory.replay.push_back(to_sample(r.sequence - 1));
    for (const FrameRecord& r : ChooseLongTermFrames(Records(received, older_val), Records(received, recent_val),
                                                     options.longterm_validation_frames))
      memory.validation.push_back(to_labelled(r.sequence - 1));

    SD_ASSIGN_OR_RETURN(RoundResult result, trainer->RunRound(train, validation, 0, memory));
    MemoryRoundRecord record;
    record.round = static_cast<int>(records.size()) + 1;
    record.received = static_cast<int>(count);
    record.condition = received[count - 1].condition;
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
