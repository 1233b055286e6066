// Runs the real sdgen binary for command-line tests: exit code and combined output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "tests/support/paths.hpp"

namespace sdgen::test {

struct Run {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline std::string quoted(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// `args` is passed through the shell; quote paths with quoted(). `binary`: sdgen, or the build of it
// on the emulated GPU (sdgen_emulated_gpu_binary()).
inline Run run_sdgen(const std::string& args, const std::filesystem::path& binary = sdgen_binary()) {
  const std::string command = quoted(binary) + " " + args + " 2>&1";
  Run run;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buffer;
  while (std::fgets(buffer.data(), static_cast<int>(buffer.size()), pipe)) run.output += buffer.data();
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace sdgen::test
