// `sdgen tokenize`, through the real binary: the ids printed for the reference prompts equal the
// ids diffusers fed its text encoder (input_ids.cond/.uncond of the golden runs, padded with each
// model's own pad token), and the failure modes give one line and the documented exit codes.
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/app/run_sdgen.hpp"
#include "weights/safetensors.hpp"

using sdgen::test::quoted;
using sdgen::test::run_sdgen;

namespace {

std::vector<int> golden_ids(const std::string& model, const std::string& tensor) {
  sdgen::weights::SafeTensorsFile run(sdgen::test::data_dir() / "runs" / model / "p0_ddim.safetensors");
  std::vector<int> ids;
  for (float v : run.f32(run.at(tensor))) ids.push_back(static_cast<int>(v));  // exact: ids < 2^24
  return ids;
}

}  // namespace

TEST_CASE("tokenize prints the ids diffusers used", "[app]") {
  for (const std::string model : {"tiny", "tiny-sd2"}) {
    INFO(model);
    const auto dir = quoted(sdgen::test::data_dir() / "models" / model);
    const auto cond = run_sdgen("tokenize -m " + dir + " 'a photograph of an astronaut riding a horse'");
    REQUIRE(cond.exit_code == 0);
    CHECK(nlohmann::json::parse(cond.output).get<std::vector<int>>() == golden_ids(model, "input_ids.cond"));
    const auto uncond = run_sdgen("tokenize -m " + dir + " ''");
    REQUIRE(uncond.exit_code == 0);
    CHECK(nlohmann::json::parse(uncond.output).get<std::vector<int>>() == golden_ids(model, "input_ids.uncond"));
  }
}

TEST_CASE("tokenize --full with only a tokenizer folder", "[app]") {
  const auto tok = quoted(sdgen::test::data_dir() / "models" / "tiny" / "tokenizer");
  const auto run = run_sdgen("tokenize --tokenizer " + tok + " --full ''");
  REQUIRE(run.exit_code == 0);
  CHECK(nlohmann::json::parse(run.output).get<std::vector<int>>() == std::vector<int>{1178, 1179});  // BOS, EOS
}

TEST_CASE("tokenize without a model or with a broken one fails in one line", "[app]") {
  const auto none = run_sdgen("tokenize 'text'");  // SDGEN_MODEL is not set in the test environment
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.output, Catch::StartsWith("sdgen: error: no model given"));
  const auto missing = run_sdgen("tokenize -m /nonexistent/model 'text'");
  CHECK(missing.exit_code != 0);
  CHECK_THAT(missing.output, Catch::StartsWith("sdgen: error: ") && Catch::Contains("/nonexistent/model"));
  CHECK(std::count(missing.output.begin(), missing.output.end(), '\n') == 1);
}
