// The whole pipeline on the CUDA backend against diffusers' runs (tests/data/runs/<model>/p0_<sched>,
// fp32 references: 10 steps, guidance 7.5, seed 42), compiled into two executables: on the CUDA
// emulator in every CI run (sdgen_cuda_backend_emulated_tests: the backend's own source, its
// kernels emulated, a host loop in cuBLASLt's place), and on a GPU where nvcc exists
// (sdgen_cuda_backend_gpu_tests, ctest label gpu). Whatever runs, the denoising loop is the
// backend's: call 0 eager, call 1 captured as a graph, the rest replayed.
//
// What is compared, and how closely:
//  * token ids, the initial noise and latents, the timesteps: exactly (host work, as on the CPU);
//  * text embeddings: 4e-3 of their largest magnitude. The CUDA backend stores every activation in
//    fp16, whose rounding is up to 2^-11 (4.9e-4) of a value; CLIP's two layers store about a
//    dozen tensors in a chain, and the measured error is 8.4e-4 (tiny) and 1.4e-3 (tiny-sd2);
//  * latents after every step and the decoded image: 2e-2 of their largest magnitude. Each UNet
//    call stores dozens of fp16 tensors in a chain, guidance 7.5 multiplies the error of the
//    conditional half 7.5-fold at every step, and the ten steps compound it. Measured over the
//    twelve runs in emulation: at most 3.4e-3 (latents) and 6.7e-3 (image), so the bound keeps a
//    3x margin. What it must catch is far larger: a wrong coefficient table made an error of 0.55
//    (euler_a's run computed with euler's table, the bug this test found);
//  * PNG pixels: within 3 (2e-2 of the [-1, 1] range is 2.5 steps of 8 bits; measured at most 2).
// With bf16 storage (--dtype bf16) every rounding is 8 times coarser (2^-8 against 2^-11), and the
// errors measured over the three CI runs in emulation are 8 times fp16's, as that predicts: text
// embeddings 1.13e-2, latents 2.27e-2, the image 3.81e-2, pixels 11. The bounds keep fp16's margin
// of about 3x: 3e-2, 1e-1 and 16 pixels (1e-1 of the range is 12.75 steps; the largest pixel error
// sits where the image is largest). A run whose storage format is misread is off by the size of
// the values themselves (error 0.98-1.02 of the largest magnitude: the bug this test found, bf16
// weights uploaded as fp16 bits).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "kernels/cuda_backend.hpp"
#include "lib/pipeline/txt2img.hpp"
#include "tests/support/golden_runs.hpp"
#include "weights/safetensors.hpp"

using namespace sdgen;

namespace {

struct Run {
  const char* model;
  const char* scheduler;
};

double relative_error(std::span<const float> got, std::span<const float> want) {
  REQUIRE(got.size() == want.size());
  double error = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    error = std::max(error, std::isfinite(got[i]) ? std::abs(double(got[i]) - want[i]) : INFINITY);
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return error / scale;
}

double max_abs_difference(std::span<const std::uint8_t> got, std::span<const float> want) {
  REQUIRE(got.size() == want.size());
  double d = 0;
  for (std::size_t i = 0; i < got.size(); ++i) d = std::max(d, std::abs(double(got[i]) - want[i]));
  return d;
}

// How closely a storage format's runs must follow diffusers' (see the top of the file).
struct Tolerances {
  double text_embeds;
  double latents_and_image;
  double pixels;
};
constexpr Tolerances kFp16{.text_embeds = 4e-3, .latents_and_image = 2e-2, .pixels = 3.0};
constexpr Tolerances kBf16{.text_embeds = 3e-2, .latents_and_image = 1e-1, .pixels = 16.0};

void check_runs(std::initializer_list<Run> runs, DType storage = DType::F16) {
  const Tolerances& tolerance = storage == DType::BF16 ? kBf16 : kFp16;
  const auto backend = make_cuda_backend({.storage = storage});
  for (const Run& run : runs) {
    DYNAMIC_SECTION(run.model << " " << run.scheduler << " in " << dtype_name(storage)) {
      const auto model = weights::open_model({.model = test::data_dir() / "models" / run.model});
      pipeline::Pipeline pipe(model, *backend);
      const weights::SafeTensorsFile golden(test::golden_run_file(run.model, run.scheduler));
      const auto reference = [&](std::string_view name) { return golden.f32(golden.at(name)); };
      pipeline::Dump dump;
      const auto images = pipe.generate(test::golden_request(run.model, run.scheduler), {}, &dump);
      for (const char* exact : {"input_ids.cond", "input_ids.uncond", "noise", "latents.init", "timesteps"}) {
        INFO(exact);
        CHECK(relative_error(dump.at(exact).values, reference(exact)) == 0);
      }
      for (const char* name : {"text_embeds.cond", "text_embeds.uncond"}) {
        const double e = relative_error(dump.at(name).values, reference(name));
        INFO(name << ": error " << e << " of the largest magnitude");
        CHECK(e <= tolerance.text_embeds);
      }
      for (const char* name : {"latents.steps", "image"}) {
        const double e = relative_error(dump.at(name).values, reference(name));
        INFO(name << ": error " << e << " of the largest magnitude");
        CHECK(e <= tolerance.latents_and_image);
      }
      REQUIRE(images.rgb.size() == 1);
      const double pixels = max_abs_difference(images.rgb[0], reference("image_uint8"));
      INFO("pixels: " << pixels);
      CHECK(pixels <= tolerance.pixels);
    }
  }
}

}  // namespace

// Three runs that between them take every kind of step the table encodes: a multistep solver's
// history slots (DPM-Solver++), fresh noise at every step with an input scale (Euler ancestral),
// and v-prediction with DDIM's update (the SD 2.x-style model). Emulation runs these in CI.
TEST_CASE("the CUDA backend reproduces diffusers' runs: history, noise, v-prediction", "[cuda_backend]") {
  check_runs({{"tiny", "dpm++2m"}, {"tiny", "euler_a"}, {"tiny-sd2", "ddim"}});
}

// The same three runs with bf16 storage (--dtype bf16): every kernel's bf16 instantiation and
// cuBLASLt's bf16 types (here the host GEMM's), end to end.
TEST_CASE("the CUDA backend in bf16 reproduces diffusers' runs within bf16's precision", "[cuda_backend][bf16]") {
  check_runs({{"tiny", "dpm++2m"}, {"tiny", "euler_a"}, {"tiny-sd2", "ddim"}}, DType::BF16);
}

// The other nine of the twelve: run on a GPU (see CMakeLists.txt), and in emulation on request
// (they take two minutes there).
TEST_CASE("the CUDA backend reproduces diffusers' runs: the other nine", "[.][all-runs]") {
  check_runs({{"tiny", "ddim"},
              {"tiny", "euler"},
              {"tiny", "pndm"},
              {"tiny", "lms"},
              {"tiny-sd2", "dpm++2m"},
              {"tiny-sd2", "euler"},
              {"tiny-sd2", "euler_a"},
              {"tiny-sd2", "pndm"},
              {"tiny-sd2", "lms"}});
}

// Text to image never runs the VAE's encoder, so its weights (a third of SD's VAE) are checked but
// not uploaded: every other tensor of the three files is on the device as fp16 (each its own
// allocation, a multiple of 256 bytes as cudaMalloc's), the encoder's and quant_conv's are not.
// Counted from the files' headers, not from the pipeline's own bookkeeping.
TEST_CASE("the pipeline uploads the text encoder, the UNet and the VAE's decode path only", "[cuda_backend]") {
  const auto backend = make_cuda_backend({});
  const std::filesystem::path dir = test::data_dir() / "models" / "tiny";
  std::size_t used = 0, encoder = 0;
  for (const char* file : {"text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                           "vae/diffusion_pytorch_model.safetensors"}) {
    const weights::SafeTensorsFile f(dir / file);
    const bool vae = std::string_view(file).starts_with("vae/");
    for (const auto& t : f.tensors()) {
      if (t.name.ends_with("position_ids")) continue;  // a stored buffer CLIP recomputes: never loaded
      const bool encoder_side = vae && (t.name.starts_with("encoder.") || t.name.starts_with("quant_conv."));
      (encoder_side ? encoder : used) += (static_cast<std::size_t>(t.numel()) * 2 + 255) / 256 * 256;
    }
  }
  REQUIRE(encoder > 0);  // the tiny VAE has an encoder to leave out
  const std::size_t before = backend->held_bytes();
  const auto model = weights::open_model({.model = dir});
  const pipeline::Pipeline pipe(model, *backend);
  CHECK(backend->held_bytes() - before == used);
}
