// The 8-bit conversion must reproduce the reference PNG pixels exactly from the reference decoder
// output: every golden run holds both `image` (the VAE output, NCHW, float32) and `image_uint8`
// (the PNG's pixels, NHWC). Same input, same float32 arithmetic, so no tolerance is needed.
#include <catch2/catch.hpp>

#include "lib/pipeline/image.hpp"
#include "tests/support/paths.hpp"
#include "weights/safetensors.hpp"

TEST_CASE("decoded images become the reference's 8-bit pixels", "[pipeline]") {
  for (const char* model : {"tiny", "tiny-sd2"}) {
    for (const char* sched : {"ddim", "euler_a"}) {
      INFO(model << " " << sched);
      sdgen::weights::SafeTensorsFile run(sdgen::test::data_dir() / "runs" / model / (std::string("p0_") + sched + ".safetensors"));
      const auto& image = run.at("image");  // [1, 3, H, W]
      const auto nchw = run.f32(image);
      const auto h = image.shape[2], w = image.shape[3];
      std::vector<float> nhwc(nchw.size());
      for (std::int64_t c = 0; c < 3; ++c)
        for (std::int64_t y = 0; y < h; ++y)
          for (std::int64_t x = 0; x < w; ++x) nhwc[static_cast<std::size_t>((y * w + x) * 3 + c)] = nchw[static_cast<std::size_t>((c * h + y) * w + x)];
      const auto pixels = sdgen::pipeline::to_rgb8(nhwc);
      const auto want = run.f32(run.at("image_uint8"));
      REQUIRE(pixels.size() == want.size());
      int mismatches = 0;
      for (std::size_t i = 0; i < pixels.size(); ++i) mismatches += float(pixels[i]) != want[i];
      CHECK(mismatches == 0);
    }
  }
}
