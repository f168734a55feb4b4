// A token bucket over a clock the caller passes in (seconds, any origin): tokens flow in at a
// rate up to `burst`, and each admitted event takes some. Time is an argument, never read
// here, so that a replay of recorded capture times and a test stepping time by hand behave
// exactly like a live clock. Not thread-safe: its owner locks.
#pragma once

namespace sd {

class TokenBucket {
 public:
  // `rate_per_s` tokens a second, at most `burst` saved up; starts full. A rate that is not
  // positive or is infinite means no limit: the bucket is full at every call (so every
  // TryTake of up to `burst` tokens succeeds).
  TokenBucket(double rate_per_s, double burst);
  // One token every `refill_s` seconds (refill_s <= 0: no limit), at most `burst` saved up;
  // starts full. The elapsed time is divided by the period, not multiplied by its inverse.
  static TokenBucket WithRefillPeriod(double refill_s, double burst);

  // Refills for the time passed since the previous call (the first call only sets the
  // reference). Time going backwards (a looping or restarted source) refills nothing and
  // becomes the new reference.
  void Advance(double now_s);
  // Advance(now_s), then takes `n` tokens if that many are there (a rounding slack of 1e-9, as
  // refills summed from many small steps must not lose a token).
  bool TryTake(double now_s, double n = 1);
  // Full again, with `now_s` as the reference.
  void Reset(double now_s);
  // A new rate and burst from now on (see the constructor); the tokens saved up are kept, up
  // to the new burst, so a change of rate is never a free burst.
  void SetRate(double rate_per_s, double burst);

  double tokens() const { return tokens_; }
  double burst() const { return burst_; }
  bool unlimited() const { return unlimited_; }

 private:
  TokenBucket(double rate_per_s, double refill_s, double burst);

  bool unlimited_;
  double rate_per_s_;  // used when refill_s_ is 0
  double refill_s_;    // > 0: seconds per token
  double burst_;
  double tokens_;
  double last_s_ = 0;
  bool has_last_ = false;
};

}  // namespace sd
