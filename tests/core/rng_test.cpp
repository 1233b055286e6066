// The seeded noise must equal torch.randn(..., generator=torch.Generator("cpu").manual_seed(s))
// bit for bit: the golden runs hold the `noise` diffusers drew for seed 42 ([1,4,8,8] for tiny,
// [1,4,12,12] for tiny-sd2: 256 and 576 values, both multiples of 16), and euler_a's
// `step_noise` holds the draws that follow from the same generator, step after step.
#include <catch2/catch.hpp>
#include <cstring>

#include "lib/core/rng.hpp"
#include "tests/support/paths.hpp"
#include "weights/safetensors.hpp"

using sdgen::TorchCpuGenerator;
using sdgen::weights::SafeTensorsFile;

namespace {

// Bit equality, reporting the first difference.
void require_bit_equal(std::span<const float> got, std::span<const float> want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      INFO("index " << i << ": got " << got[i] << ", torch drew " << want[i]);
      REQUIRE(false);
    }
  }
}

}  // namespace

TEST_CASE("initial noise equals torch's randn for seed 42", "[rng]") {
  for (const char* model : {"tiny", "tiny-sd2"}) {
    SafeTensorsFile run(sdgen::test::data_dir() / "runs" / model / "p0_ddim.safetensors");
    const auto want = run.f32(run.at("noise"));
    std::vector<float> got(want.size());
    TorchCpuGenerator gen(42);
    gen.randn(got);
    INFO(model);
    require_bit_equal(got, want);
  }
}

TEST_CASE("consecutive draws follow torch's stream (euler_a step noise)", "[rng]") {
  for (const char* model : {"tiny", "tiny-sd2"}) {
    SafeTensorsFile run(sdgen::test::data_dir() / "runs" / model / "p0_euler_a.safetensors");
    const auto noise = run.f32(run.at("noise"));
    const auto steps = run.f32(run.at("step_noise"));
    TorchCpuGenerator gen(42);
    std::vector<float> got(noise.size());
    gen.randn(got);
    require_bit_equal(got, noise);
    for (std::size_t s = 0; s < steps.size() / noise.size(); ++s) {
      gen.randn(got);
      INFO(model << " step " << s);
      require_bit_equal(got, steps.subspan(s * noise.size(), noise.size()));
    }
  }
}

// Tensors under 16 elements take torch's double-precision path. The expected values are torch's
// well-known torch.manual_seed(0); torch.randn(3) = [1.5410, -0.2934, -2.1788], to float precision.
TEST_CASE("small tensors follow torch's double-precision normal sampler", "[rng]") {
  SECTION("n = 3 (double Box-Muller with a cached second value)") {
    TorchCpuGenerator gen(0);
    std::vector<float> v(3);
    gen.randn(v);
    CHECK(v[0] == Approx(1.5409961f).epsilon(1e-6));
    CHECK(v[1] == Approx(-0.2934289f).epsilon(1e-6));
    CHECK(v[2] == Approx(-2.1787894f).epsilon(1e-6));
  }
}
