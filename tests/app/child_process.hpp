// Runs the real sdgen binary as a child the test can signal and constrain, without a shell: the
// arguments reach sdgen byte for byte (invalid UTF-8 included), the child's limits are set between
// fork and exec (RLIMIT_FSIZE simulates a full disk without privileges), and its output goes to a
// file so that a chatty child can never block on a full pipe while the test polls.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/paths.hpp"

namespace sdgen::test {

struct ChildLimits {
  std::optional<rlim_t> file_size;  // RLIMIT_FSIZE in bytes; SIGXFSZ is ignored so writes fail with EFBIG
};

struct ChildResult {
  int exit_code = -1;     // -1 when the child was killed by a signal
  long peak_rss_kib = 0;  // the child's maximum resident set, from wait4
  std::string output;     // stdout and stderr together
};

class SdgenChild {
 public:
  SdgenChild(const std::vector<std::string>& args, const std::filesystem::path& output_file, ChildLimits limits = {})
      : output_file_(output_file) {
    std::vector<std::string> argv_strings{sdgen_binary().string()};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {  // the child: only async-signal-safe calls until exec
      const int fd = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) ::_exit(127);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      // The test runner may have set these to be ignored or caught; sdgen starts from the defaults.
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      if (limits.file_size) {
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{*limits.file_size, *limits.file_size};
        ::setrlimit(RLIMIT_FSIZE, &limit);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~SdgenChild() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  SdgenChild(const SdgenChild&) = delete;
  SdgenChild& operator=(const SdgenChild&) = delete;

  void send(int signal) const { REQUIRE(::kill(pid_, signal) == 0); }

  // Polls `ready` every 10 ms until it holds (true) or the child has exited or `timeout` passed
  // (false): the test's synchronisation with the child, never a bare sleep.
  bool wait_until(const std::function<bool()>& ready, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (ready()) return true;
      if (exited()) return ready();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  ChildResult wait() {
    ChildResult result;
    if (!reaped_) {
      rusage usage{};
      REQUIRE(::wait4(pid_, &status_, 0, &usage) == pid_);
      reaped_ = true;
      peak_rss_kib_ = usage.ru_maxrss;
    }
    result.exit_code = WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
    result.peak_rss_kib = peak_rss_kib_;
    std::ifstream in(output_file_, std::ios::binary);
    result.output.assign(std::istreambuf_iterator<char>(in), {});
    return result;
  }

 private:
  bool exited() {
    if (reaped_) return true;
    rusage usage{};
    if (::wait4(pid_, &status_, WNOHANG, &usage) != pid_) return false;
    reaped_ = true;
    peak_rss_kib_ = usage.ru_maxrss;
    return true;
  }

  std::filesystem::path output_file_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  long peak_rss_kib_ = 0;
};

// Runs sdgen to completion.
inline ChildResult run_sdgen_child(const std::vector<std::string>& args, const std::filesystem::path& output_file,
                                   ChildLimits limits = {}) {
  SdgenChild child(args, output_file, limits);
  return child.wait();
}

}  // namespace sdgen::test
