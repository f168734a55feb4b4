// Connections to the cluster backend's PostgreSQL (docs/scale-out.md): a small pool shared by
// every part of one replica (frame store, admin store, enrolment, leases), and the one place
// that turns libpqxx's exceptions into Status values with context.
//
// The DSN is libpq's (`host=... dbname=...` or `postgresql://...`); its password may come from
// a file or an environment variable (PgOptions), never from the config in clear, and it is
// never logged: messages name the DSN with the password elided.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/mutex.h"
#include "common/base/status.h"

namespace pqxx {
class dbtransaction;
}  // namespace pqxx

namespace sd {

struct PgOptions {
  std::string dsn;            // libpq connection string or URI, without the password
  std::string password_file;  // a file holding the password (its first line)
  std::string password_env;   // or an environment variable holding it
  int connections = 4;        // pooled connections of this replica
  double connect_timeout_s = 5;
  // dsn set; at most one of password_file and password_env; connections >= 1. Messages start
  // with the field's name (YamlReader::Check maps it to the key).
  Status Validate() const;
};

// The DSN with any password (key=value or URI form) replaced by "***", for messages.
std::string RedactDsn(const std::string& dsn);

class PgPool {
 public:
  // Connects `options.connections` connections now: Unavailable naming the (redacted) DSN when
  // the server cannot be reached or refuses the credentials.
  static StatusOr<std::unique_ptr<PgPool>> Connect(const PgOptions& options);
  ~PgPool();

  // Runs `body` in one serializable-enough (read committed) transaction on a pooled connection
  // and commits it; the body's Status decides: an error rolls back. libpqxx exceptions become
  // Status with `what` as context: a lost connection Unavailable (the connection is remade on
  // its next use), a unique violation AlreadyExists, a full disk ResourceExhausted, a
  // serialization failure or deadlock Aborted (retried up to 3 times here), others Internal.
  // An exception thrown by the commit itself leaves the outcome unknown: `maybe_committed`
  // (when given) says so.
  Status Transact(const std::string& what, const std::function<Status(pqxx::dbtransaction&)>& body,
                  bool* maybe_committed = nullptr) const;
  const std::string& redacted_dsn() const { return redacted_dsn_; }

 private:
  struct Slot;
  PgPool(std::string conninfo, std::string redacted, int size);
  // A connected slot; waits while all are in use.
  StatusOr<Slot*> Borrow() const SD_EXCLUDES(mu_);
  void Return(Slot* slot) const SD_EXCLUDES(mu_);

  const std::string conninfo_;  // with the password: never logged
  const std::string redacted_dsn_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable Mutex mu_;
  mutable CondVar free_cv_{&mu_};
  mutable std::vector<Slot*> free_ SD_GUARDED_BY(mu_);
};

}  // namespace sd
