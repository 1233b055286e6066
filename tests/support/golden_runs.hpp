// diffusers' recorded runs of the tiny models (tests/data/runs/<model>/p0_<scheduler>.safetensors):
// the request each was made with, so that every test replaying them asks for exactly that.
#pragma once

#include <string>
#include <string_view>

#include "lib/pipeline/txt2img.hpp"
#include "tests/support/paths.hpp"

namespace sdgen::test {

// Prompt p0, empty negative prompt, 10 steps, guidance 7.5, seed 42, at the model's natural size
// (64 px for "tiny", 96 px for "tiny-sd2").
inline pipeline::GenerateRequest golden_request(std::string_view model, std::string_view scheduler) {
  const int size = model == "tiny" ? 64 : 96;
  return {.prompt = "a photograph of an astronaut riding a horse",
          .negative_prompt = "",
          .width = size,
          .height = size,
          .steps = 10,
          .guidance_scale = 7.5,
          .seed = 42,
          .scheduler = schedulers::algorithm_from_name(scheduler)};
}

inline std::filesystem::path golden_run_file(std::string_view model, std::string_view scheduler) {
  return data_dir() / "runs" / std::string(model) / ("p0_" + std::string(scheduler) + ".safetensors");
}

}  // namespace sdgen::test
