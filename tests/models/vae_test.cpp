// AutoencoderKL.decode against diffusers (tests/data/components/<model>/vae_seed2): random
// latents already divided by scaling_factor (vae_in) decoded to an image, unclamped.
//
// fp32 tolerance: max |error| <= 1e-5 * max |reference|, for the same reasons as the UNet's (fp32
// on both sides, different summation orders, group norms renormalising every block); the decoder
// has no long accumulation beyond its 3x3 convolutions and its one attention over h*w tokens.
// Measured: 3.0e-6 (tiny) and 1.9e-6 (tiny-sd2).
//
// bf16 tolerance: max |error| <= 3e-2 * max |reference|, derived as the UNet's (unit roundoff
// u = 2^-9 on each convolution's inputs, independent errors adding in quadrature over the ~25
// convolution and attention stages of the tiny decoder's path: sqrt(25) * 2u = 2e-2; 3e-2 is
// 16u). Measured: 1.3e-2 (tiny) and 1.2e-2 (tiny-sd2) of a max |value| of 2.1 and 2.5: about 4 of
// 255 levels at the worst pixel once mapped to 8 bits.
#include <catch2/catch.hpp>
#include <string>

#include "kernels/cpu/cpu_backend.hpp"
#include "lib/core/ctx.hpp"
#include "lib/models/vae.hpp"
#include "tests/models/component_support.hpp"
#include "tests/support/paths.hpp"

namespace {

constexpr double kTolerance = 1e-5;
constexpr double kBf16Tolerance = 3e-2;

sdgen::test::Comparison decode_against_golden(sdgen::Backend& backend, const std::string& name) {
  auto fixture = sdgen::test::load_fixture_model(name);
  sdgen::models::AutoencoderKL vae(fixture.vae_config);
  const auto store = sdgen::test::load_weights(backend, vae, fixture.vae);
  sdgen::HeapAllocator heap;
  sdgen::Ctx ctx{backend, heap};

  const sdgen::weights::SafeTensorsFile golden(sdgen::test::data_dir() / "components" / name /
                                               "vae_seed2.safetensors");
  auto z = sdgen::test::golden_nhwc(golden, "vae_in");  // [1, h, w, 4]
  const auto image = vae.decode(ctx, sdgen::Tensor::contiguous(z.values.data(), sdgen::DType::F32, z.shape));
  const auto want = sdgen::test::golden_tensor(golden, "image");  // [1, 3, 8h, 8w]
  REQUIRE(image.view().shape == sdgen::Shape{want.shape[0], want.shape[2], want.shape[3], want.shape[1]});
  CHECK(heap.bytes_in_use() == image.view().nbytes());
  return sdgen::test::compare(sdgen::test::nchw_values_of(image), want.values);
}

}  // namespace

TEST_CASE("AutoencoderKL.decode matches diffusers", "[models][vae]") {
  for (const std::string name : {"tiny", "tiny-sd2"}) {
    DYNAMIC_SECTION(name) {
      sdgen::CpuBackend backend;
      const auto c = decode_against_golden(backend, name);
      INFO(c.describe());
      CHECK(c.finite);
      CHECK(c.relative_to_max() <= kTolerance);
    }
  }
}

TEST_CASE("AutoencoderKL.decode in the CPU's bf16 mode stays close to diffusers' fp32", "[models][vae][bf16]") {
  const auto backend = sdgen::test::bf16_backend();
  if (!backend) return;
  for (const std::string name : {"tiny", "tiny-sd2"}) {
    DYNAMIC_SECTION(name) {
      const auto c = decode_against_golden(*backend, name);
      INFO(c.describe());
      CHECK(c.finite);
      CHECK(c.relative_to_max() <= kBf16Tolerance);
    }
  }
}
