// The command-line start every offline tool shares (streamdistill-train, -eval, -bench).
#pragma once

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <optional>

namespace sd {

// Parses the arguments. nullopt: go on; otherwise the exit code to return at once (0 after
// --help, 2 for a usage error, with CLI11's message printed). Also quiets the library logs to
// warnings and line-buffers stdout, so progress and results reach logs as they happen.
inline std::optional<int> ParseToolCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  spdlog::set_level(spdlog::level::warn);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return std::nullopt;
}

}  // namespace sd
