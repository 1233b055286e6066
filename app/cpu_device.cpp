// cpu_device.hpp in a build with the CPU backend.
#include "app/cpu_device.hpp"

namespace sdgen::app {

std::string_view cpu_backend_missing() { return {}; }

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace sdgen::app
