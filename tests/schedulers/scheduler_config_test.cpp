// scheduler_config.json parsing: what a hub file holds is read as written (absent stays absent,
// null is absent), Python's -Infinity literal is understood, and malformed values are refused
// with the file and key in the message.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "lib/core/error.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/scheduler_config.hpp"

using sdgen::ModelError;
using sdgen::weights::parse_scheduler_config;

namespace {

// The message of the ModelError that parsing `text` throws (empty if none is thrown).
std::string parse_error(const std::string& text) {
  try {
    parse_scheduler_config(text, "some/dir/scheduler_config.json");
  } catch (const ModelError& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("the SD 1.5 hub file (tiny's) is read as written", "[schedulers][config]") {
  const auto path = sdgen::test::data_dir() / "models" / "tiny" / "scheduler" / "scheduler_config.json";
  const auto c = parse_scheduler_config(sdgen::weights::read_text_file(path), path);
  CHECK(c.source == path);
  CHECK(c.class_name == "PNDMScheduler");
  CHECK(c.num_train_timesteps == 1000);
  CHECK(c.beta_start == 0.00085);
  CHECK(c.beta_end == 0.012);
  CHECK(c.beta_schedule == "scaled_linear");
  CHECK(c.steps_offset == 1);
  CHECK(c.set_alpha_to_one == false);
  CHECK(c.skip_prk_steps == true);
  CHECK(c.clip_sample == false);
  CHECK_FALSE(c.trained_betas.has_value());  // null
  // Keys the file lacks stay absent, so that each scheduler applies its own default.
  CHECK_FALSE(c.prediction_type.has_value());
  CHECK_FALSE(c.timestep_spacing.has_value());
  CHECK_FALSE(c.use_karras_sigmas.has_value());
}

TEST_CASE("the SD 2.1 hub file (tiny-sd2's) carries v_prediction", "[schedulers][config]") {
  const auto path = sdgen::test::data_dir() / "models" / "tiny-sd2" / "scheduler" / "scheduler_config.json";
  const auto c = parse_scheduler_config(sdgen::weights::read_text_file(path), path);
  CHECK(c.class_name == "DDIMScheduler");
  CHECK(c.prediction_type == "v_prediction");
}

TEST_CASE("Python's non-finite literals are understood outside strings only", "[schedulers][config]") {
  const auto c = parse_scheduler_config(
      R"({"lambda_min_clipped": -Infinity, "_class_name": "x-Infinity", "trained_betas": null})", "f.json");
  REQUIRE(c.lambda_min_clipped.has_value());
  CHECK(std::isinf(*c.lambda_min_clipped));
  CHECK(*c.lambda_min_clipped < 0);
  CHECK(c.class_name == "x-Infinity");
  CHECK(parse_scheduler_config(R"({"lambda_min_clipped": -5.1})", "f.json").lambda_min_clipped == -5.1);
  // Only lambda_min_clipped may be infinite.
  CHECK_THAT(parse_error(R"({"beta_end": Infinity})"), Catch::Contains("\"beta_end\""));
}

TEST_CASE("integers written as floats are accepted, fractions are not", "[schedulers][config]") {
  CHECK(parse_scheduler_config(R"({"num_train_timesteps": 1000.0})", "f.json").num_train_timesteps == 1000);
  const std::string e = parse_error(R"({"num_train_timesteps": 1000.5})");
  CHECK_THAT(e, Catch::Contains("some/dir/scheduler_config.json") && Catch::Contains("\"num_train_timesteps\"") &&
                    Catch::Contains("integer"));
}

TEST_CASE("bad scheduler configs are refused naming the file and key", "[schedulers][config]") {
  struct Case {
    const char* text;
    const char* key;
    const char* says;
  };
  const Case cases[] = {
      {R"({"beta_schedule": "cosine"})", "\"beta_schedule\"", "\"squaredcos_cap_v2\""},  // lists the valid ones
      {R"({"beta_start": "0.00085"})", "\"beta_start\"", "must be a number"},
      {R"({"steps_offset": true})", "\"steps_offset\"", "must be an integer"},
      {R"({"clip_sample": "false"})", "\"clip_sample\"", "true or false"},
      {R"({"prediction_type": "v-prediction"})", "\"prediction_type\"", "\"v_prediction\""},
      {R"({"timestep_spacing": 3})", "\"timestep_spacing\"", "must be a string"},
      {R"({"trained_betas": [0.1, "x"]})", "\"trained_betas\"", "list of numbers"},
      {R"({"trained_betas": 0.1})", "\"trained_betas\"", "list of numbers"},
      {R"({"final_sigmas_type": "one"})", "\"final_sigmas_type\"", "\"sigma_min\""},
      {R"({"solver_type": "rk4"})", "\"solver_type\"", "\"midpoint\""},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    const std::string e = parse_error(c.text);
    CHECK_THAT(e, Catch::Contains("some/dir/scheduler_config.json") && Catch::Contains(c.key) && Catch::Contains(c.says));
  }
  CHECK_THAT(parse_error("[1, 2]"), Catch::Contains("some/dir/scheduler_config.json") && Catch::Contains("object"));
  CHECK_THAT(parse_error("{\"beta_start\": "), Catch::Contains("some/dir/scheduler_config.json") && Catch::Contains("JSON"));
}
