// streamdistill-bench --uplink: what each way of encoding a sampled frame costs on the uplink
// and what it does to the teacher's labels. For every encoding (width, JPEG quality) the
// frames are encoded into the message the edge sends (edge/frame_encoding.h), decoded as the
// server does, and labelled by the server's teacher (with its min_width); the labels are scored
// (mAP50) against the same teacher's labels of the original frames.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"

namespace sd {

struct UplinkEncoding {
  int max_width = 0;  // 0: the source's width
  int jpeg_quality = 75;
};
// "768x75,384x85": width x quality pairs. InvalidArgument names the bad entry.
StatusOr<std::vector<UplinkEncoding>> ParseUplinkEncodings(const std::string& text);

struct UplinkBenchOptions {
  std::string edge_config = "configs/edge.yaml";      // the video range and the sampling budget
  std::string server_config = "configs/server.yaml";  // the teacher
  int frames = 40;                                    // spread evenly over the edge's source range
  std::vector<UplinkEncoding> encodings;
};

// One JSON object: per encoding, mean message bytes, kbit/s at the edge's budget_per_minute,
// label mAP50 against the original frames.
StatusOr<nlohmann::json> MeasureUplinkEncodings(const UplinkBenchOptions& options);
std::string UplinkMarkdown(const nlohmann::json& result);

}  // namespace sd
