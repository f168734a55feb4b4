#include "edge/sampler.h"

#include <chrono>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace sd {
namespace {

constexpr double kFps = 30;

Detections WithScores(std::initializer_list<float> scores) {
  Detections out;
  for (float s : scores) out.push_back({{0, 0, 10, 10}, s, 0});
  return out;
}

std::unique_ptr<Sampler> Make(const SamplerOptions& options) {
  StatusOr<std::unique_ptr<Sampler>> s = CreateSampler(options);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

// Frame i of a 30 fps stream with one detection of `score`.
struct Stream {
  explicit Stream(bool from_server = true) : from_server(from_server) {}
  bool Next(Sampler* sampler, std::optional<float> score) {
    dets = score ? WithScores({*score}) : Detections{};
    FrameFeatures f;
    f.index = index;
    f.time_s = static_cast<double>(index) / kFps + offset_s;
    f.detections = &dets;
    f.model_from_server = from_server;
    ++index;
    return sampler->Consider(f);
  }
  int64_t index = 0;
  double offset_s = 0;
  bool from_server;
  Detections dets;
};

SamplerOptions TakeEverything() {
  SamplerOptions o;
  o.uniform_probability = 1.0;
  return o;
}

TEST(ImageScoreTest, Aggregates) {
  const Detections d = WithScores({0.2f, 0.9f, 0.4f});
  EXPECT_FLOAT_EQ(*ImageScore(d, ScoreAggregate::kMax), 0.9f);
  EXPECT_FLOAT_EQ(*ImageScore(d, ScoreAggregate::kMin), 0.2f);
  EXPECT_FLOAT_EQ(*ImageScore(d, ScoreAggregate::kMean), 0.5f);
  EXPECT_FLOAT_EQ(*ImageScore(d, ScoreAggregate::kSum), 1.5f);
  EXPECT_FLOAT_EQ(*ImageScore(WithScores({0.7f}), ScoreAggregate::kMean), 0.7f);
  for (ScoreAggregate a : {ScoreAggregate::kMax, ScoreAggregate::kMin, ScoreAggregate::kMean, ScoreAggregate::kSum}) {
    EXPECT_FALSE(ImageScore({}, a).has_value()) << ScoreAggregateName(a);
    StatusOr<ScoreAggregate> parsed = ParseScoreAggregate(ScoreAggregateName(a));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_FALSE(ParseScoreAggregate("median").ok());
}

TEST(SamplerOptionsTest, Validation) {
  EXPECT_TRUE(SamplerOptions().Validate().ok());
  auto invalid = [](auto mutate) {
    SamplerOptions o;
    mutate(o);
    Status s = o.Validate();
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_FALSE(CreateSampler(o).ok());
    return s.message();
  };
  EXPECT_NE(invalid([](SamplerOptions& o) { o.strategy = "bogus"; }).find("bogus"), std::string::npos);
  invalid([](SamplerOptions& o) { o.budget_per_minute = -1; });
  invalid([](SamplerOptions& o) { o.budget_per_minute = NAN; });
  invalid([](SamplerOptions& o) { o.budget_total = -5; });
  invalid([](SamplerOptions& o) { o.uniform_probability = 1.5; });
  invalid([](SamplerOptions& o) { o.uniform_probability = NAN; });
  invalid([](SamplerOptions& o) { o.uniform_every = -1; });
  invalid([](SamplerOptions& o) { o.percentile = 101; });
  invalid([](SamplerOptions& o) { o.warmup_frames = -1; });
  invalid([](SamplerOptions& o) { o.window_frames = 0; });
  invalid([](SamplerOptions& o) { o.aggregate = static_cast<ScoreAggregate>(42); });
  SamplerOptions ok;
  ok.strategy = "top_confidence";
  ok.budget_per_minute = 0;
  ok.percentile = 0;
  ok.warmup_frames = 0;
  ok.window_frames = 1;
  EXPECT_TRUE(ok.Validate().ok());
}

TEST(SamplerBudgetTest, RateRespectedOverSimulatedMinutes) {
  for (double per_minute : {6.0, 12.0, 60.0}) {
    SamplerOptions o = TakeEverything();
    o.budget_per_minute = per_minute;
    std::unique_ptr<Sampler> s = Make(o);
    Stream stream;
    const int minutes = 10;
    std::vector<int> per_minute_taken(minutes, 0);
    for (int i = 0; i < minutes * 60 * kFps; ++i) {
      if (stream.Next(s.get(), 0.5f)) ++per_minute_taken[static_cast<size_t>(i / (60 * kFps))];
    }
    const double burst = std::max(1.0, per_minute / 6);
    // Everything is wanted, so the bucket alone decides: the burst, then the rate.
    EXPECT_LE(s->taken(), burst + per_minute * minutes) << per_minute;
    EXPECT_GE(s->taken(), per_minute * minutes - 1) << per_minute;
    EXPECT_LE(per_minute_taken[0], burst + per_minute) << per_minute;
    for (int m = 1; m < minutes; ++m) EXPECT_NEAR(per_minute_taken[m], per_minute, 1.0) << per_minute << " min " << m;
  }
}

TEST(SamplerBudgetTest, BurstIsLimitedAfterAQuietSpell) {
  SamplerOptions o = TakeEverything();
  o.budget_per_minute = 60;  // one a second, bursts of 10
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  // Start: the bucket is full, the first 10 frames go, then one per second.
  int first_second = 0;
  for (int i = 0; i < kFps; ++i) first_second += stream.Next(s.get(), 0.5f);
  EXPECT_EQ(first_second, 10);
  // Five quiet minutes (no frames), then a rush of 30 frames within one second: only the
  // burst, not five minutes' worth of budget.
  stream.offset_s = 300;
  int rush = 0;
  for (int i = 0; i < kFps; ++i) rush += stream.Next(s.get(), 0.5f);
  EXPECT_EQ(rush, 10);
  // A low budget still allows one frame (burst = max(1, 6 / 6)).
  o.budget_per_minute = 2;
  s = Make(o);
  Stream slow;
  int taken = 0;
  for (int i = 0; i < 10 * kFps; ++i) taken += slow.Next(s.get(), 0.5f);
  EXPECT_EQ(taken, 1);  // 10 s at 2/min refills a third of a token
  for (int i = 0; i < 21 * kFps; ++i) taken += slow.Next(s.get(), 0.5f);
  EXPECT_EQ(taken, 2);  // a token a 30 s: one more at t = 30 s
  // Time going backwards (a looping source) neither crashes nor mints tokens.
  slow.offset_s = -1000;
  for (int i = 0; i < 5 * kFps; ++i) taken += slow.Next(s.get(), 0.5f);
  EXPECT_LE(taken, 3);
}

TEST(SamplerBudgetTest, TotalBudgetAndNoRateLimit) {
  SamplerOptions o = TakeEverything();
  o.budget_per_minute = 0;  // no rate limit
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(stream.Next(s.get(), 0.5f));
  EXPECT_EQ(s->taken(), 1000);

  o.budget_total = 25;
  s = Make(o);
  Stream capped;
  int taken = 0;
  for (int i = 0; i < 1000; ++i) taken += capped.Next(s.get(), 0.5f);
  EXPECT_EQ(taken, 25);
  EXPECT_EQ(s->taken(), 25);
}

TEST(UniformSamplerTest, ProbabilityWithSeedIsReproducible) {
  SamplerOptions o;
  o.budget_per_minute = 0;
  o.uniform_probability = 0.1;
  o.seed = 123;
  const int n = 100000;
  auto picks = [&](const SamplerOptions& options) {
    std::unique_ptr<Sampler> s = Make(options);
    Stream stream;
    std::vector<bool> out;
    for (int i = 0; i < n; ++i) out.push_back(stream.Next(s.get(), std::nullopt));
    return out;
  };
  const std::vector<bool> a = picks(o);
  const int64_t count = std::count(a.begin(), a.end(), true);
  // Binomial sd = sqrt(n p (1 - p)) ~ 95: 5 sd.
  EXPECT_NEAR(static_cast<double>(count) / n, 0.1, 0.005);
  EXPECT_EQ(picks(o), a);  // same seed, same frames
  o.seed = 124;
  EXPECT_NE(picks(o), a);
  o.uniform_probability = 0;
  const std::vector<bool> none = picks(o);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
}

TEST(UniformSamplerTest, EveryKthIsExact) {
  SamplerOptions o;
  o.budget_per_minute = 0;
  o.uniform_every = 10;
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  std::vector<int64_t> taken;
  for (int i = 0; i < 1000; ++i) {
    if (stream.Next(s.get(), std::nullopt)) taken.push_back(i);
  }
  ASSERT_EQ(taken.size(), 100u);
  for (size_t k = 0; k < taken.size(); ++k) EXPECT_EQ(taken[k], static_cast<int64_t>(10 * k));
}

TEST(TopConfidenceSamplerTest, TakesOnlyHighScoresAfterWarmup) {
  SamplerOptions o;
  o.strategy = "top_confidence";
  o.budget_per_minute = 0;
  o.percentile = 90;
  o.warmup_frames = 100;
  o.window_frames = 600;
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  int taken = 0;
  float lowest_taken = 1;
  for (int i = 0; i < 6000; ++i) {
    const float score = uniform(rng);
    const bool take = stream.Next(s.get(), score);
    if (i < 100) {
      EXPECT_FALSE(take) << "taken during warm-up at " << i;
      continue;
    }
    if (take) {
      ++taken;
      lowest_taken = std::min(lowest_taken, score);
    }
  }
  // ~10% of the post-warm-up frames, all from the top of the distribution.
  EXPECT_NEAR(taken / 5900.0, 0.10, 0.02);
  EXPECT_GT(lowest_taken, 0.8f);
}

TEST(TopConfidenceSamplerTest, ThresholdFollowsAShiftedScoreDistribution) {
  SamplerOptions o;
  o.strategy = "top_confidence";
  o.budget_per_minute = 0;
  o.warmup_frames = 50;
  o.window_frames = 600;
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> low(0.1f, 0.4f), high(0.6f, 0.9f);
  for (int i = 0; i < 3000; ++i) stream.Next(s.get(), low(rng));
  // The scene changes: every score jumps. Right after the change everything beats the old
  // threshold; once the window has turned over, only the top 10% of the new scores pass.
  int taken_first_100 = 0, taken_late = 0, late = 0;
  float lowest_late = 1;
  for (int i = 0; i < 3000; ++i) {
    const float score = high(rng);
    const bool take = stream.Next(s.get(), score);
    if (i < 100) taken_first_100 += take;
    if (i >= 600) {
      ++late;
      if (take) {
        ++taken_late;
        lowest_late = std::min(lowest_late, score);
      }
    }
  }
  EXPECT_GT(taken_first_100, 80);
  EXPECT_NEAR(static_cast<double>(taken_late) / late, 0.10, 0.02);
  EXPECT_GT(lowest_late, 0.85f);  // 90th percentile of U(0.6, 0.9) = 0.87
}

TEST(TopConfidenceSamplerTest, FramesWithoutDetectionsAreNeverTaken) {
  SamplerOptions o;
  o.strategy = "top_confidence";
  o.budget_per_minute = 0;
  o.percentile = 0;  // any scored frame passes
  o.warmup_frames = 0;
  std::unique_ptr<Sampler> s = Make(o);
  Stream stream;
  for (int i = 0; i < 200; ++i) {
    if (i % 2 == 0) {
      EXPECT_FALSE(stream.Next(s.get(), std::nullopt)) << i;
    } else {
      EXPECT_TRUE(stream.Next(s.get(), 0.3f)) << i;
    }
  }
  // A null detections pointer and a NaN score count as "no detection" too.
  FrameFeatures f;
  f.model_from_server = true;
  EXPECT_FALSE(s->Consider(f));
  Detections nan = WithScores({NAN});
  f.detections = &nan;
  EXPECT_FALSE(s->Consider(f));
  EXPECT_EQ(s->taken(), 100);
}

TEST(TopConfidenceSamplerTest, ColdStartSamplesUniformly) {
  SamplerOptions o;
  o.strategy = "top_confidence";
  o.budget_per_minute = 0;
  o.uniform_every = 5;
  o.warmup_frames = 10;
  std::unique_ptr<Sampler> s = Make(o);
  Stream cold(/*from_server=*/false);
  int taken = 0;
  // Before the server's first model: every 5th frame, detections or not, low score or not.
  for (int i = 0; i < 100; ++i) {
    const bool take = cold.Next(s.get(), i % 3 == 0 ? std::nullopt : std::optional<float>(0.01f));
    EXPECT_EQ(take, i % 5 == 0) << i;
    taken += take;
  }
  EXPECT_EQ(taken, 20);
  // With the server's model, top_confidence takes over; the cold-start scores did not count
  // towards its warm-up.
  Stream warm(/*from_server=*/true);
  warm.index = cold.index;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(warm.Next(s.get(), 0.99f)) << "warm-up " << i;
  EXPECT_TRUE(warm.Next(s.get(), 0.999f));
  EXPECT_FALSE(warm.Next(s.get(), std::nullopt));
  EXPECT_FALSE(warm.Next(s.get(), 0.01f));

  // The probabilistic cold start, also under the rate budget.
  o.uniform_every = 0;
  o.uniform_probability = 0.2;
  o.budget_per_minute = 0;
  s = Make(o);
  Stream cold2(false);
  int n = 0;
  for (int i = 0; i < 20000; ++i) n += cold2.Next(s.get(), std::nullopt);
  EXPECT_NEAR(n / 20000.0, 0.2, 0.015);
  o.budget_per_minute = 6;
  s = Make(o);
  Stream cold3(false);
  n = 0;
  for (int i = 0; i < 5 * 60 * kFps; ++i) n += cold3.Next(s.get(), std::nullopt);
  EXPECT_LE(n, 31);  // 1 + 6/min over 5 min
  EXPECT_GE(n, 29);
}

TEST(TopConfidenceSamplerTest, PerFrameCostIsSmall) {
  SamplerOptions o;
  o.strategy = "top_confidence";
  o.budget_per_minute = 6;
  o.window_frames = 600;
  std::unique_ptr<Sampler> s = Make(o);
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  // Pre-built frames with 5 detections each: the timing covers the sampler only.
  std::vector<Detections> frames(1000);
  for (Detections& d : frames) {
    d = WithScores({uniform(rng), uniform(rng), uniform(rng), uniform(rng), uniform(rng)});
  }
  const int n = 200000;
  int taken = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    FrameFeatures f;
    f.index = i;
    f.time_s = i / kFps;
    f.detections = &frames[static_cast<size_t>(i) % frames.size()];
    f.model_from_server = true;
    taken += s->Consider(f);
  }
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / n;
  std::printf("[ timing ] top_confidence (window 600, 5 detections/frame): %.3f us/frame, %d taken\n", us, taken);
  EXPECT_LT(us, 50.0);
  EXPECT_GT(taken, 0);
}

}  // namespace
}  // namespace sd
