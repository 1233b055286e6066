// Which compute devices this build can use. The CUDA build answers from the CUDA runtime; a build
// without CUDA answers "none" with the reason, so callers never need to know how sdgen was built.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sdgen {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  std::size_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

struct GpuQuery {
  bool cuda_built = false;    // this binary contains the CUDA backend
  int driver_version = 0;     // e.g. 13000; 0 when there is no driver
  int runtime_version = 0;    // the CUDA runtime sdgen was built against
  std::vector<GpuInfo> gpus;  // empty when none can be used
  std::string why_none;       // why `gpus` is empty, for messages
};

// Never throws: a missing driver or device is an answer, not an error.
GpuQuery query_gpus();

}  // namespace sdgen
