#include "edge/edge_config.h"

#include <cmath>

#include "common/config/config.h"
#include "common/config/yaml_reader.h"

namespace sd {
namespace {

// A secret from a file: its first line, without the line end. The path is a key of its own so
// that the secret itself never sits in edge.yaml (and is never logged).
Status ReadSecretFile(const YamlReader& section, const std::string& key, std::string* secret) {
  SD_ASSIGN_OR_RETURN(std::string text, ReadFileAtKey(section, key));
  if (!section.Has(key)) return Status::Ok();
  const size_t line_end = text.find_first_of("\r\n");
  if (line_end != std::string::npos) text.resize(line_end);
  if (text.empty()) return section.Error(key, "the file's first line is empty");
  *secret = std::move(text);
  return Status::Ok();
}

Status ReadUplink(const YamlReader& root, UplinkOptions* u) {
  SD_RETURN_IF_ERROR(root.Require("device_id", &u->device_id));
  // The token inline or, where it is a Secret (a Kubernetes Secret mount, a file of mode 0600
  // beside a world-readable edge.yaml), from a file: exactly one of them.
  if (root.Has("token") == root.Has("token_file"))
    return root.Error("token", "set token or token_file, exactly one of them");
  SD_RETURN_IF_ERROR(root.Get("token", &u->token));
  SD_RETURN_IF_ERROR(ReadSecretFile(root, "token_file", &u->token));
  if (u->token.empty()) return root.Error("token", "is empty");
  SD_RETURN_IF_ERROR(root.Get("server", &u->server));
  SD_ASSIGN_OR_RETURN(YamlReader link, root.Child("link"));
  SD_RETURN_IF_ERROR(link.Get("max_in_flight", &u->max_in_flight));
  SD_RETURN_IF_ERROR(link.Get("backoff_initial_s", &u->backoff_initial_s));
  SD_RETURN_IF_ERROR(link.Get("backoff_max_s", &u->backoff_max_s));
  SD_RETURN_IF_ERROR(link.Get("stall_timeout_s", &u->stall_timeout_s));
  SD_RETURN_IF_ERROR(link.Get("max_message_bytes", &u->max_message_bytes));
  SD_RETURN_IF_ERROR(link.Check(u->Validate()));
  SD_ASSIGN_OR_RETURN(YamlReader tls, root.Child("tls"));
  SD_ASSIGN_OR_RETURN(u->tls.ca, ReadFileAtKey(tls, "ca"));
  SD_ASSIGN_OR_RETURN(u->tls.cert, ReadFileAtKey(tls, "cert"));
  SD_ASSIGN_OR_RETURN(u->tls.key, ReadFileAtKey(tls, "key"));
  SD_RETURN_IF_ERROR(tls.Get("server_name", &u->tls.server_name));
  return tls.Check(u->tls.Validate());
}

Status ReadBudget(const YamlReader& root, EdgeConfig* c) {
  SD_ASSIGN_OR_RETURN(YamlReader b, root.Child("budget"));
  BudgetOptions& o = c->budget;
  std::string mode = BudgetModeName(o.mode);
  SD_RETURN_IF_ERROR(b.Get("mode", &mode));
  StatusOr<BudgetMode> parsed = ParseBudgetMode(mode);
  if (!parsed.ok()) return b.Check(parsed.status());
  o.mode = *parsed;
  SD_RETURN_IF_ERROR(b.Get("floor_per_minute", &o.floor_per_minute));
  SD_RETURN_IF_ERROR(b.Get("ceiling_per_minute", &o.ceiling_per_minute));
  SD_RETURN_IF_ERROR(b.Get("agreement_target", &o.agreement_target));
  SD_RETURN_IF_ERROR(b.Get("agreement_low", &o.agreement_low));
  SD_RETURN_IF_ERROR(b.Get("agreement_fall", &o.agreement_fall));
  SD_RETURN_IF_ERROR(b.Get("smoothing", &o.smoothing));
  SD_RETURN_IF_ERROR(b.Get("down_factor", &o.down_factor));
  SD_RETURN_IF_ERROR(b.Get("hold_s", &o.hold_s));
  SD_RETURN_IF_ERROR(b.Get("scene_change", &o.scene_change));
  return b.Check(c->Budget().Validate());
}

Status ReadSource(const YamlReader& root, FrameSourceOptions* s, ReopenOptions* reconnect) {
  SD_ASSIGN_OR_RETURN(YamlReader source, root.Child("source"));
  SD_RETURN_IF_ERROR(source.Require("uri", &s->uri));
  SD_RETURN_IF_ERROR(source.Get("loop", &s->loop));
  SD_RETURN_IF_ERROR(source.Get("realtime", &s->realtime));
  SD_RETURN_IF_ERROR(source.Get("fps", &s->fps_override));
  SD_RETURN_IF_ERROR(source.Get("start_frame", &s->start_frame));
  SD_RETURN_IF_ERROR(source.Get("end_frame", &s->end_frame));
  SD_RETURN_IF_ERROR(source.Get("stride", &s->stride));
  SD_RETURN_IF_ERROR(source.Get("timeout_s", &s->stream_timeout_s));
  SD_RETURN_IF_ERROR(source.Check(s->Validate(), {{"fps_override", "fps"}, {"stream_timeout_s", "timeout_s"}}));
  SD_ASSIGN_OR_RETURN(YamlReader reopen, source.Child("reconnect"));
  SD_RETURN_IF_ERROR(reopen.Get("backoff_initial_s", &reconnect->backoff_initial_s));
  SD_RETURN_IF_ERROR(reopen.Get("backoff_max_s", &reconnect->backoff_max_s));
  return reopen.Check(reconnect->Validate());
}

// `zones:`: a list of {name, polygon, units, ignore}.
Status ReadZones(const YamlReader& root, std::vector<DetectionZone>* zones) {
  SD_ASSIGN_OR_RETURN(std::vector<YamlReader> items, root.Items("zones"));
  for (const YamlReader& item : items) {
    DetectionZone zone;
    SD_RETURN_IF_ERROR(item.Require("name", &zone.name));
    if (!IsValidMaskName(zone.name))
      return item.Error("name", "1-64 characters of A-Z a-z 0-9 _ . - (it tags detections in the output)");
    for (const DetectionZone& other : *zones)
      if (other.name == zone.name) return item.Error("name", "'" + zone.name + "' names another zone already");
    SD_RETURN_IF_ERROR(ReadFramePolygon(item, &zone.polygon));
    SD_RETURN_IF_ERROR(item.Get("ignore", &zone.ignore));
    zones->push_back(std::move(zone));
  }
  return Status::Ok();
}

// `privacy:`: masks (a list of {name, polygon, units}), faces {...}, student_sees.
Status ReadPrivacy(const YamlReader& root, PrivacyOptions* p) {
  SD_ASSIGN_OR_RETURN(YamlReader privacy, root.Child("privacy"));
  SD_ASSIGN_OR_RETURN(std::vector<YamlReader> masks, privacy.Items("masks"));
  for (const YamlReader& item : masks) {
    PrivacyMask mask;
    SD_RETURN_IF_ERROR(item.Require("name", &mask.name));
    if (!IsValidMaskName(mask.name))
      return item.Error("name", "1-64 characters of A-Z a-z 0-9 _ . - (it is stored and shown with each frame)");
    for (const PrivacyMask& other : p->masks)
      if (other.name == mask.name) return item.Error("name", "'" + mask.name + "' names another mask already");
    SD_RETURN_IF_ERROR(ReadFramePolygon(item, &mask.polygon));
    p->masks.push_back(std::move(mask));
  }
  SD_ASSIGN_OR_RETURN(YamlReader faces, privacy.Child("faces"));
  FaceRedactionOptions& f = p->faces;
  SD_RETURN_IF_ERROR(faces.Get("enabled", &f.enabled));
  SD_RETURN_IF_ERROR(faces.Get("cascade", &f.cascade));
  std::string redact = f.redact == Redaction::kFill ? "fill" : "blur";
  SD_RETURN_IF_ERROR(faces.Get("redact", &redact));
  if (redact != "fill" && redact != "blur") return faces.Error("redact", "must be fill or blur");
  f.redact = redact == "fill" ? Redaction::kFill : Redaction::kBlur;
  SD_RETURN_IF_ERROR(faces.Get("min_size", &f.min_size));
  SD_RETURN_IF_ERROR(faces.Get("margin", &f.margin));
  SD_RETURN_IF_ERROR(faces.Get("scale_factor", &f.scale_factor));
  SD_RETURN_IF_ERROR(faces.Get("min_neighbors", &f.min_neighbors));
  SD_RETURN_IF_ERROR(faces.Check(f.Validate()));
  if (f.enabled) {
    // Loaded here, not first at start-up, so that a bad file is a config error at its key.
    StatusOr<std::unique_ptr<PrivacyFilter>> probe = PrivacyFilter::Create(*p);
    if (!probe.ok()) return faces.Error("cascade", probe.status().message());
  }
  std::string student_sees = p->student_sees_masked ? "masked" : "whole";
  SD_RETURN_IF_ERROR(privacy.Get("student_sees", &student_sees));
  if (student_sees != "whole" && student_sees != "masked") return privacy.Error("student_sees", "must be whole or masked");
  p->student_sees_masked = student_sees == "masked";
  return Status::Ok();
}

// A path that libmosquitto opens at connect, checked readable now (exit 2 naming the key).
Status ReadPathAtKey(const YamlReader& section, const std::string& key, std::string* path) {
  SD_RETURN_IF_ERROR(ReadFileAtKey(section, key).status());
  return section.Get(key, path);
}

// `mqtt:` (the edge's device id goes into the topics) and `tracking:`.
Status ReadMqtt(const YamlReader& root, const std::string& device_id, MqttOptions* m, TrackerOptions* t) {
  SD_ASSIGN_OR_RETURN(YamlReader mqtt, root.Child("mqtt"));
  m->device_id = device_id;
  SD_RETURN_IF_ERROR(mqtt.Get("enabled", &m->enabled));
  SD_RETURN_IF_ERROR(mqtt.Get("broker", &m->broker));
  SD_RETURN_IF_ERROR(mqtt.Get("client_id", &m->client_id));
  SD_RETURN_IF_ERROR(mqtt.Get("topic_prefix", &m->topic_prefix));
  SD_RETURN_IF_ERROR(mqtt.Get("qos", &m->qos));
  SD_RETURN_IF_ERROR(mqtt.Get("keepalive_s", &m->keepalive_s));
  SD_RETURN_IF_ERROR(ReadSecretFile(mqtt, "username_file", &m->username));
  SD_RETURN_IF_ERROR(ReadSecretFile(mqtt, "password_file", &m->password));
  SD_ASSIGN_OR_RETURN(YamlReader tls, mqtt.Child("tls"));
  SD_RETURN_IF_ERROR(ReadPathAtKey(tls, "ca", &m->tls_ca));
  SD_RETURN_IF_ERROR(ReadPathAtKey(tls, "cert", &m->tls_cert));
  SD_RETURN_IF_ERROR(ReadPathAtKey(tls, "key", &m->tls_key));
  SD_RETURN_IF_ERROR(mqtt.Get("queue_max_events", &m->queue_max_events));
  SD_RETURN_IF_ERROR(mqtt.Get("queue_max_bytes", &m->queue_max_bytes));
  SD_RETURN_IF_ERROR(mqtt.Get("max_in_flight", &m->max_in_flight));
  SD_RETURN_IF_ERROR(mqtt.Get("backoff_initial_s", &m->backoff_initial_s));
  SD_RETURN_IF_ERROR(mqtt.Get("backoff_max_s", &m->backoff_max_s));
  SD_RETURN_IF_ERROR(mqtt.Get("drain_s", &m->drain_s));
  const Status valid = m->Validate();
  if (!valid.ok() && valid.message().rfind("device_id: ", 0) == 0) return root.Check(valid);  // a root key
  SD_RETURN_IF_ERROR(mqtt.Check(valid, {{"tls_ca", "tls.ca"},
                                                {"tls_cert", "tls.cert"},
                                                {"tls_key", "tls.key"}}));
  SD_ASSIGN_OR_RETURN(YamlReader tracking, root.Child("tracking"));
  SD_RETURN_IF_ERROR(tracking.Get("match_iou", &t->match_iou));
  SD_RETURN_IF_ERROR(tracking.Get("end_after_frames", &t->end_after_frames));
  SD_RETURN_IF_ERROR(tracking.Get("end_after_s", &t->end_after_s));
  SD_RETURN_IF_ERROR(tracking.Get("update_interval_s", &t->update_interval_s));
  SD_RETURN_IF_ERROR(tracking.Get("update_box_iou", &t->update_box_iou));
  SD_RETURN_IF_ERROR(tracking.Get("update_score_change", &t->update_score_change));
  return tracking.Check(t->Validate());
}

}  // namespace

Status TlsClientOptions::Validate() const {
  if (cert.empty() != key.empty()) return Status::InvalidArgument("cert: cert and key must be given together");
  if (!cert.empty() && ca.empty())
    return Status::InvalidArgument("cert: a client certificate needs tls.ca: without it the link would be plaintext");
  return Status::Ok();
}

Status EdgeConfig::Validate() const {
  if (threads < 1) return Status::InvalidArgument("threads: must be >= 1");
  if (detect_every < 1) return Status::InvalidArgument("detect_every: must be >= 1");
  return Upload().Validate();
}

FrameEncodingOptions EdgeConfig::Upload() const {
  FrameEncodingOptions options;
  options.jpeg_quality = jpeg_quality;
  options.max_width = upload_max_width;
  options.max_message_bytes = uplink.max_message_bytes;
  options.aggregate = sampling.aggregate;
  return options;
}

Status UplinkOptions::Validate() const {
  if (max_in_flight < 1) return Status::InvalidArgument("max_in_flight: must be >= 1");
  if (!(backoff_initial_s > 0) || backoff_max_s < backoff_initial_s)
    return Status::InvalidArgument("backoff_max_s: need 0 < backoff_initial_s <= backoff_max_s");
  if (!(stall_timeout_s > 0) || !std::isfinite(stall_timeout_s))
    return Status::InvalidArgument("stall_timeout_s: must be > 0");
  return Status::Ok();
}

Status ReadSamplerOptions(const YamlReader& s, SamplerOptions* o) {
  std::string strategy = SamplerStrategyName(o->strategy);
  SD_RETURN_IF_ERROR(s.Get("strategy", &strategy));
  StatusOr<SamplerStrategy> parsed_strategy = ParseSamplerStrategy(strategy);
  if (!parsed_strategy.ok()) return s.Error("strategy", parsed_strategy.status().message());
  o->strategy = *parsed_strategy;
  SD_RETURN_IF_ERROR(s.Get("budget_per_minute", &o->budget_per_minute));
  SD_RETURN_IF_ERROR(s.Get("budget_total", &o->budget_total));
  SD_RETURN_IF_ERROR(s.Get("uniform_probability", &o->uniform_probability));
  SD_RETURN_IF_ERROR(s.Get("uniform_every", &o->uniform_every));
  std::string aggregate = ScoreAggregateName(o->aggregate);
  SD_RETURN_IF_ERROR(s.Get("score", &aggregate));
  auto parsed = ParseScoreAggregate(aggregate);
  if (!parsed.ok()) return s.Error("score", parsed.status().message());
  o->aggregate = *parsed;
  if (s.Has("percentile")) {  // absent: the strategy's own default
    double percentile = 0;
    SD_RETURN_IF_ERROR(s.Get("percentile", &percentile));
    o->percentile = percentile;
  }
  SD_RETURN_IF_ERROR(s.Get("warmup_frames", &o->warmup_frames));
  SD_RETURN_IF_ERROR(s.Get("window_frames", &o->window_frames));
  SD_RETURN_IF_ERROR(s.Get("seed", &o->seed));
  SD_RETURN_IF_ERROR(s.Get("diversity_history", &o->diversity_history));
  SD_RETURN_IF_ERROR(s.Get("pool_size", &o->pool_size));
  SD_RETURN_IF_ERROR(s.Get("pool_window_s", &o->pool_window_s));
  SD_RETURN_IF_ERROR(s.Get("gamma", &o->gamma));
  SD_RETURN_IF_ERROR(s.Get("ams_initial_rate", &o->ams_initial_rate));
  SD_RETURN_IF_ERROR(s.Get("ams_min_rate", &o->ams_min_rate));
  SD_RETURN_IF_ERROR(s.Get("ams_max_rate", &o->ams_max_rate));
  SD_RETURN_IF_ERROR(s.Get("ams_update_every", &o->ams_update_every));
  SD_RETURN_IF_ERROR(s.Get("coverage_share", &o->coverage_share));
  SD_RETURN_IF_ERROR(s.Get("diversity_weight", &o->diversity_weight));
  return s.Check(o->Validate(), {{"aggregate", "score"}});
}

namespace {

Status Parse(const YamlReader& root, EdgeConfig* c) {
  SD_RETURN_IF_ERROR(ReadUplink(root, &c->uplink));
  SD_RETURN_IF_ERROR(ReadSource(root, &c->source, &c->reconnect));
  SD_ASSIGN_OR_RETURN(YamlReader student, root.Child("student"));
  SD_RETURN_IF_ERROR(ReadStudentArchitecture(student, &c->student));
  SD_RETURN_IF_ERROR(root.Get("init_weights", &c->init_weights));
  SD_RETURN_IF_ERROR(root.Get("model_seed", &c->model_seed));
  SD_ASSIGN_OR_RETURN(YamlReader inference, root.Child("inference"));
  SD_RETURN_IF_ERROR(ReadInferenceOptions(inference, &c->inference));
  SD_RETURN_IF_ERROR(root.Get("threads", &c->threads));
  SD_RETURN_IF_ERROR(root.Get("detect_every", &c->detect_every));
  SD_ASSIGN_OR_RETURN(YamlReader sink, root.Child("detections"));
  SD_RETURN_IF_ERROR(sink.Get("path", &c->sink.path));
  SD_RETURN_IF_ERROR(sink.Get("annotated_dir", &c->sink.annotated_dir));
  SD_RETURN_IF_ERROR(sink.Get("annotate_every", &c->sink.annotate_every));
  SD_RETURN_IF_ERROR(sink.Check(c->sink.Validate()));
  SD_RETURN_IF_ERROR(ReadZones(root, &c->zones));
  SD_ASSIGN_OR_RETURN(YamlReader sampling, root.Child("sampling"));
  SD_RETURN_IF_ERROR(ReadSamplerOptions(sampling, &c->sampling));
  SD_RETURN_IF_ERROR(ReadBudget(root, c));
  SD_ASSIGN_OR_RETURN(YamlReader upload, root.Child("upload"));
  SD_RETURN_IF_ERROR(upload.Get("jpeg_quality", &c->jpeg_quality));
  SD_RETURN_IF_ERROR(upload.Get("max_width", &c->upload_max_width));
  SD_RETURN_IF_ERROR(ReadPrivacy(root, &c->privacy));
  SD_RETURN_IF_ERROR(ReadMqtt(root, c->uplink.device_id, &c->mqtt, &c->tracking));
  SD_RETURN_IF_ERROR(root.Get("state_dir", &c->state_dir));
  SD_ASSIGN_OR_RETURN(YamlReader spool, root.Child("spool"));
  c->spool.dir = c->state_dir + "/spool";
  SD_RETURN_IF_ERROR(spool.Get("dir", &c->spool.dir));
  int max_mb = static_cast<int>(c->spool.max_bytes >> 20);
  SD_RETURN_IF_ERROR(spool.Get("max_mb", &max_mb));
  SD_RETURN_IF_ERROR(spool.Get("max_frames", &c->spool.max_frames));
  if (max_mb < 1) return spool.Error("max_mb", "must be >= 1");  // a unit of the file, not of SpoolOptions
  c->spool.max_bytes = static_cast<int64_t>(max_mb) << 20;
  SD_RETURN_IF_ERROR(spool.Check(c->spool.Validate(), {{"max_bytes", "max_mb"}}));
  SD_RETURN_IF_ERROR(root.Get("linger_s", &c->linger_s));
  SD_RETURN_IF_ERROR(root.Get("summary_path", &c->summary_path));
  SD_RETURN_IF_ERROR(ReadHttpOptions(root, &c->http));
  SD_RETURN_IF_ERROR(root.Check(c->Validate(), {{"jpeg_quality", "upload.jpeg_quality"}}));
  return root.CheckAllKeysUsed();
}

}  // namespace

StatusOr<EdgeConfig> ParseEdgeConfig(const std::string& yaml_text, const std::string& name) {
  return LoadYamlConfig<EdgeConfig>(YamlReader::FromString(yaml_text, name), &Parse);
}

StatusOr<EdgeConfig> LoadEdgeConfig(const std::string& path) {
  return LoadYamlConfig<EdgeConfig>(YamlReader::FromFile(path), &Parse);
}

}  // namespace sd
