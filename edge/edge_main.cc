// streamdistill-edge: runs the student on every frame of a camera or video, emits its
// detections, samples frames for the server and swaps in model updates without dropping a
// frame. SIGINT/SIGTERM stop it in order (the spool is on disk); a second one exits at once.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <semaphore.h>
#include <thread>
#include <unistd.h>

#include "edge/edge_agent.h"

namespace {

sem_t g_signal;
volatile std::sig_atomic_t g_signals = 0;

void OnSignal(int) {
  if (++g_signals > 1) _exit(130);
  sem_post(&g_signal);
}

nlohmann::json Summary(const sd::EdgeStats& s) {
  return {{"frames", s.frames},
          {"detected", s.detected},
          {"queried", s.queried},
          {"acked", s.uplink.frames_acked},
          {"rejected", s.uplink.frames_rejected},
          {"retried", s.uplink.frames_retried},
          {"spool_failures", s.spool_failures},
          {"updates", s.uplink.updates_applied},
          {"updates_refused", s.uplink.updates_refused},
          {"model_version", s.model_version},
          {"uplink_bytes", s.uplink.bytes_up},
          {"downlink_bytes", s.uplink.bytes_down},
          {"uplink_frame_bytes", s.uplink.bytes_up_frames},
          {"uplink_control_bytes", s.uplink.bytes_up_control},
          {"downlink_update_bytes", s.uplink.bytes_down_updates},
          {"downlink_control_bytes", s.uplink.bytes_down_control},
          {"uplink_kbps", s.uplink_kbps()},
          {"downlink_kbps", s.downlink_kbps()},
          {"student_ms", s.student_ms},
          {"budget_mode", s.budget_mode},
          {"budget_per_minute", s.budget_per_minute},
          {"budget_reason", s.budget_reason},
          {"seconds", s.elapsed_s}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-edge: the student on every frame, sampling and model updates"};
  std::string config_path = "configs/edge.yaml";
  std::string log_level = "info";
  bool fast = false;
  double duration_s = 0;
  std::string ack_log_path;
  std::string budget_mode;
  app.add_option("--config", config_path, "YAML config");
  app.add_flag("--fast", fast, "read files as fast as possible instead of at their frame rate");
  app.add_option("--duration", duration_s, "stop after this many seconds (0: run until the source ends)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--budget-mode", budget_mode,
                 "adaptive | fixed: overrides the config's budget.mode (fixed: sampling.budget_per_minute always)");
  app.add_option("--ack-log", ack_log_path, "append one line per ack from the server to this file: sequence and code");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // Logs on stderr: stdout carries the update lines, the summary and (path "-") detections.
  spdlog::set_default_logger(spdlog::stderr_color_mt("edge"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%H:%M:%S.%e] [edge] [%^%l%$] %v");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto config = sd::LoadEdgeConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "streamdistill-edge: error: %s\n", config.status().message().c_str());
    return 2;
  }
  if (fast) config->source.realtime = false;
  if (!budget_mode.empty()) {
    auto mode = sd::ParseBudgetMode(budget_mode);
    if (!mode.ok()) {
      std::fprintf(stderr, "streamdistill-edge: error: --budget-mode: %s\n", mode.status().message().c_str());
      return 2;
    }
    config->budget.mode = *mode;
    sd::Status valid = config->Budget().Validate();
    if (!valid.ok()) {
      std::fprintf(stderr, "streamdistill-edge: error: --budget-mode: budget.%s\n", valid.message().c_str());
      return 2;
    }
  }
  auto agent = sd::EdgeAgent::Create(*config);
  if (!agent.ok()) {
    std::fprintf(stderr, "streamdistill-edge: error: %s\n", agent.status().message().c_str());
    return 2;
  }
  // One line per ack ("<sequence> <google.rpc code>"), flushed at once: a record of what the
  // server confirmed as stored, for checks such as scripts/soak.sh. Written on the uplink's
  // reader thread, which Run() joins before it returns.
  std::FILE* ack_log = nullptr;
  if (!ack_log_path.empty()) {
    ack_log = std::fopen(ack_log_path.c_str(), "a");
    if (ack_log == nullptr) {
      std::fprintf(stderr, "streamdistill-edge: error: %s: cannot open the ack log: %s\n", ack_log_path.c_str(),
                   std::strerror(errno));
      return 2;
    }
    (*agent)->SetAckObserver([ack_log](uint64_t sequence, int code) {
      std::fprintf(ack_log, "%llu %d\n", static_cast<unsigned long long>(sequence), code);
      std::fflush(ack_log);
    });
  }
  // One line per applied update on stdout (scripts/soak.sh counts them).
  (*agent)->SetUpdateObserver([&agent](const sd::ModelUpdate& update, const std::shared_ptr<const sd::ServedModel>&) {
    const sd::EdgeStats s = (*agent)->stats();
    std::printf("update v%-3llu frames %-6lld queried %-4lld acked %-4lld up %6.1f kbit/s  down %6.1f kbit/s  "
                "server val mAP50 %.3f (was %.3f, %d frames)\n",
                static_cast<unsigned long long>(update.new_version), static_cast<long long>(s.frames),
                static_cast<long long>(s.queried), static_cast<long long>(s.uplink.frames_acked), s.uplink_kbps(),
                s.downlink_kbps(), update.val_map50, update.val_map50_previous, update.val_frames);
    std::fflush(stdout);
  });
  sem_init(&g_signal, 0, 0);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::thread stopper([&] {
    if (duration_s > 0) {
      timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_sec += static_cast<time_t>(duration_s);
      while (sem_timedwait(&g_signal, &deadline) != 0 && errno == EINTR) {
      }
    } else {
      while (sem_wait(&g_signal) != 0) {
      }
    }
    (*agent)->Stop();
  });
  sd::Status run = (*agent)->Run();
  if (ack_log != nullptr) std::fclose(ack_log);
  sem_post(&g_signal);  // let the stopper thread end
  stopper.join();
  const sd::EdgeStats stats = (*agent)->stats();
  nlohmann::json summary = Summary(stats);
  std::printf("\nframes %lld, queried %lld (acked %lld), updates %lld, serving version %llu\n"
              "uplink %.1f kbit/s (frames %lld B, control %lld B), downlink %.1f kbit/s (updates %lld B, control %lld B), "
              "student %.2f ms/frame\n",
              static_cast<long long>(stats.frames), static_cast<long long>(stats.queried),
              static_cast<long long>(stats.uplink.frames_acked), static_cast<long long>(stats.uplink.updates_applied),
              static_cast<unsigned long long>(stats.model_version), stats.uplink_kbps(),
              static_cast<long long>(stats.uplink.bytes_up_frames), static_cast<long long>(stats.uplink.bytes_up_control),
              stats.downlink_kbps(), static_cast<long long>(stats.uplink.bytes_down_updates),
              static_cast<long long>(stats.uplink.bytes_down_control), stats.student_ms);
  std::printf("%s\n", summary.dump().c_str());
  if (!config->summary_path.empty()) {
    std::ofstream out(config->summary_path);
    out << summary.dump(2) << "\n";
  }
  return run.ok() ? 0 : 1;
}
