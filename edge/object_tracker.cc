#include "edge/object_tracker.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace sd {

Status TrackerOptions::Validate() const {
  if (!(match_iou > 0 && match_iou <= 1)) return Status::InvalidArgument("match_iou: must be in (0, 1]");
  if (end_after_frames < 0) return Status::InvalidArgument("end_after_frames: must be >= 0 (0: not by frames)");
  if (!(end_after_s >= 0)) return Status::InvalidArgument("end_after_s: must be >= 0 (0: not by time)");
  if (end_after_frames == 0 && end_after_s == 0)
    return Status::InvalidArgument("end_after_frames: end_after_frames and end_after_s are both 0: no track would end");
  if (!(update_interval_s >= 0)) return Status::InvalidArgument("update_interval_s: must be >= 0");
  if (!(update_box_iou >= 0 && update_box_iou <= 1)) return Status::InvalidArgument("update_box_iou: must be in [0, 1]");
  if (!(update_score_change > 0)) return Status::InvalidArgument("update_score_change: must be > 0");
  return Status::Ok();
}

const char* ObjectEventKindName(ObjectEventKind kind) {
  switch (kind) {
    case ObjectEventKind::kNew:
      return "new";
    case ObjectEventKind::kUpdate:
      return "update";
    case ObjectEventKind::kEnd:
      return "end";
  }
  return "?";
}

ObjectEvent ObjectTracker::EventOf(const Track& track, ObjectEventKind kind, int64_t frame, double time_s) const {
  ObjectEvent event = track.last;
  event.kind = kind;
  event.frame = frame;
  event.time_s = time_s;
  return event;
}

void ObjectTracker::Observe(int64_t frame, double time_s, uint64_t model_version, const Detections& detections,
                            const std::vector<std::vector<std::string>>* zones, std::vector<ObjectEvent>* events) {
  // Every same-class (track, detection) pair that overlaps enough, best first; ties by track id,
  // then detection order, so that the result never depends on anything but the input.
  std::vector<std::tuple<float, size_t, size_t>> pairs;
  for (size_t t = 0; t < tracks_.size(); ++t) {
    for (size_t d = 0; d < detections.size(); ++d) {
      if (detections[d].class_id != tracks_[t].last.class_id) continue;
      const float iou = IoU(tracks_[t].last.box, detections[d].box);
      if (iou >= options_.match_iou) pairs.emplace_back(iou, t, d);
    }
  }
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
  std::vector<int> track_of(detections.size(), -1);
  std::vector<bool> track_taken(tracks_.size(), false);
  for (const auto& [iou, t, d] : pairs) {
    if (track_taken[t] || track_of[d] >= 0) continue;
    track_taken[t] = true;
    track_of[d] = static_cast<int>(t);
  }

  // Tracks not seen on this frame: ended once unseen long enough.
  std::vector<Track> open;
  open.reserve(tracks_.size());
  std::vector<int> moved(tracks_.size(), -1);  // old index -> index in `open`
  for (size_t t = 0; t < tracks_.size(); ++t) {
    Track& track = tracks_[t];
    if (!track_taken[t]) {
      ++track.missed;
      const bool by_frames = options_.end_after_frames > 0 && track.missed >= options_.end_after_frames;
      const bool by_time = options_.end_after_s > 0 && time_s - track.last_seen_s >= options_.end_after_s;
      if (by_frames || by_time) {
        events->push_back(EventOf(track, ObjectEventKind::kEnd, frame, time_s));
        continue;
      }
    }
    moved[t] = static_cast<int>(open.size());
    open.push_back(std::move(track));
  }
  tracks_ = std::move(open);

  static const std::vector<std::string> kNoZones;
  for (size_t d = 0; d < detections.size(); ++d) {
    const Detection& det = detections[d];
    const std::vector<std::string>& det_zones = zones != nullptr && d < zones->size() ? (*zones)[d] : kNoZones;
    if (track_of[d] < 0) {
      Track track;
      track.last.track_id = next_id_++;
      track.last.class_id = det.class_id;
      track.last.box = det.box;
      track.last.score = det.score;
      track.last.top_score = det.score;
      track.last.zones = det_zones;
      track.last.model_version = model_version;
      track.last.start_time_s = time_s;
      track.last_seen_s = time_s;
      track.sent_box = det.box;
      track.sent_score = det.score;
      track.sent_time_s = time_s;
      events->push_back(EventOf(track, ObjectEventKind::kNew, frame, time_s));
      tracks_.push_back(std::move(track));
      continue;
    }
    Track& track = tracks_[static_cast<size_t>(moved[static_cast<size_t>(track_of[d])])];
    const bool zones_changed = track.last.zones != det_zones;
    track.missed = 0;
    track.last_seen_s = time_s;
    track.last.box = det.box;
    track.last.score = det.score;
    track.last.top_score = std::max(track.last.top_score, det.score);
    track.last.zones = det_zones;
    track.last.model_version = model_version;
    // A zone entered or left is news at once (automations hang on it); a moved box or a changed
    // score waits out the interval, so a jittery detector does not flood the broker.
    const bool changed = IoU(track.sent_box, det.box) < options_.update_box_iou ||
                         std::fabs(det.score - track.sent_score) >= options_.update_score_change;
    const bool due = time_s - track.sent_time_s >= options_.update_interval_s;
    if (zones_changed || (changed && due)) {
      track.sent_box = det.box;
      track.sent_score = det.score;
      track.sent_time_s = time_s;
      events->push_back(EventOf(track, ObjectEventKind::kUpdate, frame, time_s));
    }
  }
}

void ObjectTracker::EndAll(int64_t frame, double time_s, std::vector<ObjectEvent>* events) {
  for (const Track& track : tracks_) events->push_back(EventOf(track, ObjectEventKind::kEnd, frame, time_s));
  tracks_.clear();
}

}  // namespace sd
