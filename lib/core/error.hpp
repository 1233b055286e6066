// sdgen's error types.
//
// Every failure a user can cause (a bad flag, a malformed file, a model that does not match its
// config) is an exception carrying a message that makes sense without the source code. They are
// thrown anywhere and caught once, in app/main.cpp, which prints `sdgen: error: <message>` and
// exits with 2 for usage errors and 1 for everything else. Library code never calls exit() and
// never asserts on input.
#pragma once

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

namespace sdgen {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The command line itself is wrong (unknown option value, size not a multiple of 8, ...).
class UsageError : public Error {
 public:
  using Error::Error;
};

// A model, tokenizer or config file is unusable. The message names the file and, where there is
// one, the tensor or key.
class ModelError : public Error {
 public:
  using Error::Error;
};

// A compute backend or device failed (CUDA call, out of memory, ...).
class BackendError : public Error {
 public:
  using Error::Error;
};

// A device allocation did not fit (the GPU's memory, or the --max-vram cap). The pipeline turns it
// into advice on what would fit; `requested` and `available` are in bytes.
class DeviceMemoryError : public BackendError {
 public:
  DeviceMemoryError(const std::string& what, std::size_t requested_bytes, std::size_t available_bytes)
      : BackendError(what), requested(requested_bytes), available(available_bytes) {}
  std::size_t requested;
  std::size_t available;
};

// The run was asked to stop (app/signals.hpp turns Ctrl-C and SIGTERM into this): thrown at the next
// safe point, so whatever is half-computed is dropped and whatever was finished stays. Not a
// failure of the input: app/main.cpp reports it as "sdgen: interrupted" with the shell's exit code
// for the signal (130 for SIGINT, 143 for SIGTERM).
class Cancelled : public Error {
 public:
  using Error::Error;
};

// Builds a message from streamable parts: throw ModelError(cat(path, ": tensor '", name, "' ..."));
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace sdgen
