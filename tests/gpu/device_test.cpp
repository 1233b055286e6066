#include <catch2/catch.hpp>

#include "kernels/device_info.hpp"

// Only runs where a GPU is present (see main_gpu.cpp): the query must describe a device that can
// run the kernels we build (sm_80 or newer) and report the driver it found.
TEST_CASE("the CUDA device query describes a usable GPU", "[gpu]") {
  const auto q = sdgen::query_gpus();
  REQUIRE(q.cuda_built);
  REQUIRE_FALSE(q.gpus.empty());
  CHECK(q.driver_version > 0);
  for (const auto& g : q.gpus) {
    CHECK_FALSE(g.name.empty());
    CHECK(g.compute_major >= 8);
    CHECK(g.total_memory_bytes > 0);
  }
}
