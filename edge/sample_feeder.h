// Drives a Sampler for one stream: offers each frame, keeps what the sampler holds, forgets
// what it drops, and hands back what is to be sent now, in order. The edge (EdgeAgent, whose
// payload is the encoded frame) and the benchmark (bench/replay.cc, whose payload is the
// frame's stream position) both drive their samplers through it, so they cannot disagree on
// what a decision means.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "edge/sampler.h"

namespace sd {

template <typename Payload>
class SampleFeeder {
 public:
  explicit SampleFeeder(Sampler* sampler) : sampler_(sampler) {}

  // Offers `frame` (capture order) and appends to `send` the payloads to send now: the frame's
  // own when the sampler takes it, then those of held frames it releases. `make()` returns a
  // StatusOr<Payload> and is called only for a frame taken or held; its error is returned (a
  // frame held that way is then missing when released, and skipped), and the sampler's other
  // choices still stand.
  template <typename Make>
  Status Offer(const FrameFeatures& frame, Make&& make, std::vector<Payload>* send) {
    const SampleDecision decision = sampler_->Offer(frame);
    Status result;
    if (decision != SampleDecision::kSkip) {
      StatusOr<Payload> payload = make();
      if (!payload.ok()) {
        result = payload.status();
      } else if (decision == SampleDecision::kTake) {
        send->push_back(std::move(*payload));
      } else {
        held_.emplace(frame.index, std::move(*payload));
      }
    }
    // Also when this frame failed: the sampler's earlier choices stand.
    for (int64_t index : sampler_->TakeDropped()) held_.erase(index);
    for (int64_t index : sampler_->TakeReleased()) {
      auto it = held_.find(index);
      if (it == held_.end()) continue;  // its payload had failed (reported then)
      send->push_back(std::move(it->second));
      held_.erase(it);
    }
    return result;
  }

  Sampler* sampler() const { return sampler_; }
  size_t held() const { return held_.size(); }

 private:
  Sampler* sampler_;                  // not owned
  std::map<int64_t, Payload> held_;  // frame index -> payload; bounded by the sampler's holding
};

}  // namespace sd
