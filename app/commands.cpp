#include "app/commands.hpp"

#include <cstdio>

#include "app/cpu_device.hpp"
#include "kernels/device_info.hpp"

namespace sdgen::app {

void add_devices_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("devices", "List the compute devices this build of sdgen can use");
  cmd->callback([] {
    const auto q = query_gpus();
    const auto cpu_missing = cpu_backend_missing();
    if (cpu_missing.empty())
      std::printf("cpu: available\n");
    else
      std::printf("cpu: none (%.*s)\n", static_cast<int>(cpu_missing.size()), cpu_missing.data());
    if (q.cuda_built)
      std::printf("cuda: built (runtime %d.%d, driver %d.%d)\n", q.runtime_version / 1000,
                  q.runtime_version % 1000 / 10, q.driver_version / 1000, q.driver_version % 1000 / 10);
    for (const auto& g : q.gpus)
      std::printf("cuda:%d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", g.index, g.name.c_str(),
                  g.compute_major, g.compute_minor, double(g.total_memory_bytes) / (1u << 30),
                  g.multiprocessors);
    if (q.gpus.empty()) std::printf("cuda: none (%s)\n", q.why_none.c_str());
  });
}

}  // namespace sdgen::app
