// What every libFuzzer harness shares: how a finding is reported and how fuzzed bytes become a file.
//
// A harness does more than survive its input. Bad input must be refused with sdgen::Error (the
// message a user sees); any other exception escaping a parser (std::out_of_range from a stray
// substr, nlohmann's type_error, std::bad_alloc from a length read off the input) is a bug, and so
// is a result that breaks the parser's documented promises. Both end in finding(), which prints
// what was broken and aborts, so libFuzzer saves the input as crash-<sha1> like any other crash.
//
// The readers under test take paths, not buffers (they mmap or stream). Rather than refactor them
// for the fuzzer, the bytes go into an anonymous memfd, reachable through /proc/self/fd/N: no
// temporary files to clean up, and a sparse data area costs no memory until it is read.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "lib/core/error.hpp"

namespace sdgen::fuzz {

[[noreturn]] inline void finding(std::string_view what) {
  std::fprintf(stderr, "FINDING: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

inline void check(bool ok, std::string_view what) {
  if (!ok) finding(what);
}

// Runs `parse`; true when it returned, false when it refused the input with sdgen::Error. Any other
// exception is a finding.
template <class Parse>
bool accepts(Parse&& parse) {
  try {
    parse();
    return true;
  } catch (const Error&) {
    return false;
  } catch (const std::exception& e) {
    finding(cat("an exception other than sdgen::Error escaped: ", e.what()));
  } catch (...) {
    finding("a non-std exception escaped");
  }
}

// The tiny test models and their configs (tests/data), compiled in by tests/fuzz/CMakeLists.txt.
inline std::filesystem::path data_dir() { return SDGEN_FUZZ_DATA_DIR; }

// Fuzzed bytes as a file: `head` followed by `zeros` zero bytes (a hole, not memory).
class MemoryFile {
 public:
  MemoryFile(std::string_view head, std::size_t zeros = 0) : fd_(memfd_create("sdgen-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) finding("memfd_create failed");
    for (std::size_t done = 0; done < head.size();) {
      const ssize_t n = ::write(fd_, head.data() + done, head.size() - done);
      if (n <= 0) finding("writing the memfd failed");
      done += static_cast<std::size_t>(n);
    }
    if (zeros != 0 && ::ftruncate(fd_, static_cast<off_t>(head.size() + zeros)) != 0)
      finding("ftruncate of the memfd failed");
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  ~MemoryFile() { ::close(fd_); }

  std::filesystem::path path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace sdgen::fuzz
