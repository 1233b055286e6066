// The CUDA backend's op scratch (split-K partials, group-norm statistics, im2col rows) is held per
// stage: the pipeline reserves what a stage's planning pass measured before the stage, and the
// backend then holds exactly that, growing or shrinking. A scratch that only grew kept the UNet
// step's split-K partials through the VAE decode, where device memory peaks (planned SD 1.5 at
// 512x512: 15 MB of the 2.5 GB budget, for nothing).
#include <catch2/catch.hpp>

#include "kernels/backend.hpp"
#include "kernels/cuda_backend.hpp"
#include "lib/core/allocator.hpp"

using namespace sdgen;

// Observed through the allocator's high-water mark: after a 3 MiB reservation shrinks to 64 KiB, a
// 2 MiB activation fits under the 3 MiB peak; had the scratch kept its 3 MiB, the peak would grow.
// The scratch is not part of held_bytes(): the stages' plans count it.
TEST_CASE("the backend holds exactly the scratch a stage reserves", "[cuda_backend]") {
  const auto backend = make_cuda_backend({});
  const std::size_t base = backend->peak_device_bytes();
  const std::size_t held = backend->held_bytes();
  backend->reserve_scratch(std::size_t{3} << 20);
  CHECK(backend->peak_device_bytes() == base + (std::size_t{3} << 20));
  backend->reserve_scratch(std::size_t{64} << 10);
  {
    const Activation activation(backend->allocator(), Shape{std::int64_t{1} << 20}, DType::F16);  // 2 MiB
    CHECK(backend->peak_device_bytes() == base + (std::size_t{3} << 20));
  }
  backend->reserve_scratch(0);
  {
    const Activation activation(backend->allocator(), Shape{std::int64_t{3} << 19}, DType::F16);  // 3 MiB
    CHECK(backend->peak_device_bytes() == base + (std::size_t{3} << 20));
  }
  CHECK(backend->held_bytes() == held);
}
