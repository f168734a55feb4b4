// streamdistill-bench --speed: how fast the edge is, measured so that runs can be compared.
//
// 1. The student and the teacher on the same frames in one run, one thread each, calls
//    alternating frame by frame (both see the same machine state): median, p95 and max.
// 2. The edge's whole per-frame path (read, detect, emit, sample: EdgeAgent itself, reading
//    the file as fast as it can) as frames per second at 1 and 2 threads.
// 3. The edge daemon as a process: start-up time to its first frame and resident memory.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/base/status.h"

namespace sd {

struct SpeedOptions {
  std::string edge_config = "configs/edge.yaml";      // student, inference settings, source video
  std::string server_config = "configs/server.yaml";  // the teacher
  std::string weights;    // student checkpoint (.sdw or an edge's deployed.sdw); empty: random
  int frames = 200;       // timed frames, from the config's start frame
  int path_frames = 300;  // frames through the edge's whole path, per thread count
  std::string edge_binary;  // streamdistill-edge for the process figures; empty: skipped
  std::string work_dir = "out/speed/work";
};

// The figures as one JSON object (printed and written by the caller). Errors: configs, the
// video, the teacher or the student could not be loaded.
StatusOr<nlohmann::json> MeasureSpeed(const SpeedOptions& options);

// A markdown report of MeasureSpeed's result.
std::string SpeedMarkdown(const nlohmann::json& result);

// streamdistill-bench --speed: measures with streamdistill-edge beside this binary (if any) for
// the process figures, writes OUT/speed.json and OUT/speed.md, prints the table and a JSON
// summary line. The process's exit code (1 on an error, which goes to stderr).
int RunSpeedBench(SpeedOptions options, const std::string& out);

}  // namespace sd
