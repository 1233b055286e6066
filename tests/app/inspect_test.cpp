// `sdgen inspect`, through the real binary: a usable model is described (with the parameter counts
// the reference computed, oracle_model_info.json) and exits 0; a model with a tensor that does not
// fit lists it and exits 1 with one error line; a bad option value exits 2.
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/app/run_sdgen.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using sdgen::test::quoted;
using sdgen::test::run_sdgen;

nlohmann::json reference_params(const std::string& model) {
  const auto info = sdgen::weights::read_text_file(sdgen::test::data_dir() / "models" / model / "oracle_model_info.json");
  return nlohmann::json::parse(info).at("params");
}

void check_parameter_counts(const std::string& output, const std::string& model) {
  for (const char* component : {"unet", "vae", "text_encoder"}) {
    INFO(component);
    const auto params = reference_params(model).at(component).get<long long>();
    CHECK_THAT(output, Catch::Contains(std::string(component) + ": ") &&
                           Catch::Contains(std::to_string(params) + " parameters"));
  }
}

// A scratch copy of a fixture model, removed at the end of the test.
struct ScratchModel {
  fs::path dir;
  explicit ScratchModel(const std::string& model) {
    std::string pattern = (fs::temp_directory_path() / "sdgen-inspect-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    dir = fs::path(pattern) / model;
    fs::copy(sdgen::test::data_dir() / "models" / model, dir, fs::copy_options::recursive);
  }
  ~ScratchModel() {
    std::error_code ec;
    fs::remove_all(dir.parent_path(), ec);
  }
};

}  // namespace

TEST_CASE("inspect describes the tiny diffusers model", "[app]") {
  const auto run = run_sdgen("inspect " + quoted(sdgen::test::data_dir() / "models" / "tiny"));
  INFO(run.output);
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Contains("layout: diffusers folder"));
  CHECK_THAT(run.output, Catch::Contains("family: SD 1.x"));
  CHECK_THAT(run.output, Catch::Contains("scheduler: PNDMScheduler"));
  CHECK_THAT(run.output, Catch::Contains("block_out_channels [32, 64]"));
  CHECK_THAT(run.output, Catch::Contains("hidden_act quick_gelu"));
  CHECK_THAT(run.output, !Catch::Contains("problem"));
  check_parameter_counts(run.output, "tiny");
}

TEST_CASE("inspect describes the tiny SD 2.x-style model", "[app]") {
  const auto run = run_sdgen("inspect " + quoted(sdgen::test::data_dir() / "models" / "tiny-sd2"));
  INFO(run.output);
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Contains("family: SD 2.x"));
  CHECK_THAT(run.output, Catch::Contains("prediction_type v_prediction"));
  CHECK_THAT(run.output, Catch::Contains("attention heads [2, 4]"));
  CHECK_THAT(run.output, Catch::Contains("linear projection yes"));
  CHECK_THAT(run.output, Catch::Contains("hidden_act gelu"));
  check_parameter_counts(run.output, "tiny-sd2");
}

TEST_CASE("inspect opens the single-file tiny checkpoint with --config", "[app]") {
  const auto data = sdgen::test::data_dir() / "models";
  const auto run =
      run_sdgen("inspect " + quoted(data / "tiny-ldm.safetensors") + " --config " + quoted(data / "tiny"));
  INFO(run.output);
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Contains("layout: single-file checkpoint"));
  CHECK_THAT(run.output, Catch::Contains("configs: config folder"));
  check_parameter_counts(run.output, "tiny");  // the same model, under LDM names
}

TEST_CASE("inspect lists a tensor that does not fit and exits 1 with one error line", "[app]") {
  ScratchModel model("tiny");
  // Rewrite the UNet file without conv_out.bias.
  const auto unet_file = model.dir / "unet" / "diffusion_pytorch_model.safetensors";
  {
    const sdgen::weights::SafeTensorsFile original(unet_file);
    std::vector<std::vector<std::byte>> data;  // copies: the file is replaced while mapped
    data.reserve(original.tensors().size());
    std::vector<sdgen::weights::TensorToWrite> kept;
    for (const auto& t : original.tensors()) {
      if (t.name == "conv_out.bias") continue;
      const auto bytes = original.bytes(t);
      const auto& copy = data.emplace_back(bytes.begin(), bytes.end());
      kept.push_back({t.name, t.dtype, t.shape, copy});
    }
    sdgen::weights::write_safetensors(unet_file, kept);
  }

  const auto run = run_sdgen("inspect " + quoted(model.dir));
  INFO(run.output);
  CHECK(run.exit_code == 1);
  CHECK_THAT(run.output, Catch::Contains("    missing tensor 'conv_out.bias'"));
  CHECK_THAT(run.output, Catch::Contains("sdgen: error: unet (") &&
                             Catch::Contains("1 tensor problem (1 missing): missing tensor 'conv_out.bias'"));
}

TEST_CASE("inspect refuses an unknown --prediction value as a usage error", "[app]") {
  const auto run =
      run_sdgen("inspect " + quoted(sdgen::test::data_dir() / "models" / "tiny") + " --prediction sample");
  INFO(run.output);
  CHECK(run.exit_code == 2);
}
