#include "server/pg_connection.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <thread>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

namespace sd {

struct PgPool::Slot {
  std::unique_ptr<pqxx::connection> conn;  // null or closed: made again on the next Borrow
};

Status PgOptions::Validate() const {
  if (dsn.empty()) return Status::InvalidArgument("dsn must name the PostgreSQL server (libpq connection string)");
  if (!password_file.empty() && !password_env.empty())
    return Status::InvalidArgument("password_file and password_env are alternatives: set at most one");
  if (connections < 1) return Status::InvalidArgument("connections must be >= 1");
  if (!(connect_timeout_s > 0)) return Status::InvalidArgument("connect_timeout_s must be > 0");
  if (dsn.find("password") != std::string::npos)
    return Status::InvalidArgument(
        "dsn must not hold the password: put it in password_file or password_env (it would be in the config in clear)");
  return Status::Ok();
}

std::string RedactDsn(const std::string& dsn) {
  // key=value: password=secret or password='sec ret'; URI: user:secret@host, ?password=secret
  static const std::regex kv(R"((password\s*=\s*)('([^'\\]|\\.)*'|[^\s&]*))", std::regex::icase);
  static const std::regex uri(R"(^(postgres(ql)?://[^:/@]*):[^@/]*@)", std::regex::icase);
  std::string out = std::regex_replace(dsn, kv, "$1***");
  return std::regex_replace(out, uri, "$1:***@");
}

namespace {

bool IsUri(const std::string& dsn) { return dsn.rfind("postgresql://", 0) == 0 || dsn.rfind("postgres://", 0) == 0; }

std::string PercentEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string QuoteConninfoValue(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

StatusOr<std::string> ReadPassword(const PgOptions& options) {
  if (!options.password_file.empty()) {
    std::ifstream in(options.password_file);
    std::string line;
    if (!in || !std::getline(in, line))
      return Status::InvalidArgument("storage.password_file: cannot read " + options.password_file);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    return line;
  }
  if (!options.password_env.empty()) {
    const char* value = std::getenv(options.password_env.c_str());
    if (value == nullptr) return Status::InvalidArgument("storage.password_env: $" + options.password_env + " is not set");
    return std::string(value);
  }
  return std::string();
}

StatusOr<std::string> Conninfo(const PgOptions& options) {
  SD_ASSIGN_OR_RETURN(const std::string password, ReadPassword(options));
  std::string conninfo = options.dsn;
  const int timeout = std::max(1, static_cast<int>(options.connect_timeout_s + 0.5));
  if (IsUri(conninfo)) {
    const char sep = conninfo.find('?') == std::string::npos ? '?' : '&';
    conninfo += sep + std::string("connect_timeout=") + std::to_string(timeout);
    if (!password.empty()) conninfo += "&password=" + PercentEncode(password);
  } else {
    conninfo += " connect_timeout=" + std::to_string(timeout);
    if (!password.empty()) conninfo += " password=" + QuoteConninfoValue(password);
  }
  return conninfo;
}

// libpq's messages end in newlines and may span lines; one line for our logs.
std::string OneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

PgPool::PgPool(std::string conninfo, std::string redacted, int size)
    : conninfo_(std::move(conninfo)), redacted_dsn_(std::move(redacted)) {
  for (int i = 0; i < size; ++i) slots_.push_back(std::make_unique<Slot>());
  MutexLock lock(&mu_);
  for (auto& slot : slots_) free_.push_back(slot.get());
}

PgPool::~PgPool() = default;

StatusOr<std::unique_ptr<PgPool>> PgPool::Connect(const PgOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate());
  SD_ASSIGN_OR_RETURN(std::string conninfo, Conninfo(options));
  std::unique_ptr<PgPool> pool(new PgPool(std::move(conninfo), RedactDsn(options.dsn), options.connections));
  // Every connection now: a wrong DSN or password fails the start, not the first frame.
  std::vector<Slot*> borrowed;
  Status first_error = Status::Ok();
  for (int i = 0; i < options.connections; ++i) {
    auto slot = pool->Borrow();
    if (!slot.ok()) {
      first_error = slot.status();
      break;
    }
    borrowed.push_back(*slot);
  }
  for (Slot* s : borrowed) pool->Return(s);
  SD_RETURN_IF_ERROR(first_error);
  return pool;
}

StatusOr<PgPool::Slot*> PgPool::Borrow() const {
  Slot* slot = nullptr;
  {
    MutexLock lock(&mu_);
    while (free_.empty()) free_cv_.WaitFor(std::chrono::milliseconds(200));
    slot = free_.back();
    free_.pop_back();
  }
  if (slot->conn && slot->conn->is_open()) return slot;
  try {
    slot->conn = std::make_unique<pqxx::connection>(conninfo_);
    return slot;
  } catch (const std::exception& e) {
    slot->conn.reset();
    Return(slot);
    return Status::Unavailable("PostgreSQL at '" + redacted_dsn_ + "' cannot be reached: " + OneLine(e.what()));
  }
}

void PgPool::Return(Slot* slot) const {
  MutexLock lock(&mu_);
  free_.push_back(slot);
  free_cv_.Signal();
}

Status PgPool::Transact(const std::string& what, const std::function<Status(pqxx::dbtransaction&)>& body,
                        bool* maybe_committed) const {
  if (maybe_committed) *maybe_committed = false;
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    SD_ASSIGN_OR_RETURN(Slot* slot, Borrow());
    Status outcome = Status::Ok();
    bool retry = false;
    bool committing = false;
    try {
      pqxx::work tx(*slot->conn);
      outcome = body(tx);
      if (outcome.ok()) {
        committing = true;
        tx.commit();
      }  // else: the destructor rolls back
    } catch (const pqxx::in_doubt_error& e) {
      if (maybe_committed) *maybe_committed = true;
      outcome = Status::Unavailable(what + ": the commit's outcome is unknown: " + OneLine(e.what()));
      slot->conn.reset();
    } catch (const pqxx::broken_connection& e) {
      if (committing && maybe_committed) *maybe_committed = true;
      outcome = Status::Unavailable(what + ": lost the connection to PostgreSQL at '" + redacted_dsn_ +
                                    "': " + OneLine(e.what()));
      slot->conn.reset();
    } catch (const pqxx::unique_violation& e) {
      outcome = Status::AlreadyExists(what + ": " + OneLine(e.what()));
    } catch (const pqxx::insufficient_resources& e) {
      outcome = Status::ResourceExhausted(what + ": PostgreSQL is out of resources (disk or memory): " +
                                          OneLine(e.what()));
    } catch (const pqxx::sql_error& e) {
      const std::string state = e.sqlstate();
      // 40001 serialization failure, 40P01 deadlock: nothing was done; the same work again.
      if ((state == "40001" || state == "40P01") && attempt < kAttempts) {
        retry = true;
      } else if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
        // connection exceptions; admin shutdown, crash shutdown, cannot connect now
        outcome = Status::Unavailable(what + ": PostgreSQL is unavailable: " + OneLine(e.what()));
        slot->conn.reset();
      } else {
        outcome = Status::Internal(what + ": " + OneLine(e.what()) + " [SQLSTATE " + state + "]");
      }
    } catch (const std::exception& e) {
      outcome = Status::Internal(what + ": " + OneLine(e.what()));
    }
    if (slot->conn && !slot->conn->is_open()) slot->conn.reset();
    Return(slot);
    if (!retry) return outcome;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
  }
}

}  // namespace sd
