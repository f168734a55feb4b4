// configs/server.yaml -> ServerConfig, validated. Every key is documented in docs/operations.md.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/base/env.h"
#include "common/obs/http_endpoint.h"
#include "common/vision/image_header.h"
#include "common/base/status.h"
#include "common/link/update_codec.h"
#include "common/student/student.h"
#include "common/teacher/teacher.h"
#include "server/device_trainer.h"
#include "server/round_scheduler.h"
#include "server/frame_store.h"
#include "server/storage_options.h"
#include "server/label_budget.h"

namespace sd {

struct TlsServerOptions {
  std::string cert;       // PEM server certificate chain; empty = plaintext (loopback, tests)
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA: when set, edges must present a client certificate signed by it
  // cert and key together; client_ca only with them. Like every Validate() of this file, the
  // message starts with the field's name (YamlReader::Check maps it to the YAML key).
  Status Validate() const;
};

// How a device's new versions travel (AMS): see common/link/update_codec.h for the encodings.
struct UpdatePolicy {
  UpdateEncoding encoding = UpdateEncoding::kFullFp16;  // update_encoding: full_fp32 | full_fp16 | sparse | int8
  double sparse_fraction = 0.05;  // sparse: share of parameters a round trains and sends
  bool zstd = true;               // compress a payload when that makes it smaller
  Status Validate() const;  // sparse_fraction in (0, 1), whatever the encoding
};

// The share of parameters a round trains (RoundOptions::sparse_fraction): the policy's
// fraction under sparse, else 0 (all of them).
double RoundSparseFraction(const UpdatePolicy& policy);

// What one client may make the server do (docs/operations.md, `limits:`).
struct ServerLimits {
  ImageLimits image;                        // checked from the JPEG header before any decode
  uint64_t max_sequence_gap = uint64_t{1} << 32;  // a frame's sequence may exceed the highest so far (stored at connect, or accepted since) by this much
  int full_model_burst = 3;                 // full models sent on request, at once...
  double full_model_refill_s = 30;          // ...then one more per this many seconds
  int stream_backlog = 256;                 // messages queued for one stream before it stops being read
  int max_embedding = 4096;                 // floats in a frame's embedding
  Status Validate() const;  // `image`'s fields are named image.max_width etc.
};

// Shortest admin token accepted (config or file): guessing must not be practical.
constexpr size_t kMinAdminTokenChars = 16;

// Largest training.decoded_cache_mb accepted, 1 TiB: a larger figure is a mistake (bytes given
// for MiB), not a machine.
constexpr int64_t kMaxDecodedCacheMb = int64_t{1} << 20;

// How devices come to share students (docs/operations.md, `grouping:`; docs/fleet.md).
struct GroupingOptions {
  // false (mode config): the `groups` map, fixed. true (mode auto, CSBAD): groups split and
  // form by how well the students transfer (server/grouping.h).
  bool automatic = false;
  // auto, `start: together` (default): the devices of server.yaml start as one group, which
  // splits (one shared student is current soonest; a split costs nothing but the split-off
  // device's own rounds). `start: alone`: each starts alone and joins a group whose student
  // serves it. Devices of the devices file start alone either way.
  bool start_together = true;
  double every_s = 120;         // auto: seconds between evaluations (looked at after each round)
  double margin = 0.05;         // auto: mAP50 a device may lose on another's student and still be alike
  int min_heldout_frames = 10;  // auto: a device takes part once it has this many held-out frames
  int heldout_frames = 30;      // auto: each device's newest held-out frames, scored on every student
  // The numbers' ranges (checked in config mode too); not `groups`, which ServerConfig holds.
  Status Validate() const;
};

struct ServerConfig {
  std::string listen = "0.0.0.0:50051";
  // GET /metrics for Prometheus; on by default, on loopback (docs/operations.md, "Metrics").
  HttpOptions http{true, "127.0.0.1", 9464};
  // http.admin_token: the dashboard's token (server/dashboard.h); empty: no dashboard, only
  // /metrics. It shows camera images, so it needs a secret even on loopback.
  std::string admin_token;
  // http.admin_token_file, instead of admin_token: a file holding the token, which the server
  // makes with a random one (mode 0600) when it does not exist, so that a fresh install has a
  // dashboard without a secret in its config (server/server.cc, AdminToken).
  std::string admin_token_file;
  std::string storage_dir = "state/server";
  // The backend of the server's state: sqlite (in storage_dir) or postgres (replicas).
  StorageOptions storage;
  // > 0: a client's connection is closed (GOAWAY, then this many seconds' grace for its
  // streams) after this long, +-10%: behind HAProxy, streams drift back to their hash owner
  // after the set of replicas changed (docs/scale-out.md). 0: never.
  double max_connection_age_s = 0;
  int max_message_bytes = 8 << 20;      // receive limit; larger messages get RESOURCE_EXHAUSTED
  int update_chunk_bytes = 256 << 10;   // model updates are sent in chunks of this size
  UpdatePolicy updates;                                // every device's, unless overridden
  std::map<std::string, UpdatePolicy> device_updates;  // device id -> its own policy
  TlsServerOptions tls;
  std::map<std::string, std::string> device_tokens;  // device id -> token (inline in server.yaml, fixed)
  // `privacy: required` (top level: every device; or per device under `devices:`): frames that
  // arrive without the edge's mask declaration are refused, and nothing of them is stored.
  bool privacy_required_all = false;
  std::set<std::string> privacy_required;  // device ids
  bool PrivacyRequired(const std::string& device_id) const {
    return privacy_required_all || privacy_required.count(device_id) > 0;
  }
  std::string devices_file;         // devices enrolled at run time (server/devices_file.h); empty: none
  double devices_file_poll_s = 1;   // how often the file is checked for a change; 0: on SIGHUP only
  // Shared students (CSBAD, docs/fleet.md): group name -> its member devices, each in at most
  // one group. A group's members share one student, trained on all their frames and published
  // to each of them; a device in no group has its own.
  std::map<std::string, std::vector<std::string>> groups;
  GroupingOptions grouping;  // auto mode forms the groups itself: `groups` stays empty then
  RetentionBounds retention;                              // every device's, unless overridden
  std::map<std::string, RetentionBounds> device_retention;  // device id -> its own bounds

  TeacherOptions teacher;
  int labeler_workers = 1;
  int labeler_queue = 16;
  // Back-pressure in seconds of labelling work (measured): the queue holds at most this much,
  // however many frames that is (and never more than labeler_queue); 0: labeler_queue alone.
  double labeler_max_queue_seconds = 5;
  LabelBudgetOptions label_budget;  // the labellers' capacity shared among edges (labeler.*)
  int stored_image_max_width = 0;  // 0: store frames as the edge sent them
  ServerLimits limits;

  StudentArchitecture student;
  // What each class id means (`student.class_names`), for dataset exports: one name per class
  // or none ("class<i>" then). Server only: the edge works with ids.
  std::vector<std::string> class_names;
  std::string init_weights;  // checkpoint every new device starts from; empty: random (model_seed)
  uint64_t model_seed = 1;

  // The training pool: `training_workers` threads run rounds of different devices at once, each
  // on `threads_per_worker` libtorch (OpenMP) threads. 0 in the file: DefaultTrainingPool.
  int training_workers = 1;
  int threads_per_worker = 2;
  int validation_every = 5;    // every k-th frame of a device (by sequence) is held out for validation
  int validation_frames = 30;  // the gate's recent held-out set: the most recent N held-out frames
  // Long-term memory (docs/architecture.md, "Memory against forgetting"): from the newest
  // `memory_history` frames of each kind older than the recent windows, k-center over their
  // looks chooses `memory_frames` to train on beside the replay window and
  // `longterm_validation_frames` for the gate's forgetting check (round.max_forgetting).
  // 0 turns either off.
  int memory_frames = 60;
  int longterm_validation_frames = 60;
  int memory_history = 3000;
  // Decoded frames kept between rounds, shared by every unit (server/decoded_frame_cache.h), in
  // MiB; 0: every round decodes its frames. A lone device's windows take 179 MiB.
  int64_t decoded_cache_mb = 256;
  RoundOptions round;
  SchedulerOptions schedule;
  bool train_in_background = true;  // false: tests drive rounds by hand
  Env* env = Env::Default();  // not from the config file: the store's image and checkpoint files
                              // go through it (tests inject disk faults here)

  // The fields of this struct itself, each named first in the message (ParseServerConfig maps
  // them to their keys); the option structs it holds have their own Validate().
  Status Validate() const;
};

// The training pool for a machine with `cores` cores and `devices` configured devices (0:
// unknown, a devices file) when the file leaves it open: a worker per core, but no more workers
// than devices, and the cores shared among the workers. Measured (docs/operations.md): rounds of
// different devices side by side on one thread each make more steps per second than one round
// on all cores, and an OpenMP team of 2+ threads on cores that other work shares spins at its
// barriers (one round on 2 threads took 10x the CPU time while other builds ran). But one camera
// alone leaves a worker idle: its rounds on 1 thread took 45-50 s instead of 18-30 s on 2, and
// the main job ended 0.77 instead of 0.8 (fewer versions in 300 s). `workers` and
// `threads_per_worker` keep values > 0.
void DefaultTrainingPool(unsigned cores, size_t devices, int* workers, int* threads_per_worker);

// The group `device_id` belongs to, or "" when it trains alone.
std::string GroupOf(const ServerConfig& config, const std::string& device_id);

// The policy of `device_id`: its own if configured, else the server-wide one.
const UpdatePolicy& UpdatesFor(const ServerConfig& config, const std::string& device_id);
// The same for the retention bounds.
const RetentionBounds& RetentionFor(const ServerConfig& config, const std::string& device_id);

StatusOr<ServerConfig> LoadServerConfig(const std::string& path);
StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text, const std::string& name);

}  // namespace sd
