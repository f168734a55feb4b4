// streamdistill-server: labels edges' frames with the teacher, trains their students and
// streams updates back. SIGINT/SIGTERM start an orderly shutdown; a second one exits at once.
// SIGHUP reloads the devices file.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <semaphore.h>
#include <thread>
#include <unistd.h>

#include "server/server.h"

namespace {

sem_t g_wake;  // posted by the handlers; main does the work, outside the signal context
volatile std::sig_atomic_t g_signals = 0;
volatile std::sig_atomic_t g_reload = 0;

void OnSignal(int) {
  if (++g_signals > 1) _exit(130);  // second signal: leave now
  sem_post(&g_wake);                // async-signal-safe
}

void OnHangup(int) {
  g_reload = 1;
  sem_post(&g_wake);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"streamdistill-server: teacher labelling, per-device distillation and model streaming"};
  std::string config_path = "configs/server.yaml";
  std::string listen;
  int http_port = -1;
  std::string log_level = "info";
  std::string replica;
  app.add_option("--config", config_path, "YAML config");
  app.add_option("--replica", replica, "override storage.replica: this replica's name (storage.backend postgres)");
  app.add_option("--listen", listen, "override listen (host:port)");
  app.add_option("--http-port", http_port, "override http.port (0: a free port, logged)")->check(CLI::Range(0, 65535));
  int training_workers = -1;
  app.add_option("--training-workers", training_workers,
                 "override training.workers for this replica; 0: it trains nothing and only serves (its devices' "
                 "rounds run on the cluster's other replicas; storage.backend postgres)")
      ->check(CLI::Range(0, 256));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // Logs on stderr; stdout stays free for program output.
  spdlog::set_default_logger(spdlog::stderr_color_mt("server"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%H:%M:%S.%e] [server] [%^%l%$] %v");
  auto config = sd::LoadServerConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "streamdistill-server: error: %s\n", config.status().message().c_str());
    return 2;
  }
  if (!listen.empty()) config->listen = listen;
  if (http_port >= 0) config->http.port = http_port;
  if (!replica.empty()) {
    config->storage.replica = replica;
    if (sd::Status valid = config->storage.Validate(); !valid.ok()) {
      std::fprintf(stderr, "streamdistill-server: error: --replica: %s\n", valid.message().c_str());
      return 2;
    }
  }
  if (training_workers >= 0) {
    if (training_workers == 0 && config->storage.backend != sd::StorageBackend::kPostgres) {
      std::fprintf(stderr,
                   "streamdistill-server: error: --training-workers 0: only a replica (storage.backend postgres) may "
                   "leave its rounds to others; alone, its devices would never train\n");
      return 2;
    }
    config->training_workers = training_workers;
  }
  sem_init(&g_wake, 0, 0);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGHUP, OnHangup);
  auto server = sd::Server::Start(*config);
  if (!server.ok()) {
    std::fprintf(stderr, "streamdistill-server: error: %s\n", server.status().message().c_str());
    return server.status().code() == sd::Status::Code::kUnavailable ? 1 : 2;
  }
  while (g_signals == 0) {
    if (sem_wait(&g_wake) != 0) continue;
    if (g_reload && g_signals == 0) {
      g_reload = 0;
      spdlog::info("SIGHUP: reloading the devices file");
      (*server)->core().ReloadDevices().ok();  // logged there; the devices stay as they were on error
    }
  }
  spdlog::info("shutting down");
  (*server)->Shutdown();
  spdlog::info("stopped");
  return 0;
}
