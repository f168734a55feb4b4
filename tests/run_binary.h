// Runs one of the project's built binaries the way a user would (or another command, such as
// python3 reading their output), for the CLI tests.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace sd::testing {

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;  // stdout and stderr together
};

// Runs a shell command line. `timeout` bounds every run: a binary that starts serving
// instead of failing is killed.
inline RunResult RunCommand(const std::string& command_line, int timeout_s = 20) {
  const std::string command = "timeout -s KILL " + std::to_string(timeout_s) + " " + command_line + " 2>&1";
  RunResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// One of the project's binaries in the build folder.
inline RunResult RunBinary(const std::string& binary, const std::string& args, int timeout_s = 20) {
  return RunCommand(std::string(SD_BINARY_DIR) + "/" + binary + " " + args, timeout_s);
}

}  // namespace sd::testing
