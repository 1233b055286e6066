// cpu_device.hpp in a build without the CPU backend (configured without oneDNN or OpenMP).
#include "app/cpu_device.hpp"
#include "lib/core/error.hpp"

namespace sdgen::app {

std::string_view cpu_backend_missing() {
  return "this sdgen was built without the CPU backend (oneDNN or OpenMP was not found at configure time); "
         "use --device cuda, or rebuild with libdnnl-dev installed";
}

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions&) {
  throw UsageError(std::string(cpu_backend_missing()));
}

}  // namespace sdgen::app
