#include "bench/uplink_encodings.h"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/video/frame_source.h"
#include "common/eval/map_eval.h"
#include "common/teacher/teacher.h"
#include "edge/edge_config.h"
#include "edge/frame_encoding.h"
#include "server/server_config.h"
#include "streamdistill.pb.h"

namespace sd {

StatusOr<std::vector<UplinkEncoding>> ParseUplinkEncodings(const std::string& text) {
  std::vector<UplinkEncoding> encodings;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    UplinkEncoding e;
    char extra = 0;
    if (std::sscanf(item.c_str(), "%dx%d%c", &e.max_width, &e.jpeg_quality, &extra) != 2 || e.max_width < 0 ||
        e.jpeg_quality < 1 || e.jpeg_quality > 100)
      return Status::InvalidArgument("uplink encoding '" + item + "': expected WIDTHxQUALITY, quality 1-100");
    encodings.push_back(e);
  }
  if (encodings.empty()) return Status::InvalidArgument("no uplink encodings given");
  return encodings;
}

namespace {

// `count` frames evenly spaced over the source's range (only those are kept in memory).
StatusOr<std::vector<cv::Mat>> SpreadFrames(const FrameSourceOptions& source, int count) {
  FrameSourceOptions o = source;
  o.loop = false;
  SD_ASSIGN_OR_RETURN(auto probe, OpenFrameSource(o));
  int64_t end = probe->frame_count();
  if (o.end_frame >= 0 && (end < 0 || o.end_frame < end)) end = o.end_frame;
  if (end > o.start_frame) o.stride = std::max<int64_t>(1, (end - o.start_frame) / count);
  return ReadFrames(o, count);
}

}  // namespace

StatusOr<nlohmann::json> MeasureUplinkEncodings(const UplinkBenchOptions& options) {
  SD_ASSIGN_OR_RETURN(EdgeConfig edge, LoadEdgeConfig(options.edge_config));
  SD_ASSIGN_OR_RETURN(ServerConfig server, LoadServerConfig(options.server_config));
  TeacherOptions plain = server.teacher;
  plain.min_width = 0;
  SD_ASSIGN_OR_RETURN(auto reference_teacher, CreateTeacher(plain));
  SD_ASSIGN_OR_RETURN(auto server_teacher, CreateTeacher(server.teacher));
  SD_ASSIGN_OR_RETURN(std::vector<cv::Mat> frames, SpreadFrames(edge.source, options.frames));
  std::vector<Detections> reference;
  for (const cv::Mat& f : frames) {
    SD_ASSIGN_OR_RETURN(Detections labels, reference_teacher->Label(f));
    reference.push_back(std::move(labels));
  }
  // The message carries the student's embedding too: zeros of the right length.
  StudentOutput student;
  student.embedding.assign(edge.student.channels.back(), 0.0f);
  const double frames_per_s = edge.sampling.budget_per_minute / 60.0;

  nlohmann::json rows = nlohmann::json::array();
  for (const UplinkEncoding& e : options.encodings) {
    FrameEncodingOptions encoding;
    encoding.max_width = e.max_width;
    encoding.jpeg_quality = e.jpeg_quality;
    DetectionEvaluator agreement;
    double bytes = 0;
    int width = 0;
    for (size_t i = 0; i < frames.size(); ++i) {
      SD_ASSIGN_OR_RETURN(std::string message, EncodeSampledFrame(frames[i], i, 0, student, 0, encoding));
      bytes += message.size();
      streamdistill::v1::SampledFrame parsed;
      if (!parsed.ParseFromString(message)) return Status::Internal("an encoded frame does not parse");
      const std::string& jpeg = parsed.jpeg();
      const cv::Mat sent = cv::imdecode(cv::Mat(1, static_cast<int>(jpeg.size()), CV_8UC1, const_cast<char*>(jpeg.data())),
                                        cv::IMREAD_COLOR);
      width = sent.cols;
      SD_ASSIGN_OR_RETURN(Detections labels, server_teacher->Label(sent));
      // Back to the original frame's pixels, where the reference labels are.
      ScaleDetections(&labels, static_cast<float>(frames[i].cols) / sent.cols,
                      static_cast<float>(frames[i].rows) / sent.rows);
      agreement.AddFrame(labels, reference[i]);
    }
    const double mean_bytes = bytes / frames.size();
    rows.push_back({{"max_width", e.max_width},
                    {"sent_width", width},
                    {"jpeg_quality", e.jpeg_quality},
                    {"message_bytes", mean_bytes},
                    {"kbps", mean_bytes * 8 * frames_per_s / 1000},
                    {"label_map50", agreement.Compute().map50}});
    std::fprintf(stderr, "uplink    %dx q%d: %.1f kB/frame, labels mAP50 %.3f\n", width, e.jpeg_quality,
                 mean_bytes / 1000, rows.back()["label_map50"].get<double>());
  }
  return nlohmann::json{{"video", edge.source.uri},
                        {"frames", frames.size()},
                        {"budget_per_minute", edge.sampling.budget_per_minute},
                        {"teacher", server_teacher->Fingerprint()},
                        {"encodings", rows}};
}

std::string UplinkMarkdown(const nlohmann::json& r) {
  std::ostringstream md;
  char line[256];
  md << "# Uplink: frame encodings\n\n";
  md << "- " << r["frames"].get<int>() << " frames of " << r["video"].get<std::string>()
     << ", spread over the edge's range; teacher " << r["teacher"].get<std::string>() << "\n";
  md << "- label mAP50: the teacher's labels of the frame as the server receives it, against its labels of the "
        "original frame\n\n";
  std::snprintf(line, sizeof(line), "| sent width | JPEG quality | kB per message | kbit/s at %g frames/min | label mAP50 |\n",
                r["budget_per_minute"].get<double>());
  md << line << "|---|---|---|---|---|\n";
  for (const auto& e : r["encodings"]) {
    std::snprintf(line, sizeof(line), "| %d | %d | %.1f | %.1f | %.3f |\n", e["sent_width"].get<int>(),
                  e["jpeg_quality"].get<int>(), e["message_bytes"].get<double>() / 1000, e["kbps"].get<double>(),
                  e["label_map50"].get<double>());
    md << line;
  }
  return md.str();
}

}  // namespace sd
