#include "common/base/progress.h"

#include <unistd.h>

#include <cinttypes>

namespace sd {

ProgressLine::ProgressLine(std::string label, int64_t total, FILE* out)
    : label_(std::move(label)), total_(total), out_(out), tty_(isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

void ProgressLine::Update(int64_t done, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  Print(done, detail, false);
}

void ProgressLine::Finish(const std::string& detail) { Print(total_, detail, true); }

void ProgressLine::Print(int64_t done, const std::string& detail, bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // Under a tenth of a second (a cache hit) a rate means nothing.
  const double rate = elapsed > 0.1 ? done / elapsed : 0;
  const double eta = rate > 0 && total_ > done ? (total_ - done) / rate : 0;
  char bar[24] = {0};
  const int filled = total_ > 0 ? static_cast<int>(20.0 * done / total_) : 0;
  for (int i = 0; i < 20; ++i) bar[i] = i < filled ? '#' : '.';
  std::fprintf(out_, "%s%-10s [%s] %5" PRId64 "/%" PRId64 "  %5.1f/s  %s %4.0fs  %s%s", tty_ ? "\r\033[K" : "",
               label_.c_str(), bar, done, total_, rate, final ? "took" : "eta", final ? elapsed : eta,
               detail.c_str(), (final || !tty_) ? "\n" : "");
  std::fflush(out_);
}

}  // namespace sd
