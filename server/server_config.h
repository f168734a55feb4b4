// configs/server.yaml -> ServerConfig, validated. Every key is documented in docs/operations.md.
#pragma once

#include <map>
#include <string>

#include "common/status.h"
#include "common/student.h"
#include "common/teacher.h"
#include "server/device_trainer.h"

namespace sd {

struct TlsServerOptions {
  std::string cert;       // PEM server certificate chain; empty = plaintext (loopback, tests)
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA: when set, edges must present a client certificate signed by it
};

struct ServerConfig {
  std::string listen = "0.0.0.0:50051";
  std::string storage_dir = "state/server";
  int max_message_bytes = 8 << 20;      // receive limit; larger messages get RESOURCE_EXHAUSTED
  int update_chunk_bytes = 256 << 10;   // model updates are sent in chunks of this size
  std::string update_encoding = "full_fp16";
  TlsServerOptions tls;
  std::map<std::string, std::string> device_tokens;  // device id -> token

  TeacherOptions teacher;
  int labeler_workers = 1;
  int labeler_queue = 16;
  int stored_image_max_width = 0;  // 0: store frames as the edge sent them

  StudentArchitecture student;
  std::string init_weights;  // checkpoint every new device starts from; empty: random (model_seed)
  uint64_t model_seed = 1;

  int threads = 2;             // libtorch threads for training
  int validation_every = 5;    // every k-th frame of a device (by sequence) is held out for validation
  int validation_frames = 60;  // validate on the most recent N held-out frames
  RoundOptions round;
  SchedulerOptions schedule;
  bool train_in_background = true;  // false: tests drive rounds by hand
};

StatusOr<ServerConfig> LoadServerConfig(const std::string& path);
StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text, const std::string& name);

}  // namespace sd
