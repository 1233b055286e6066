// The whole text-to-image pipeline against diffusers' own runs (tests/data/runs/<model>/p0_<sched>):
// the tiny SD 1.x-style model (epsilon) and the SD 2.x-style one (v-prediction), each with all six
// schedulers, 10 steps, guidance 7.5, seed 42, at the models' natural size. Every intermediate the
// reference recorded is compared:
//  * token ids, timesteps, the initial noise and latents: exactly (same algorithm, same float ops;
//    the noise is torch's randn reproduced bit for bit);
//  * text embeddings: 1e-5 of their scale (one fp32 forward, as in tests/models);
//  * latents after every step and the decoded image: |a - b| <= 1e-4 * max|ref|. The reference
//    data suggests 1e-3 for 10 guided steps (the random-weight UNet's outputs reach |x| ~ 40 and
//    guidance 7.5 amplifies each forward's fp32 differences, ~1e-6 relative, step after step);
//    measured here: at most 3.1e-6 (latents) and 6.6e-6 (image) over the 12 runs, so 1e-4 keeps a
//    30x margin while catching a wrong coefficient, which moves the result by far more;
//  * PNG pixels: within 1 (a value near a rounding boundary may land on the other side).
#include <catch2/catch.hpp>
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"
#include "lib/pipeline/txt2img.hpp"
#include "tests/support/golden_runs.hpp"
#include "weights/safetensors.hpp"

using namespace sdgen;

namespace {

struct Diff {
  double max_abs_error = 0;
  double max_abs_ref = 0;
};

Diff diff(std::span<const float> got, std::span<const float> want) {
  REQUIRE(got.size() == want.size());
  Diff d;
  for (std::size_t i = 0; i < got.size(); ++i) {
    d.max_abs_error = std::max(d.max_abs_error, std::isfinite(got[i]) ? std::abs(double(got[i]) - want[i]) : INFINITY);
    d.max_abs_ref = std::max(d.max_abs_ref, std::abs(double(want[i])));
  }
  return d;
}

struct Golden {
  weights::SafeTensorsFile file;
  std::span<const float> operator[](std::string_view name) const { return file.f32(file.at(name)); }
};

}  // namespace

TEST_CASE("txt2img reproduces diffusers' runs step by step", "[pipeline]") {
  CpuBackend backend;
  for (const std::string model_name : {"tiny", "tiny-sd2"}) {
    const auto model = weights::open_model({.model = test::data_dir() / "models" / model_name});
    pipeline::Pipeline pipe(model, backend);
    for (const std::string sched : {"ddim", "dpm++2m", "euler", "euler_a", "pndm", "lms"}) {
      DYNAMIC_SECTION(model_name << " " << sched) {
        const Golden golden{weights::SafeTensorsFile(test::golden_run_file(model_name, sched))};
        pipeline::Dump dump;
        const auto images = pipe.generate(test::golden_request(model_name, sched), {}, &dump);
        for (const char* exact : {"input_ids.cond", "input_ids.uncond", "noise", "latents.init", "timesteps"}) {
          INFO(exact);
          CHECK(diff(dump.at(exact).values, golden[exact]).max_abs_error == 0);
        }
        for (const char* name : {"text_embeds.cond", "text_embeds.uncond"}) {
          const auto d = diff(dump.at(name).values, golden[name]);
          INFO(name << ": max error " << d.max_abs_error << " of " << d.max_abs_ref);
          CHECK(d.max_abs_error <= 1e-5 * d.max_abs_ref);
        }
        for (const char* name : {"latents.steps", "image"}) {
          const auto d = diff(dump.at(name).values, golden[name]);
          INFO(name << ": max error " << d.max_abs_error << " of " << d.max_abs_ref);
          CHECK(d.max_abs_error <= 1e-4 * d.max_abs_ref);
        }
        REQUIRE(images.rgb.size() == 1);
        const auto pixels = golden["image_uint8"];
        std::vector<float> got(images.rgb[0].begin(), images.rgb[0].end());
        CHECK(diff(got, pixels).max_abs_error <= 1.0);
      }
    }
  }
}
