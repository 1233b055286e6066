// The CPU backend, where this build has one. A build configured without oneDNN or OpenMP (a bare
// GPU host, docs/gpu.md) has none; app/CMakeLists.txt then compiles no_cpu_device.cpp instead of
// cpu_device.cpp, so the command line learns the answer from these two functions, never from an
// #ifdef.
#pragma once

#include <memory>
#include <string_view>

#include "kernels/cpu/cpu_backend.hpp"

namespace sdgen::app {

// Empty when this build has the CPU backend; otherwise why not and what to do, in one line.
std::string_view cpu_backend_missing();

// The CPU backend; throws UsageError with cpu_backend_missing() when this build has none.
std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options);

}  // namespace sdgen::app
