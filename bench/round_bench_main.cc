// streamdistill-round-bench: what a server training round costs and where the time goes, on
// the main job's data (vtest.avi with the HOG teacher's cached labels, the server's student and
// round options). Not a test: it prints one JSON line per measurement, which
// docs/operations.md quotes with this command. Sections:
//   decode     one stored JPEG (quality 75, as the edge sends) decoded, ms
//   prepare    a step's 16 augmented samples from full-size frames vs from the frames the
//              server caches (ShrinkForStudent), ms per step
//   step       Adam steps on one thread from full-size vs cached frames, ms per step
//   pool       W rounds of different devices at once, each on T libtorch threads: steps/s of
//              the whole machine (the training pool's choice of workers x threads)
//   accuracy   rounds from the same start on full-size vs cached frames: held-out mAP50
//   memory     resident memory (VmRSS, VmHWM) of training units: a unit's student before and
//              after its first round (Adam's state), the peak of a round on one worker and on
//              two at once, what stays after them, and a unit's decoded frames
//   decoded    --memory-units units' rounds load their windows (the config's sizes, from 600
//              stored frames each, JPEGs as the edge sends them) through one decoded-frame
//              cache of --decoded-cache-mb, twice over: resident memory and the cache after each
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <malloc.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/teacher/label_cache.h"
#include "common/eval/student_eval.h"
#include "common/vision/appearance.h"
#include "server/decoded_frame_cache.h"
#include "server/frame_store.h"
#include "server/round_inputs.h"
#include "server/server_config.h"
#include "tools/tool_cli.h"

namespace sd {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// CPU seconds of the whole process: on a shared machine the work a step takes, whatever else
// runs (wall time says what the machine delivers).
double CpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

void Print(const nlohmann::json& line) { std::printf("%s\n", line.dump().c_str()); }

// A "Vm...:" line of /proc/self/status in MiB (VmRSS: resident now; VmHWM: the peak); -1 when
// it is not there.
double ProcStatusMb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::strtod(line.c_str() + field.size() + 1, nullptr) / 1024.0;
  return -1;
}

// Starts VmHWM again from VmRSS (Linux 4.0+), so that it gives the peak of what follows.
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

double Rounded1(double value) { return std::round(value * 10) / 10; }

std::vector<TrainingSample> Shrunk(const std::vector<TrainingSample>& samples, const StudentArchitecture& arch,
                                   float scale) {
  std::vector<TrainingSample> out;
  for (const TrainingSample& s : samples) out.push_back(ShrinkForStudent(s, arch, scale));
  return out;
}

std::vector<LabelledFrame> Shrunk(const std::vector<LabelledFrame>& frames, const StudentArchitecture& arch) {
  std::vector<LabelledFrame> out;
  for (const LabelledFrame& f : frames) {
    TrainingSample s = ShrinkForStudent({f.bgr, f.labels}, arch, 1.0f);
    out.push_back({f.index, s.bgr, s.boxes});
  }
  return out;
}

struct Rounds {
  RoundResult last;
  double published_map50 = -1;  // of the version the rounds ended at
};

StatusOr<Rounds> RunRounds(const ServerConfig& config, int iterations, uint64_t seed,
                           const std::vector<TrainingSample>& train, const std::vector<LabelledFrame>& val,
                           int rounds = 1) {
  RoundOptions options = config.round;
  options.iterations = iterations;
  options.trainer.seed = seed;
  SD_ASSIGN_OR_RETURN(auto trainer, DeviceTrainer::Create("bench", config.student, "", 0, options));
  Rounds out;
  for (int r = 0; r < rounds; ++r) {
    SD_ASSIGN_OR_RETURN(out.last, trainer->RunRound(train, val));
  }
  out.published_map50 = trainer->published_map50();
  return out;
}

int Run(int argc, char** argv) {
  CLI::App app{"streamdistill-round-bench: the cost of a server training round"};
  std::string config_path = "configs/server.yaml", video = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
  std::string cache_dir = "cache";
  int steps = 20, train_every = 5, accuracy_rounds = 3;
  std::vector<std::string> pools = {"1x1", "1x2", "2x1", "2x2"};
  int memory_units = 8;
  int64_t decoded_cache_mb = 256;
  std::vector<std::string> sections = {"decode", "prepare", "step", "pool", "accuracy"};
  app.add_option("--config", config_path, "server config (student, round options, teacher)");
  app.add_option("--video", video, "the video (frames 0-599 train, 600-794 held out)");
  app.add_option("--cache", cache_dir, "label cache directory (labels the video when missing)");
  app.add_option("--steps", steps, "Adam steps per measured round");
  app.add_option("--train-every", train_every, "every k-th frame of 0-599 is a training frame");
  app.add_option("--accuracy-rounds", accuracy_rounds, "rounds of --steps each in the accuracy section");
  app.add_option("--pool", pools, "WORKERSxTHREADS settings to time");
  app.add_option("--memory-units", memory_units, "training units the memory and decoded sections make")
      ->check(CLI::PositiveNumber);
  app.add_option("--decoded-cache-mb", decoded_cache_mb, "the decoded section's training.decoded_cache_mb")
      ->check(CLI::NonNegativeNumber);
  std::string store_dir = "out/round-bench-store";
  app.add_option("--store", store_dir, "the decoded section's frame store (emptied first)");
  app.add_option("--sections", sections, "what to measure (memory too, not by default)");
  if (auto code = ParseToolCommandLine(app, argc, argv)) return *code;
  auto wants = [&](const char* s) { return std::find(sections.begin(), sections.end(), s) != sections.end(); };

  auto config = LoadServerConfig(config_path);
  if (!config.ok()) return std::fprintf(stderr, "%s\n", config.status().ToString().c_str()), 1;
  auto teacher = CreateTeacher(config->teacher);
  if (!teacher.ok()) return std::fprintf(stderr, "%s\n", teacher.status().ToString().c_str()), 1;
  auto labels = LabelVideoCached(video, **teacher, cache_dir);
  if (!labels.ok()) return std::fprintf(stderr, "%s\n", labels.status().ToString().c_str()), 1;
  auto all = LoadLabelledFrames(video, 0, 795, *labels);
  if (!all.ok()) return std::fprintf(stderr, "%s\n", all.status().ToString().c_str()), 1;
  std::vector<LabelledFrame> train_frames, val_frames;
  for (const LabelledFrame& f : *all) {
    if (f.index < 600 && f.index % train_every == 0) train_frames.push_back(f);
    if (f.index >= 600 && f.index % 5 == 0) val_frames.push_back(f);
  }
  const StudentArchitecture& arch = config->student;
  const std::vector<TrainingSample> full = ToTrainingSamples(train_frames);
  const std::vector<TrainingSample> cached = Shrunk(full, arch, config->round.trainer.max_scale);
  const std::vector<LabelledFrame> val_full = val_frames, val_cached = Shrunk(val_frames, arch);
  Print({{"frames", {{"train", full.size()}, {"validation", val_frames.size()}}},
         {"full", {full[0].bgr.cols, full[0].bgr.rows}},
         {"cached", {cached[0].bgr.cols, cached[0].bgr.rows}},
         {"cached_val", {val_cached[0].bgr.cols, val_cached[0].bgr.rows}}});

  SetTorchThreads(1);
  if (wants("decode")) {
    std::vector<std::vector<uchar>> jpegs(full.size());
    for (size_t i = 0; i < full.size(); ++i) cv::imencode(".jpg", full[i].bgr, jpegs[i], {cv::IMWRITE_JPEG_QUALITY, 75});
    auto start = std::chrono::steady_clock::now();
    for (const auto& jpeg : jpegs) cv::imdecode(jpeg, cv::IMREAD_COLOR);
    const double decode_ms = Seconds(start) * 1000 / jpegs.size();
    start = std::chrono::steady_clock::now();
    Shrunk(full, arch, config->round.trainer.max_scale);
    const double shrink_ms = Seconds(start) * 1000 / full.size();
    Print({{"section", "decode"}, {"decode_ms", decode_ms}, {"shrink_ms", shrink_ms}});
  }
  if (wants("prepare") || wants("step")) {
    for (const auto& [name, data] : {std::pair{"full", &full}, std::pair{"cached", &cached}}) {
      auto model = StudentModel::Create(arch, 1);
      TrainerOptions options = config->round.trainer;
      auto trainer = StudentTrainer::Create(model->get(), options);
      if (!trainer.ok()) return std::fprintf(stderr, "%s\n", trainer.status().ToString().c_str()), 1;
      nlohmann::json line = {{"section", "prepare+step"}, {"frames", name}};
      if (wants("prepare")) {
        const int reps = 10;
        auto start = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r)
          for (int i = 0; i < options.batch_size; ++i) (*trainer)->AugmentForTest((*data)[(r * 16 + i) % data->size()]);
        line["augment_ms_per_step"] = Seconds(start) * 1000 / reps;
      }
      if (wants("step")) {
        (*trainer)->Step(*data);  // the first step allocates
        auto start = std::chrono::steady_clock::now();
        const double cpu = CpuSeconds();
        for (int i = 0; i < steps; ++i) (*trainer)->Step(*data);
        line["step_ms"] = Seconds(start) * 1000 / steps;
        line["step_cpu_ms"] = (CpuSeconds() - cpu) * 1000 / steps;
      }
      Print(line);
    }
  }
  if (wants("pool")) {
    for (const std::string& pool : pools) {
      int workers = 0, threads = 0;
      if (std::sscanf(pool.c_str(), "%dx%d", &workers, &threads) != 2 || workers < 1 || threads < 1)
        return std::fprintf(stderr, "--pool %s: expected WORKERSxTHREADS\n", pool.c_str()), 2;
      std::vector<double> round_s(workers), train_s(workers);
      const auto start = std::chrono::steady_clock::now();
      const double cpu = CpuSeconds();
      std::vector<std::thread> running;
      for (int w = 0; w < workers; ++w)
        running.emplace_back([&, w] {
          SetTorchThreads(threads);  // this thread's OpenMP team; the server's workers do the same
          auto rounds = RunRounds(*config, steps, 10 + w, cached, val_cached);
          if (rounds.ok()) round_s[w] = rounds->last.seconds, train_s[w] = rounds->last.train_seconds;
        });
      for (std::thread& t : running) t.join();
      const double wall = Seconds(start);
      Print({{"section", "pool"}, {"workers", workers}, {"threads_per_worker", threads}, {"wall_s", wall},
             {"steps_per_s", workers * steps / wall}, {"cpu_s_per_step", (CpuSeconds() - cpu) / (workers * steps)},
             {"round_s", round_s}, {"train_s", train_s}});
    }
  }
  if (wants("accuracy")) {
    for (const auto& [name, train, val] : {std::tuple{"full", &full, &val_full}, std::tuple{"cached", &cached, &val_cached}}) {
      const auto start = std::chrono::steady_clock::now();
      auto rounds = RunRounds(*config, steps, 7, *train, *val, accuracy_rounds);
      if (!rounds.ok()) return std::fprintf(stderr, "%s\n", rounds.status().ToString().c_str()), 1;
      Print({{"section", "accuracy"}, {"frames", name}, {"rounds", accuracy_rounds}, {"steps", steps},
             {"map50", rounds->published_map50}, {"seconds", Seconds(start)}});
    }
  }
  if (wants("memory")) {
    // The frames above are already resident; what follows is measured against that.
    malloc_trim(0);
    const double base_mb = ProcStatusMb("VmRSS");
    RoundOptions options = config->round;
    options.iterations = steps;
    std::vector<std::unique_ptr<DeviceTrainer>> units;
    for (int u = 0; u < memory_units; ++u) {
      auto unit = DeviceTrainer::Create("unit" + std::to_string(u), arch, "", 0, options);
      if (!unit.ok()) return std::fprintf(stderr, "%s\n", unit.status().ToString().c_str()), 1;
      units.push_back(std::move(unit).value());
    }
    malloc_trim(0);
    const double created_mb = ProcStatusMb("VmRSS");
    // One round at a time, as one training worker runs them.
    ResetPeakRss();
    for (auto& unit : units) {
      auto round = unit->RunRound(cached, val_cached);
      if (!round.ok()) return std::fprintf(stderr, "%s\n", round.status().ToString().c_str()), 1;
    }
    const double one_worker_peak_mb = ProcStatusMb("VmHWM");
    const double after_rounds_mb = ProcStatusMb("VmRSS");
    malloc_trim(0);  // what the allocator keeps but no one uses
    const double trimmed_mb = ProcStatusMb("VmRSS");
    // Two rounds of different units at once, as two workers run them.
    ResetPeakRss();
    std::vector<std::thread> workers;
    for (int w = 0; w < 2 && w < memory_units; ++w)
      workers.emplace_back([&, w] {
        SetTorchThreads(1);
        (void)units[w]->RunRound(cached, val_cached);
      });
    for (std::thread& worker : workers) worker.join();
    const double two_workers_peak_mb = ProcStatusMb("VmHWM");
    const double after_two_mb = ProcStatusMb("VmRSS");
    // A unit's decoded frames: its windows at the config's sizes, each frame at its kept size.
    const auto frame_mb = [](const cv::Mat& m) { return static_cast<double>(m.total() * m.elemSize()) / (1 << 20); };
    const RoundWindowSizes windows = RoundWindowsOf(*config);
    const int training_frames = windows.replay_frames + windows.memory_frames;
    const int heldout_frames = windows.validation_frames + windows.longterm_validation_frames;
    const double windows_mb = training_frames * frame_mb(cached[0].bgr) + heldout_frames * frame_mb(val_cached[0].bgr);
    Print({{"section", "memory"},
           {"units", memory_units},
           {"steps", steps},
           {"base_rss_mb", Rounded1(base_mb)},
           {"unit_created_mb", Rounded1((created_mb - base_mb) / memory_units)},
           {"unit_trained_mb", Rounded1((trimmed_mb - base_mb) / memory_units)},
           {"round_peak_one_worker_mb", Rounded1(one_worker_peak_mb - created_mb)},
           {"round_peak_two_workers_mb", Rounded1(two_workers_peak_mb - trimmed_mb)},
           {"kept_after_rounds_mb", Rounded1(after_rounds_mb - trimmed_mb)},
           {"kept_after_two_workers_mb", Rounded1(after_two_mb - trimmed_mb)},
           {"decoded_frame_kb",
            {Rounded1(frame_mb(cached[0].bgr) * 1024), Rounded1(frame_mb(val_cached[0].bgr) * 1024)}},
           {"unit_windows_frames", training_frames + heldout_frames},
           {"unit_windows_decoded_mb", Rounded1(windows_mb)}});
  }
  if (wants("decoded")) {
    std::error_code error;
    std::filesystem::remove_all(store_dir, error);
    auto store = FrameStore::Open(store_dir);
    if (!store.ok()) return std::fprintf(stderr, "%s\n", store.status().ToString().c_str()), 1;
    // The video's training frames as the edge uploads them (configs/edge.yaml: 640 px wide,
    // quality 55), stored in turn under each unit's device.
    const double shrink = 640.0 / full[0].bgr.cols;
    std::vector<std::string> jpegs;
    std::vector<Detections> labels;
    std::vector<std::vector<float>> embeddings;  // the long-term memory chooses by them
    for (const TrainingSample& sample : full) {
      cv::Mat sent;
      cv::resize(sample.bgr, sent, cv::Size(), shrink, shrink, cv::INTER_AREA);
      std::vector<uchar> jpeg;
      cv::imencode(".jpg", sent, jpeg, {cv::IMWRITE_JPEG_QUALITY, 55});
      jpegs.emplace_back(jpeg.begin(), jpeg.end());
      labels.push_back(sample.boxes);
      ScaleDetections(&labels.back(), shrink, shrink);
      embeddings.push_back(AppearanceEmbedding(sent));
    }
    const auto device_of = [](int unit) { return "cam" + std::to_string(unit); };
    for (int u = 0; u < memory_units; ++u)
      for (int sequence = 1; sequence <= 600; ++sequence) {
        FrameRecord record;
        record.device_id = device_of(u);
        record.sequence = sequence;
        record.frame_index = sequence;
        record.validation = sequence % config->validation_every == 0;
        record.labels = labels[sequence % labels.size()];
        record.embedding = embeddings[sequence % embeddings.size()];
        auto put = (*store)->Put(record, jpegs[sequence % jpegs.size()]);
        if (!put.ok()) return std::fprintf(stderr, "%s\n", put.status().ToString().c_str()), 1;
      }
    malloc_trim(0);
    const double base_mb = ProcStatusMb("VmRSS");
    DecodedFrameCache cache(decoded_cache_mb << 20);
    for (int pass = 1; pass <= 2; ++pass)
      for (int u = 0; u < memory_units; ++u) {
        auto records = SelectRoundRecords(HistoryOf(**store), {device_of(u)}, RoundWindowsOf(*config));
        if (!records.ok()) return std::fprintf(stderr, "%s\n", records.status().ToString().c_str()), 1;
        const auto start = std::chrono::steady_clock::now();
        auto inputs = LoadRoundInputs(**store, {device_of(u)}, *records, arch, config->round.trainer.max_scale, &cache);
        if (!inputs.ok()) return std::fprintf(stderr, "%s\n", inputs.status().ToString().c_str()), 1;
        const double load_s = Seconds(start);
        const double with_round_mb = ProcStatusMb("VmRSS");
        *inputs = RoundInputs{};  // the round ends: only the cache holds frames
        const DecodedFrameCache::Stats stats = cache.stats();
        Print({{"section", "decoded"},
               {"decoded_cache_mb", decoded_cache_mb},
               {"pass", pass},
               {"unit", u + 1},
               {"load_s", Rounded1(load_s * 100) / 100},
               {"rss_with_round_mb", Rounded1(with_round_mb - base_mb)},
               {"rss_mb", Rounded1(ProcStatusMb("VmRSS") - base_mb)},
               {"cache_mb", Rounded1(stats.bytes / double{1 << 20})},
               {"hits", stats.hits},
               {"misses", stats.misses},
               {"evictions", stats.evictions}});
      }
  }
  return 0;
}

}  // namespace
}  // namespace sd

int main(int argc, char** argv) { return sd::Run(argc, argv); }
