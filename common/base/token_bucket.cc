#include "common/base/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace sd {

TokenBucket::TokenBucket(double rate_per_s, double refill_s, double burst)
    : unlimited_(!(refill_s > 0) && (!(rate_per_s > 0) || !std::isfinite(rate_per_s))),
      rate_per_s_(rate_per_s),
      refill_s_(refill_s > 0 ? refill_s : 0),
      burst_(burst),
      tokens_(burst) {}

TokenBucket::TokenBucket(double rate_per_s, double burst) : TokenBucket(rate_per_s, 0, burst) {}

TokenBucket TokenBucket::WithRefillPeriod(double refill_s, double burst) {
  // refill_s <= 0: a rate of 0, which means no limit.
  return TokenBucket(0, refill_s, burst);
}

void TokenBucket::Advance(double now_s) {
  if (unlimited_) {
    tokens_ = burst_;
  } else if (has_last_ && now_s > last_s_) {
    const double elapsed = now_s - last_s_;
    tokens_ = std::min(burst_, tokens_ + (refill_s_ > 0 ? elapsed / refill_s_ : elapsed * rate_per_s_));
  }
  last_s_ = now_s;
  has_last_ = true;
}

bool TokenBucket::TryTake(double now_s, double n) {
  Advance(now_s);  // unlimited: full again
  if (tokens_ < n - 1e-9) return false;
  tokens_ -= n;
  return true;
}

void TokenBucket::SetRate(double rate_per_s, double burst) {
  const bool was_unlimited = unlimited_;
  unlimited_ = !(rate_per_s > 0) || !std::isfinite(rate_per_s);
  rate_per_s_ = rate_per_s;
  refill_s_ = 0;
  burst_ = burst;
  tokens_ = was_unlimited ? burst_ : std::min(tokens_, burst_);
}

void TokenBucket::Reset(double now_s) {
  tokens_ = burst_;
  last_s_ = now_s;
  has_last_ = true;
}

}  // namespace sd
