// Main of the GPU test executable. Without a usable CUDA device it prints why and exits 77, which
// ctest reports as "skipped" (SKIP_RETURN_CODE 77): Catch2 v2 has no SKIP of its own.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "kernels/device_info.hpp"

int main(int argc, char** argv) {
  const auto query = sdgen::query_gpus();
  if (query.gpus.empty()) {
    std::printf("skipped: %s\n", query.why_none.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
