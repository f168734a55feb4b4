// A one-line progress display for long jobs: rewritten in place on a terminal, printed as
// a plain line every few seconds otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace sd {

class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total, FILE* out = stderr);
  // Shows `done` of total with rate and ETA, plus `detail`; rate-limited, cheap to call often.
  void Update(int64_t done, const std::string& detail = "");
  void Finish(const std::string& detail = "");

 private:
  void Print(int64_t done, const std::string& detail, bool final);
  std::string label_;
  int64_t total_;
  FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace sd
