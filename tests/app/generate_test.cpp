// Text to image through the real binary, on the tiny model: the PNG's pixels equal diffusers' own
// (tests/data/runs/tiny/p0_ddim: same prompt, seed 42, 10 DDIM steps, guidance 7.5), --dump
// reproduces the reference's tensors, prompt files and batches name their outputs as documented,
// and every bad input is refused with one line and exit 2 before anything is written.
#include <catch2/catch.hpp>

#include "stb_image.h"
#include "tests/app/run_sdgen.hpp"
#include "tests/app/temp_dir.hpp"
#include "weights/safetensors.hpp"

using sdgen::test::quoted;
using sdgen::test::run_sdgen;
using sdgen::test::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kPrompt = "'a photograph of an astronaut riding a horse'";

std::string tiny() { return " -m " + quoted(sdgen::test::data_dir() / "models" / "tiny"); }

sdgen::weights::SafeTensorsFile golden_run() {
  return sdgen::weights::SafeTensorsFile(sdgen::test::data_dir() / "runs" / "tiny" / "p0_ddim.safetensors");
}

}  // namespace

TEST_CASE("sdgen PROMPT -o FILE writes diffusers' image with its parameters", "[app][generate]") {
  TempDir dir;
  const auto png = dir.path / "astronaut.png";
  const auto run = run_sdgen(kPrompt + tiny() + " --steps 10 --seed 42 --scheduler ddim -o " + quoted(png) +
                             " --dump " + quoted(dir.path / "dump.safetensors"));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Contains("seed: 42") && Catch::Contains("wrote 1 image") && Catch::Contains("it/s"));
  int w = 0, h = 0, channels = 0;
  stbi_uc* pixels = stbi_load(png.c_str(), &w, &h, &channels, 3);
  REQUIRE(pixels != nullptr);
  REQUIRE((w == 64 && h == 64));
  const auto golden = golden_run();
  const auto want = golden.f32(golden.at("image_uint8"));  // [1, 64, 64, 3]
  float worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(float(pixels[i]) - want[i]));
  stbi_image_free(pixels);
  CHECK(worst <= 1.0f);  // a value at a rounding boundary may land on the other side

  std::ifstream in(png, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  CHECK_THAT(bytes, Catch::Contains("parameters") &&
                        Catch::Contains("Steps: 10, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 64x64"));

  // The dump holds the reference's names; the latents follow diffusers within the pipeline
  // test's tolerance (tests/pipeline/txt2img_test.cpp justifies it).
  const sdgen::weights::SafeTensorsFile dump(dir.path / "dump.safetensors");
  const auto got = dump.f32(dump.at("latents.steps"));
  const auto ref = golden.f32(golden.at("latents.steps"));
  REQUIRE(got.size() == ref.size());
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, std::abs(double(got[i]) - ref[i]));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  CHECK(err <= 1e-4 * scale);
  CHECK(dir.names() == std::vector<std::string>{"astronaut.png", "dump.safetensors"});  // no temporaries left
}

TEST_CASE("batches and prompt files name their images and resume", "[app][generate]") {
  TempDir dir;
  const auto batch = run_sdgen("'a cabin'" + tiny() + " --steps 2 --seed 1 --batch 2 -q -o " + quoted(dir.path / "cabin.png"));
  INFO(batch.output);
  REQUIRE(batch.exit_code == 0);
  CHECK(dir.names() == std::vector<std::string>{"cabin-1.png", "cabin-2.png"});

  TempDir out;
  const auto prompts = dir.write("prompts.txt", "# two prompts\na red fox\r\n\na cabin --seed 7 --steps 3\n");
  const std::string cmd = "--prompts " + quoted(prompts) + tiny() + " --steps 2 --seed 5 -q --outdir " + quoted(out.path);
  const auto first = run_sdgen(cmd);
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(out.names() == std::vector<std::string>{"00001-a-red-fox.png", "00002-a-cabin.png"});
  const auto again = run_sdgen(cmd);  // existing images are never overwritten unless asked
  CHECK(again.exit_code == 2);
  CHECK_THAT(again.output, Catch::Contains("exists"));
  const auto resume = run_sdgen(cmd + " --skip-existing");
  CHECK(resume.exit_code == 0);
  CHECK(out.names().size() == 2);
}

TEST_CASE("a size that is a multiple of 8 but not of the UNet's 16 works", "[app][generate]") {
  // The tiny UNet halves once: a 40 x 24 image is a 5 x 3 latent, whose odd sides the down path
  // rounds up and the up path brings back (tests/models/unet_test.cpp checks the wiring).
  TempDir dir;
  const auto png = dir.path / "odd.png";
  const auto run = run_sdgen("'x'" + tiny() + " -W 40 -H 24 --steps 2 --seed 1 -o " + quoted(png));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  int w = 0, h = 0, channels = 0;
  stbi_uc* pixels = stbi_load(png.c_str(), &w, &h, &channels, 3);
  REQUIRE(pixels != nullptr);
  stbi_image_free(pixels);
  CHECK((w == 40 && h == 24));
}

TEST_CASE("bad input is refused in one line before any work", "[app][generate]") {
  TempDir dir;
  const auto png = quoted(dir.path / "x.png");
  const auto not_utf8 = dir.write("bad.txt", "a fox\n\xff\xfe broken\n");
  const auto a_file = dir.write("file", "");
  struct Case {
    std::string args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"'x'" + tiny() + " --scheduler foo -o " + png, 2, "unknown scheduler 'foo'"},
      {"'x'" + tiny() + " -W 60 -o " + png, 2, "60x64 is not supported"},
      {"'x'" + tiny() + " --steps 0 -o " + png, 2, "--steps must be at least 1"},
      {"'x' -m /nonexistent/model -o " + png, 2, "/nonexistent/model"},
      {"--prompts " + quoted(dir.path / "missing.txt") + tiny() + " --outdir " + quoted(dir.path), 2, "missing.txt"},
      {"--prompts " + quoted(not_utf8) + tiny() + " --outdir " + quoted(dir.path), 2, "bad.txt:2"},
      {"'x'" + tiny() + " --outdir " + quoted(a_file / "sub"), 2, "file"},
      {"'x'" + tiny() + " --device cuda -o " + png, 2, "--device cuda"},
      {"'x'" + tiny() + " --device cpu --max-vram 2G -o " + png, 2, "--max-vram limits GPU memory"},
      {"'x'" + tiny() + " --device cpu --dtype fp16 -o " + png, 2, "--dtype fp16 is a GPU option"},
      {"'x'" + tiny() + " --device cuda --dtype fp32 -o " + png, 2, "--dtype fp32 is a CPU option"},
      {"'x'" + tiny() + " --device cuda --max-vram 2Q -o " + png, 2, "--max-vram 2Q: expected a size"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    const auto run = run_sdgen(c.args);
    INFO(run.output);
    CHECK(run.exit_code == c.exit_code);
    CHECK_THAT(run.output, Catch::StartsWith("sdgen: error: ") && Catch::Contains(c.message));
    CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);
  }
  CHECK_FALSE(fs::exists(dir.path / "x.png"));
}
