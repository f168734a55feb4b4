#include "server/round_inputs.h"

#include <algorithm>
#include <set>

#include "common/eval/student_eval.h"
#include "server/long_term_memory.h"
#include "server/server_config.h"

namespace sd {

RoundWindowSizes RoundWindowsOf(const ServerConfig& config) {
  RoundWindowSizes sizes;
  sizes.replay_frames = config.round.replay_frames;
  sizes.validation_frames = config.validation_frames;
  sizes.memory_frames = config.memory_frames;
  sizes.longterm_validation_frames = config.longterm_validation_frames;
  sizes.memory_history = config.memory_history;
  return sizes;
}

FrameHistory HistoryOf(const FrameStore& store) {
  FrameHistory history;
  history.recent = [&store](const std::string& device, bool validation, int n) {
    return store.Recent(device, validation, n);
  };
  history.older = [&store](const std::string& device, bool validation, uint64_t before, int n) {
    return store.Older(device, validation, before, n);
  };
  return history;
}

StatusOr<RoundRecords> SelectRoundRecords(const FrameHistory& history, const std::vector<std::string>& members,
                                          const RoundWindowSizes& sizes) {
  const int n = std::max<int>(1, members.size());
  auto each = [n](int total) { return (total + n - 1) / n; };
  RoundRecords records;
  for (const std::string& member : members) {
    SD_ASSIGN_OR_RETURN(auto train, history.recent(member, false, each(sizes.replay_frames)));
    SD_ASSIGN_OR_RETURN(auto val, history.recent(member, true, each(sizes.validation_frames)));
    // The long-term memory comes from before the recent windows, chosen to cover the looks
    // the recent frames do not.
    if (!train.empty() && sizes.memory_frames > 0) {
      SD_ASSIGN_OR_RETURN(auto older, history.older(member, false, train.front().sequence, sizes.memory_history));
      auto chosen = ChooseLongTermFrames(older, train, each(sizes.memory_frames));
      records.memory.insert(records.memory.end(), chosen.begin(), chosen.end());
    }
    if (!val.empty() && sizes.longterm_validation_frames > 0) {
      SD_ASSIGN_OR_RETURN(auto older, history.older(member, true, val.front().sequence, sizes.memory_history));
      auto chosen = ChooseLongTermFrames(older, val, each(sizes.longterm_validation_frames));
      records.longterm_validation.insert(records.longterm_validation.end(), chosen.begin(), chosen.end());
    }
    records.train.insert(records.train.end(), train.begin(), train.end());
    records.validation.insert(records.validation.end(), val.begin(), val.end());
  }
  return records;
}

StatusOr<RoundInputs> LoadRoundInputs(const FrameStore& store, const std::vector<std::string>& members,
                                      const RoundRecords& records, const StudentArchitecture& arch,
                                      float train_scale, DecodedFrameCache* cache) {
  // Training frames keep what augmentation can use, validation frames what inference does.
  RoundInputs inputs;
  SD_ASSIGN_OR_RETURN(auto train, cache->Load(store, records.train, arch, train_scale));
  inputs.train = ToTrainingSamples(train);
  SD_ASSIGN_OR_RETURN(inputs.validation, cache->Load(store, records.validation, arch, 1.0f));
  SD_ASSIGN_OR_RETURN(auto memory, cache->Load(store, records.memory, arch, train_scale));
  inputs.memory.replay = ToTrainingSamples(memory);
  SD_ASSIGN_OR_RETURN(inputs.memory.validation, cache->Load(store, records.longterm_validation, arch, 1.0f));
  // The members' frames that left the windows go; other units' frames stay.
  std::set<FrameKey> used;
  for (const auto* window : {&records.train, &records.validation, &records.memory, &records.longterm_validation})
    for (const FrameRecord& r : *window) used.insert({r.device_id, r.sequence});
  cache->KeepOnly(members, used);
  return inputs;
}

}  // namespace sd
