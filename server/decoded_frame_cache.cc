#include "server/decoded_frame_cache.h"

#include <iterator>

#include <opencv2/imgcodecs.hpp>

#include "common/student/student_trainer.h"

namespace sd {

DecodedFrameCache::DecodedFrameCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

StatusOr<std::vector<LabelledFrame>> DecodedFrameCache::Load(const FrameStore& store,
                                                             const std::vector<FrameRecord>& records,
                                                             const StudentArchitecture& arch, float scale) {
  std::vector<LabelledFrame> frames;
  frames.reserve(records.size());
  for (const FrameRecord& r : records) {
    Image image;
    if (!Find({r.device_id, r.sequence}, scale, &image)) {
      SD_ASSIGN_OR_RETURN(std::string jpeg, store.LoadImage(r));
      const cv::Mat stored = cv::imdecode(cv::Mat(1, jpeg.size(), CV_8UC1, jpeg.data()), cv::IMREAD_COLOR);
      if (stored.empty()) return Status::DataLoss(r.image_path + ": stored image cannot be decoded");
      image.key = {r.device_id, r.sequence};
      image.bgr = ShrinkForStudent({stored, {}}, arch, scale).bgr;
      image.scale = scale;
      image.scale_x = static_cast<float>(image.bgr.cols) / stored.cols;
      image.scale_y = static_cast<float>(image.bgr.rows) / stored.rows;
      image.bytes = static_cast<int64_t>(image.bgr.total() * image.bgr.elemSize());
      Insert(image);
    }
    LabelledFrame frame{r.frame_index, image.bgr, r.labels};
    ScaleDetections(&frame.labels, image.scale_x, image.scale_y);
    frames.push_back(std::move(frame));
  }
  return frames;
}

bool DecodedFrameCache::Find(const FrameKey& key, float scale, Image* found) {
  MutexLock lock(&mu_);
  auto at = index_.find(key);
  // A frame is loaded at one scale (training or held-out frames); another is decoded anew.
  if (at == index_.end() || at->second->scale != scale) {
    ++misses_;
    return false;
  }
  images_.splice(images_.begin(), images_, at->second);
  *found = *at->second;
  ++hits_;
  return true;
}

void DecodedFrameCache::Insert(const Image& image) {
  MutexLock lock(&mu_);
  // Another worker may have decoded the same frame meanwhile (a regroup beside a round), or it
  // was kept at another scale: the newest copy replaces it.
  if (auto at = index_.find(image.key); at != index_.end()) Erase(at);
  // An image larger than the whole budget would push out everything and still not fit.
  if (image.bytes > budget_bytes_) return;
  while (bytes_ + image.bytes > budget_bytes_) {
    Erase(index_.find(images_.back().key));
    ++evictions_;
  }
  images_.push_front(image);
  index_[image.key] = images_.begin();
  bytes_ += image.bytes;
}

void DecodedFrameCache::Erase(std::map<FrameKey, std::list<Image>::iterator>::iterator at) {
  bytes_ -= at->second->bytes;
  images_.erase(at->second);
  index_.erase(at);
}

void DecodedFrameCache::KeepOnly(const std::vector<std::string>& devices, const std::set<FrameKey>& keep) {
  MutexLock lock(&mu_);
  for (const std::string& device : devices) {
    auto at = index_.lower_bound({device, 0});
    while (at != index_.end() && at->first.first == device) {
      auto next = std::next(at);
      if (!keep.count(at->first)) Erase(at);
      at = next;
    }
  }
}

DecodedFrameCache::Stats DecodedFrameCache::stats() const {
  MutexLock lock(&mu_);
  Stats stats;
  stats.budget_bytes = budget_bytes_;
  stats.bytes = bytes_;
  stats.images = static_cast<int64_t>(index_.size());
  stats.hits = hits_;
  stats.misses = misses_;
  stats.evictions = evictions_;
  return stats;
}

}  // namespace sd
