#include "edge/mqtt_publisher.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include <mosquitto.h>
#include <spdlog/spdlog.h>

namespace sd {
namespace {

// A topic level from configuration: MQTT's wildcards and separator would change its meaning.
Status CheckTopicLevel(const char* field, const std::string& value, bool slashes_allowed) {
  if (value.empty()) return Status::InvalidArgument(std::string(field) + ": is empty");
  for (char c : value) {
    if (c == '+' || c == '#' || c == '\0' || (c == '/' && !slashes_allowed))
      return Status::InvalidArgument(std::string(field) + ": '" + value + "' holds '" + std::string(1, c) +
                                     "', which MQTT topics cannot carry here");
  }
  if (value.front() == '/' || value.back() == '/' || value.front() == '$')
    return Status::InvalidArgument(std::string(field) + ": '" + value + "' must not start with / or $ nor end with /");
  return Status::Ok();
}

std::string ErrorText(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

}  // namespace

StatusOr<BrokerAddress> ParseBrokerUri(const std::string& uri) {
  BrokerAddress address;
  std::string rest;
  for (const auto& [scheme, tls] : {std::pair<const char*, bool>{"tcp://", false}, {"mqtt://", false},
                                    {"ssl://", true}, {"mqtts://", true}}) {
    if (uri.rfind(scheme, 0) == 0) {
      address.tls = tls;
      rest = uri.substr(std::strlen(scheme));
      break;
    }
  }
  const std::string expected = "expected tcp://host[:port] or ssl://host[:port], got '" + uri + "'";
  if (rest.empty() || rest.find('/') != std::string::npos) return Status::InvalidArgument("broker: " + expected);
  std::string port_text;
  if (rest.front() == '[') {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("broker: " + expected);
    address.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return Status::InvalidArgument("broker: " + expected);
      port_text = rest.substr(close + 2);
    }
  } else {
    const size_t colon = rest.find(':');
    address.host = rest.substr(0, colon);
    if (colon != std::string::npos) port_text = rest.substr(colon + 1);
  }
  if (address.host.empty()) return Status::InvalidArgument("broker: " + expected);
  address.port = address.tls ? 8883 : 1883;
  if (!port_text.empty() || rest.back() == ':') {
    int port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return Status::InvalidArgument("broker: bad port in '" + uri + "'");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return Status::InvalidArgument("broker: bad port in '" + uri + "'");
    address.port = port;
  }
  return address;
}

Status MqttOptions::Validate() const {
  StatusOr<BrokerAddress> address = ParseBrokerUri(broker);
  if (!address.ok()) return address.status();
  SD_RETURN_IF_ERROR(CheckTopicLevel("topic_prefix", topic_prefix, true));
  if (enabled) SD_RETURN_IF_ERROR(CheckTopicLevel("device_id", device_id, false));
  if (qos < 0 || qos > 2) return Status::InvalidArgument("qos: must be 0, 1 or 2, got " + std::to_string(qos));
  if (keepalive_s < 5 || keepalive_s > 65535) return Status::InvalidArgument("keepalive_s: must be 5 .. 65535");
  if (!password.empty() && username.empty())
    return Status::InvalidArgument("password_file: a password needs a username_file (MQTT 3.1.1)");
  if (tls_cert.empty() != tls_key.empty()) return Status::InvalidArgument("tls_cert: cert and key must be given together");
  if (!address->tls && !(tls_ca.empty() && tls_cert.empty()))
    return Status::InvalidArgument("tls_ca: TLS files are set but broker is not ssl:// (the link would be plaintext)");
  if (queue_max_events < 1) return Status::InvalidArgument("queue_max_events: must be >= 1");
  if (queue_max_bytes < 1024) return Status::InvalidArgument("queue_max_bytes: must be >= 1024");
  if (max_in_flight < 1 || max_in_flight > 65535) return Status::InvalidArgument("max_in_flight: must be 1 .. 65535");
  if (!(backoff_initial_s > 0) || !(backoff_max_s >= backoff_initial_s))
    return Status::InvalidArgument("backoff_max_s: need 0 < backoff_initial_s <= backoff_max_s");
  if (!(drain_s >= 0)) return Status::InvalidArgument("drain_s: must be >= 0");
  return Status::Ok();
}

MqttPublisher::MqttPublisher(MqttOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      connect_log_("mqtt: connecting to " + options_.broker, clock),
      drop_log_("mqtt: queueing events (queue full, oldest dropped)", clock),
      backoff_s_(options_.backoff_initial_s) {}

StatusOr<std::unique_ptr<MqttPublisher>> MqttPublisher::Create(const MqttOptions& options, Clock* clock) {
  SD_RETURN_IF_ERROR(options.Validate().WithContext("mqtt"));
  SD_ASSIGN_OR_RETURN(const BrokerAddress address, ParseBrokerUri(options.broker));
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });  // never cleaned up: other publishers may live
  std::unique_ptr<MqttPublisher> publisher(new MqttPublisher(options, clock));
  // A persistent session (clean_session false): with a broker that keeps sessions, QoS 2 state
  // survives a reconnect and a broker restart.
  publisher->client_ = mosquitto_new(options.ClientId().c_str(), false, publisher.get());
  if (publisher->client_ == nullptr) return Status::Internal("mqtt: cannot create a client: " + ErrorText(MOSQ_ERR_ERRNO));
  mosquitto* client = publisher->client_;
  mosquitto_connect_callback_set(client, [](mosquitto*, void* self, int rc) {
    static_cast<MqttPublisher*>(self)->OnConnect(rc);
  });
  mosquitto_disconnect_callback_set(client, [](mosquitto*, void* self, int rc) {
    static_cast<MqttPublisher*>(self)->OnDisconnect(rc);
  });
  mosquitto_publish_callback_set(client, [](mosquitto*, void* self, int mid) {
    static_cast<MqttPublisher*>(self)->OnPublish(mid);
  });
  const std::string availability = options.AvailabilityTopic();
  int rc = mosquitto_will_set(client, availability.c_str(), 7, "offline", options.qos, true);
  if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("mqtt: last will: " + ErrorText(rc));
  if (!options.username.empty()) {
    rc = mosquitto_username_pw_set(client, options.username.c_str(),
                                   options.password.empty() ? nullptr : options.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("mqtt.username_file: " + ErrorText(rc));
  }
  // libmosquitto says why a TLS handshake failed only in its log ("OpenSSL Error[0]: ...
  // certificate verify failed"); its return code is just MOSQ_ERR_TLS. Kept for the warning.
  mosquitto_log_callback_set(client, [](mosquitto*, void* self, int level, const char* text) {
    if (level == MOSQ_LOG_ERR) static_cast<MqttPublisher*>(self)->OnClientError(text);
  });
  if (address.tls) {
    auto or_null = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
    // Without a password callback OpenSSL asks for an encrypted key's passphrase on the
    // terminal, from the network thread, at every connect. There is no key for a passphrase,
    // so an encrypted key fails the connect with a warning instead.
    auto no_passphrase = [](char*, int, int, void*) { return 0; };
    // Without a CA file the system's trust store verifies the broker.
    rc = mosquitto_tls_set(client, or_null(options.tls_ca), options.tls_ca.empty() ? "/etc/ssl/certs" : nullptr,
                           or_null(options.tls_cert), or_null(options.tls_key), no_passphrase);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("mqtt.tls: " + ErrorText(rc));
  }
  return publisher;
}

MqttPublisher::~MqttPublisher() {
  Stop();
  if (client_ != nullptr) mosquitto_destroy(client_);
}

void MqttPublisher::Start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void MqttPublisher::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void MqttPublisher::Enqueue(uint64_t sequence, std::string payload) {
  int64_t dropped = 0;
  uint64_t dropped_sequence = 0;
  {
    MutexLock lock(&mu_);
    pending_bytes_ += static_cast<int64_t>(payload.size());
    pending_.push_back({sequence, std::move(payload)});
    while (!pending_.empty() && (static_cast<int64_t>(pending_.size()) > options_.queue_max_events ||
                                 pending_bytes_ > options_.queue_max_bytes)) {
      dropped_sequence = pending_.front().sequence;
      pending_bytes_ -= static_cast<int64_t>(pending_.front().payload.size());
      pending_.pop_front();
      ++dropped;
    }
    stats_.dropped += dropped;
  }
  if (dropped > 0) {
    drop_log_.Failed(Status::ResourceExhausted(
        "the broker is away or slow and the queue holds queue_max_events " + std::to_string(options_.queue_max_events) +
        " / queue_max_bytes " + std::to_string(options_.queue_max_bytes) + "; dropped up to seq " +
        std::to_string(dropped_sequence)));
  } else {
    drop_log_.Succeeded();
  }
}

MqttStats MqttPublisher::stats() const {
  MutexLock lock(&mu_);
  MqttStats s = stats_;
  s.queued = static_cast<int64_t>(pending_.size() + in_flight_.size());
  s.connected = connected_;
  return s;
}

double MqttPublisher::NextBackoff() {
  const double delay = backoff_s_ * std::uniform_real_distribution<double>(0.5, 1.0)(jitter_);
  backoff_s_ = std::min(backoff_s_ * 2, options_.backoff_max_s);
  return delay;
}

void MqttPublisher::OnConnect(int rc) {
  if (rc != 0) {
    // The broker answered and said no: wrong credentials, a client id it refuses. The edge goes
    // on detecting; this is logged when it starts and then at most every 30 s.
    {
      MutexLock lock(&mu_);
      ++stats_.connect_failures;
    }
    connect_log_.Failed(Status::Unauthenticated(std::string("the broker refused the connection: ") +
                                                mosquitto_connack_string(rc)));
    return;
  }
  bool reconnect = false;
  {
    MutexLock lock(&mu_);
    connected_ = true;
    reconnect = ever_connected_;
    ever_connected_ = true;
    if (reconnect) ++stats_.reconnects;
  }
  backoff_s_ = options_.backoff_initial_s;
  connect_log_.Succeeded();
  spdlog::info("mqtt: connected to {} as {}; events on {}", options_.broker, options_.ClientId(),
               options_.EventsTopic());
  const std::string availability = options_.AvailabilityTopic();
  mosquitto_publish(client_, nullptr, availability.c_str(), 6, "online", options_.qos, true);
}

void MqttPublisher::OnClientError(const char* text) {
  // The first lines of an attempt say most (OpenSSL's queue, oldest first); a bound on the rest.
  if (client_errors_.size() > 400) return;
  if (!client_errors_.empty()) client_errors_ += "; ";
  client_errors_ += text;
}

std::string MqttPublisher::CannotConnect(int rc, bool tls) const {
  const int error = errno;  // what ErrorText reads for MOSQ_ERR_ERRNO
  std::string text = "cannot connect: " + ErrorText(rc);
  if (!client_errors_.empty()) return text + " (" + client_errors_ + ")";
  // A broker that requires a client certificate and gets none it trusts ends the connection
  // after the handshake. When our CONNECT meets the closed socket before we read the broker's
  // alert, OpenSSL has no reason to give (mqtt_events_test: most runs on a busy machine), and
  // this is all there is to say.
  if (tls && (rc == MOSQ_ERR_CONN_LOST ||
              (rc == MOSQ_ERR_ERRNO && (error == EPROTO || error == ECONNRESET || error == EPIPE))))
    text += " (the broker closed the TLS connection without an answer, as one that requires a client "
            "certificate does when it gets none it trusts: see tls.cert, tls.key)";
  return text;
}

void MqttPublisher::OnDisconnect(int) {
  MutexLock lock(&mu_);
  connected_ = false;
}

void MqttPublisher::OnPublish(int mid) {
  if (mid == offline_mid_) offline_acked_ = true;
  MutexLock lock(&mu_);
  auto it = in_flight_.find(mid);
  if (it == in_flight_.end()) return;  // availability, or a QoS 0 event (counted when sent)
  in_flight_.erase(it);
  ++stats_.published;
}

void MqttPublisher::Pump() {
  const std::string topic = options_.EventsTopic();
  while (true) {
    Entry entry;
    {
      MutexLock lock(&mu_);
      if (!connected_ || pending_.empty() || static_cast<int>(in_flight_.size()) >= options_.max_in_flight) return;
      entry = std::move(pending_.front());
      pending_.pop_front();
      pending_bytes_ -= static_cast<int64_t>(entry.payload.size());
    }
    int mid = 0;
    // With QoS 1 and 2 the acknowledgement (OnPublish) can only come from a later
    // mosquitto_loop on this thread, so recording the id after this call is never too late.
    const int rc = mosquitto_publish(client_, &mid, topic.c_str(), static_cast<int>(entry.payload.size()),
                                     entry.payload.data(), options_.qos, false);
    MutexLock lock(&mu_);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
      pending_bytes_ += static_cast<int64_t>(entry.payload.size());
      pending_.push_front(std::move(entry));  // first again once connected
      return;
    }
    if (rc != MOSQ_ERR_SUCCESS) {  // this event cannot go at all (larger than the broker allows)
      ++stats_.dropped;
      spdlog::warn("mqtt: event seq {} dropped: {}", entry.sequence, ErrorText(rc));
      continue;
    }
    if (options_.qos == 0) {
      ++stats_.published;
    } else {
      in_flight_.emplace(mid, std::move(entry));
    }
  }
}

void MqttPublisher::Loop() {
  const BrokerAddress address = *ParseBrokerUri(options_.broker);  // validated in Create
  bool socket_open = false;
  double next_attempt_s = 0, attempt_started_s = 0, drain_until_s = -1;
  // No CONNACK within this long after the socket opened: the attempt failed.
  const double connect_timeout_s = std::max(5.0, static_cast<double>(options_.keepalive_s));
  auto retry_later = [&](double now) {
    socket_open = false;
    next_attempt_s = now + NextBackoff();
  };
  while (true) {
    const double now = clock_->NowSeconds();
    {
      MutexLock lock(&mu_);
      if (stopping_) {
        if (drain_until_s < 0) drain_until_s = now + options_.drain_s;
        if ((pending_.empty() && in_flight_.empty()) || now >= drain_until_s) break;
      }
      if (!socket_open && now < next_attempt_s) {
        wake_.WaitFor(std::chrono::milliseconds(50));
        continue;
      }
    }
    if (!socket_open) {
      attempt_started_s = now;
      client_errors_.clear();
      const int rc = mosquitto_connect_async(client_, address.host.c_str(), address.port, options_.keepalive_s);
      if (rc != MOSQ_ERR_SUCCESS) {
        {
          MutexLock lock(&mu_);
          ++stats_.connect_failures;
        }
        connect_log_.Failed(Status::Unavailable(CannotConnect(rc, address.tls)));
        retry_later(now);
        continue;
      }
      socket_open = true;
    }
    bool was_connected;
    {
      MutexLock lock(&mu_);
      was_connected = connected_;
    }
    const int rc = mosquitto_loop(client_, 50, 1);
    bool connected;
    {
      MutexLock lock(&mu_);
      if (rc != MOSQ_ERR_SUCCESS) connected_ = false;
      connected = connected_;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
      // A refusal was logged by OnConnect; a broker that went away is logged here. Events handed
      // over stay in flight: libmosquitto sends them again on the next connect.
      if (rc != MOSQ_ERR_CONN_REFUSED) {
        if (!was_connected) {
          MutexLock lock(&mu_);
          ++stats_.connect_failures;
        }
        connect_log_.Failed(
            Status::Unavailable(was_connected ? "connection lost: " + ErrorText(rc) : CannotConnect(rc, address.tls)));
      }
      retry_later(now);
      continue;
    }
    if (!connected && now - attempt_started_s > connect_timeout_s) {
      mosquitto_disconnect(client_);
      connect_log_.Failed(Status::Unavailable("no answer from the broker within " +
                                              std::to_string(static_cast<int>(connect_timeout_s)) + " s"));
      retry_later(now);
      continue;
    }
    Pump();
  }
  bool connected;
  {
    MutexLock lock(&mu_);
    connected = connected_;
  }
  if (!connected) return;
  // An orderly stop: a DISCONNECT suppresses the will, so `offline` is published here.
  const std::string availability = options_.AvailabilityTopic();
  // Up to a second for it to be acknowledged (QoS 2: a broker delivers only after PUBREL).
  offline_acked_ = false;
  const int rc = mosquitto_publish(client_, &offline_mid_, availability.c_str(), 7, "offline", options_.qos, true);
  const double until = clock_->NowSeconds() + 1;
  while (rc == MOSQ_ERR_SUCCESS && clock_->NowSeconds() < until &&
         (options_.qos == 0 ? mosquitto_want_write(client_) : !offline_acked_))
    mosquitto_loop(client_, 20, 1);
  mosquitto_disconnect(client_);
  mosquitto_loop(client_, 20, 1);
}

}  // namespace sd
