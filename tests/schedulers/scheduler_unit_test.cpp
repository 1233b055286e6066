// Scheduler behaviour the golden runs do not reach: each class's defaults for absent keys, the
// three timestep spacings, Karras sigmas, DDIM with eta > 0 and clip_sample, the zero-SNR and
// cosine beta schedules, trained betas, PNDM's Runge-Kutta warm-up, and the errors users see.
//
// Expected values are computed here from diffusers' formulas, written independently of
// lib/schedulers (in double precision, where diffusers keeps float32 tables): timesteps exactly;
// coefficients to 1e-5 relative, which covers the float32 rounding of diffusers' alphas_cumprod
// (a cumulative product of 1000 float32 factors: ~1e-6 relative) that the library reproduces and
// these formulas do not.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "lib/schedulers/scheduler.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/safetensors.hpp"
#include "weights/scheduler_config.hpp"

using namespace sdgen::schedulers;
using sdgen::ModelError;
using sdgen::UsageError;

namespace {

constexpr double kCoefficientTolerance = 1e-5;

Scheduler make(const char* name, const std::string& json, SchedulerOptions options = {.steps = 10}) {
  return Scheduler(algorithm_from_name(name), sdgen::weights::parse_scheduler_config(json, "test/scheduler_config.json"),
                   options);
}

std::vector<double> timesteps_of(const Scheduler& s) { return {s.timesteps().begin(), s.timesteps().end()}; }

// The SD 1.x schedule, in double: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2.
constexpr const char* kSd15 = R"({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
  "clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1, "skip_prk_steps": true)";

std::vector<double> cumprod_of(const std::vector<double>& betas) {
  std::vector<double> a;
  double p = 1.0;
  for (double b : betas) a.push_back(p *= 1.0 - b);
  return a;
}
std::vector<double> linear_betas(double start, double end) {
  std::vector<double> b;
  for (int i = 0; i < 1000; ++i) b.push_back(start + (end - start) * i / 999.0);
  return b;
}
std::vector<double> sd15_alphas_cumprod() {
  std::vector<double> b = linear_betas(std::sqrt(0.00085), std::sqrt(0.012));
  for (double& x : b) x *= x;
  return cumprod_of(b);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("registry: the six command-line names", "[schedulers]") {
  CHECK(algorithm_name_list() == "ddim, dpm++2m, euler, euler_a, pndm, lms");
  CHECK(algorithm_from_name("dpm++2m") == Algorithm::DpmSolverMultistep);
  CHECK(algorithm_info(Algorithm::EulerAncestralDiscrete).name == "euler_a");
  CHECK(algorithm_infos().size() == 6);
  for (const AlgorithmInfo& info : algorithm_infos()) CHECK(algorithm_from_name(info.name) == info.algorithm);
  CHECK_THROWS_AS(algorithm_from_name("DDIM"), UsageError);
  CHECK_THAT(message_of([] { algorithm_from_name("heun"); }),
             Catch::Contains("'heun'") && Catch::Contains("ddim, dpm++2m, euler, euler_a, pndm, lms"));
}

TEST_CASE("options a scheduler cannot take are usage errors", "[schedulers]") {
  CHECK_THROWS_AS(make("euler", "{}", {.steps = 0}), UsageError);
  CHECK_THROWS_AS(make("euler", "{}", {.steps = -3}), UsageError);
  CHECK_THROWS_AS(make("ddim", "{}", {.steps = 1001}), UsageError);
  CHECK_NOTHROW(make("ddim", "{}", {.steps = 1000}));
  CHECK_THROWS_AS(make("euler", "{}", {.steps = 10, .eta = 0.5}), UsageError);
  CHECK_THROWS_AS(make("ddim", "{}", {.steps = 10, .eta = -0.5}), UsageError);
  for (const char* name : {"ddim", "pndm", "euler_a"})
    CHECK_THROWS_AS(make(name, "{}", {.steps = 10, .use_karras_sigmas = true}), UsageError);
  CHECK_NOTHROW(make("pndm", "{}", {.steps = 10, .use_karras_sigmas = false}));
  // PNDM's Runge-Kutta warm-up (skip_prk_steps absent: false) needs four steps, as in diffusers.
  CHECK_THROWS_AS(make("pndm", "{}", {.steps = 3}), UsageError);
}

TEST_CASE("absent keys take the chosen class's defaults, not the file's class's", "[schedulers]") {
  // A PNDM file without timestep_spacing, prediction_type or clip_sample.
  const std::string file = R"({"_class_name": "PNDMScheduler", "steps_offset": 1})";
  const auto spacing = [&](const char* name) { return make(name, file).config().timestep_spacing; };
  CHECK(spacing("ddim") == TimestepSpacing::Leading);
  CHECK(spacing("pndm") == TimestepSpacing::Leading);
  for (const char* name : {"dpm++2m", "euler", "euler_a", "lms"}) CHECK(spacing(name) == TimestepSpacing::Linspace);

  const ResolvedConfig ddim = make("ddim", file).config();
  CHECK(ddim.clip_sample);  // DDIM's default, absent from the file
  CHECK(ddim.clip_sample_range == 1.0);
  CHECK(ddim.set_alpha_to_one);
  CHECK(ddim.beta_schedule == BetaSchedule::Linear);
  CHECK(ddim.beta_start == 0.0001);
  CHECK(ddim.beta_end == 0.02);
  CHECK(ddim.num_train_timesteps == 1000);
  CHECK(ddim.prediction_type == PredictionType::Epsilon);

  const ResolvedConfig pndm = make("pndm", file).config();
  CHECK_FALSE(pndm.set_alpha_to_one);
  CHECK_FALSE(pndm.skip_prk_steps);

  const ResolvedConfig dpm = make("dpm++2m", file).config();
  CHECK(dpm.lower_order_final);
  CHECK(dpm.solver_type == SolverType::Midpoint);
  CHECK(dpm.final_sigmas_type == FinalSigmasType::Zero);
  CHECK_FALSE(dpm.use_karras_sigmas);
  CHECK(std::isinf(dpm.lambda_min_clipped));

  const ResolvedConfig euler = make("euler", file).config();
  CHECK(euler.timestep_type == TimestepType::Discrete);
  CHECK(euler.final_sigmas_type == FinalSigmasType::Zero);

  // Keys the chosen class lacks are ignored, as diffusers ignores them.
  CHECK_NOTHROW(make("ddim", R"({"use_exponential_sigmas": true, "interpolation_type": "log_linear"})"));
  CHECK_FALSE(make("pndm", R"({"rescale_betas_zero_snr": true})").config().rescale_betas_zero_snr);
  CHECK(make("euler", R"({"rescale_betas_zero_snr": true})").config().rescale_betas_zero_snr);
  // The user's options beat the file.
  CHECK(make("euler", file, {.steps = 10, .use_karras_sigmas = true}).config().use_karras_sigmas);
  CHECK(make("euler", file, {.steps = 10, .prediction_type = PredictionType::VPrediction}).config().prediction_type ==
        PredictionType::VPrediction);
}

TEST_CASE("timestep spacings follow diffusers' formulas", "[schedulers]") {
  // 7 steps of 1000: ratios 142 (leading), 142.857... (trailing); linspace hits halves, which
  // round to even.
  const auto with = [](const char* spacing, int offset) {
    return std::string(R"({"timestep_spacing": ")") + spacing + R"(", "steps_offset": )" + std::to_string(offset) +
           R"(, "skip_prk_steps": true})";
  };
  const SchedulerOptions seven{.steps = 7};
  using T = std::vector<double>;
  CHECK(timesteps_of(make("ddim", with("trailing", 0), seven)) == T{999, 856, 713, 570, 428, 285, 142});
  CHECK(timesteps_of(make("ddim", with("linspace", 0), seven)) == T{999, 832, 666, 500, 333, 166, 0});
  CHECK(timesteps_of(make("ddim", with("leading", 1), seven)) == T{853, 711, 569, 427, 285, 143, 1});
  // DPM-Solver spaces steps + 1 points and drops the last.
  CHECK(timesteps_of(make("dpm++2m", with("linspace", 0), seven)) == T{999, 856, 714, 571, 428, 285, 143});
  CHECK(timesteps_of(make("dpm++2m", with("leading", 1), seven)) == T{876, 751, 626, 501, 376, 251, 126});
  CHECK(timesteps_of(make("dpm++2m", with("trailing", 0), seven)) == T{999, 856, 713, 570, 428, 285, 142});
  // The Karras-style schedulers keep fractional timesteps.
  CHECK(timesteps_of(make("euler", with("linspace", 0), seven)) == T{999, 832.5, 666, 499.5, 333, 166.5, 0});
  CHECK(timesteps_of(make("lms", with("leading", 1), seven)) == T{853, 711, 569, 427, 285, 143, 1});
  CHECK(timesteps_of(make("euler_a", with("trailing", 0), seven)) == T{999, 856, 713, 570, 428, 285, 142});
  // PLMS repeats the second timestep.
  CHECK(timesteps_of(make("pndm", with("trailing", 0), seven)) == T{999, 856, 856, 713, 570, 428, 285, 142});
}

TEST_CASE("init_noise_sigma of the Karras-style schedulers depends on the spacing", "[schedulers]") {
  const std::string sd15 = std::string(kSd15) + "}";
  // linspace/trailing: sigma_max itself; leading: sqrt(sigma_max^2 + 1). sigma_max = sigma at t=999.
  const double sigma_max = make("euler", sd15).sigmas()[0];
  const double a999 = sd15_alphas_cumprod()[999];
  CHECK(sigma_max == Approx(std::sqrt((1 - a999) / a999)).epsilon(kCoefficientTolerance));
  CHECK(make("euler", sd15).init_noise_sigma() == sigma_max);
  const Scheduler leading = make("euler_a", std::string(kSd15) + R"(, "timestep_spacing": "leading"})");
  CHECK(leading.init_noise_sigma() == Approx(std::sqrt(leading.sigmas()[0] * leading.sigmas()[0] + 1)).epsilon(1e-7));
  // DDIM, PNDM and DPM-Solver++ start from unit noise and take unscaled input.
  for (const char* name : {"ddim", "pndm", "dpm++2m"}) {
    CHECK(make(name, sd15).init_noise_sigma() == 1.0);
    CHECK(make(name, sd15).model_input_scale(3) == 1.0);
  }
  const Scheduler euler = make("euler", sd15);
  CHECK(euler.model_input_scale(2) == Approx(1.0 / std::sqrt(euler.sigmas()[2] * euler.sigmas()[2] + 1)).epsilon(1e-12));
}

TEST_CASE("Karras sigmas follow the Karras et al. ramp between the training extremes", "[schedulers]") {
  // The training sigmas at t = 999 and t = 0, as diffusers computed them (golden Euler run).
  sdgen::weights::SafeTensorsFile run(sdgen::test::data_dir() / "runs" / "tiny" / "p0_euler.safetensors");
  const auto golden = run.f32(run.at("sigmas"));
  const double sigma_max = golden[0];
  const double sigma_min = golden[9];
  const std::string sd15 = std::string(kSd15) + "}";
  for (const char* name : {"euler", "lms", "dpm++2m"}) {
    INFO(name);
    const Scheduler s = make(name, sd15, {.steps = 10, .use_karras_sigmas = true});
    REQUIRE(s.sigmas().size() == 11);
    for (int i = 0; i < 10; ++i) {
      const double ramp = i / 9.0;
      const double expected =
          std::pow(std::pow(sigma_max, 1 / 7.0) + ramp * (std::pow(sigma_min, 1 / 7.0) - std::pow(sigma_max, 1 / 7.0)), 7.0);
      CHECK(s.sigmas()[static_cast<std::size_t>(i)] == Approx(expected).epsilon(2e-7));  // float32 storage
    }
    CHECK(s.sigmas()[10] == 0.0);
    // The end points map back to the training timesteps they came from; the rest decrease.
    // (Within float32 rounding of the logs: diffusers compares a float64 log with float32 ones.)
    CHECK(s.timesteps().front() == Approx(999).margin(1e-3));
    CHECK(s.timesteps().back() == Approx(0).margin(1e-3));
    for (int i = 1; i < 10; ++i) CHECK(s.timesteps()[static_cast<std::size_t>(i)] < s.timesteps()[static_cast<std::size_t>(i - 1)]);
  }
  // DPM-Solver++ rounds them to integers; Euler keeps fractions.
  const Scheduler dpm = make("dpm++2m", sd15, {.steps = 10, .use_karras_sigmas = true});
  for (double t : dpm.timesteps()) CHECK(t == std::round(t));
  const Scheduler euler = make("euler", sd15, {.steps = 10, .use_karras_sigmas = true});
  CHECK(euler.timesteps()[1] != std::round(euler.timesteps()[1]));
}

TEST_CASE("DDIM with eta > 0 follows equations (12) and (16) of the DDIM paper", "[schedulers]") {
  const std::vector<double> a = sd15_alphas_cumprod();
  const std::string sd15 = std::string(kSd15) + "}";
  const double eta = 0.7;
  const Scheduler s = make("ddim", sd15, {.steps = 10, .eta = eta});
  for (int i = 0; i < s.num_calls(); ++i) {
    INFO("call " << i);
    const int t = static_cast<int>(s.timesteps()[static_cast<std::size_t>(i)]);
    const int prev = t - 100;
    const double a_t = a[static_cast<std::size_t>(t)];
    const double a_prev = prev >= 0 ? a[static_cast<std::size_t>(prev)] : a[0];  // set_alpha_to_one false
    const double sigma = eta * std::sqrt((1 - a_prev) / (1 - a_t)) * std::sqrt(1 - a_t / a_prev);
    // x_prev = sqrt(a_prev) (x - sqrt(1 - a_t) e) / sqrt(a_t) + sqrt(1 - a_prev - sigma^2) e + sigma z
    const double w_sample = std::sqrt(a_prev / a_t);
    const double x0_part = -std::sqrt(a_prev) * std::sqrt(1 - a_t) / std::sqrt(a_t);
    const double direction_part = std::sqrt(1 - a_prev - sigma * sigma);
    const double w_output = x0_part + direction_part;
    const StepPlan& plan = s.plan(i);
    REQUIRE(plan.write_count == 1);
    CHECK(plan.needs_noise());  // every call, the last included
    const Combination& c = plan.writes[0].value;
    CHECK(c[Term::Sample] == Approx(w_sample).epsilon(kCoefficientTolerance));
    // The two parts nearly cancel at the last steps (a -> 1), so the tolerance is relative to them.
    CHECK(c[Term::ModelOutput] ==
          Approx(w_output).margin(kCoefficientTolerance * (std::abs(x0_part) + std::abs(direction_part))));
    CHECK(c[Term::Noise] == Approx(sigma).epsilon(kCoefficientTolerance));

    // The CPU step applies exactly these weights (one float rounding of a double sum).
    std::vector<float> x = {1.5f, -2.0f, 0.25f}, e = {0.5f, 0.1f, -1.0f}, z = {-0.3f, 2.0f, 0.7f};
    const std::vector<float> x0 = x;
    apply_step_plan(plan, StepBuffers{x, e, z, {}});
    for (std::size_t k = 0; k < x.size(); ++k)
      CHECK(x[k] == Approx(c[Term::Sample] * x0[k] + c[Term::ModelOutput] * e[k] + c[Term::Noise] * z[k]).epsilon(1e-7));
  }
  for (int i = 0; i < 10; ++i) CHECK_FALSE(make("ddim", sd15).needs_noise(i));
}

TEST_CASE("DDIM clip_sample clamps the predicted x0", "[schedulers]") {
  // The default config: linear betas 1e-4..0.02, leading spacing, clip_sample and set_alpha_to_one
  // true. Call 0 goes from t = 900 to t = 800.
  const Scheduler s = make("ddim", "{}");
  const std::vector<double> a = cumprod_of(linear_betas(0.0001, 0.02));
  const double a_t = a[900], a_prev = a[800];
  REQUIRE(s.plan(0).clip.has_value());
  // x = 10, e = 0: x0 = 10 / sqrt(a_t) is clamped to 1, so x_prev = sqrt(a_prev) * 1.
  // x = 0.001, e = 0: x0 stays, x_prev = sqrt(a_prev / a_t) * 0.001.
  std::vector<float> x = {10.0f, 0.001f, -10.0f}, e = {0.0f, 0.0f, 0.0f};
  apply_step_plan(s.plan(0), StepBuffers{x, e, {}, {}});
  CHECK(x[0] == Approx(std::sqrt(a_prev)).epsilon(kCoefficientTolerance));
  CHECK(x[1] == Approx(std::sqrt(a_prev / a_t) * 0.001).epsilon(kCoefficientTolerance));
  CHECK(x[2] == Approx(-std::sqrt(a_prev)).epsilon(kCoefficientTolerance));
  CHECK(s.timesteps().back() == 0);  // set_alpha_to_one: the last step lands on alpha = 1
  CHECK_FALSE(make("ddim", R"({"clip_sample": false})").plan(0).clip.has_value());
}

TEST_CASE("the cosine (squaredcos_cap_v2) schedule uses real division", "[schedulers]") {
  // alphas_cumprod telescopes to alpha_bar((t + 1) / N) / alpha_bar(0) while betas stay under the
  // 0.999 cap; candle's integer t / N made every beta but the last zero.
  const auto alpha_bar = [](double x) {
    const double c = std::cos((x + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  const auto a = [&](int t) { return alpha_bar((t + 1) / 1000.0) / alpha_bar(0.0); };
  const Scheduler s = make("ddim", R"({"beta_schedule": "squaredcos_cap_v2", "clip_sample": false})");
  // Call 1: t = 800 to 700 (leading, offset 0), epsilon: weight on x is sqrt(a_prev / a_t).
  CHECK(s.timesteps()[1] == 800);
  CHECK(s.plan(1).writes[0].value[Term::Sample] == Approx(std::sqrt(a(700) / a(800))).epsilon(kCoefficientTolerance));
}

TEST_CASE("rescale_betas_zero_snr gives a zero terminal SNR", "[schedulers]") {
  const std::string zsnr = std::string(kSd15) +
                           R"(, "rescale_betas_zero_snr": true, "timestep_spacing": "trailing", "prediction_type": "v_prediction"})";
  // Euler family: alphas_cumprod[999] becomes 2^-24, so sigma_max = sqrt((1 - 2^-24) / 2^-24).
  const Scheduler euler = make("euler", zsnr);
  CHECK(euler.sigmas()[0] == Approx(std::sqrt((1 - 0x1p-24) / 0x1p-24)).epsilon(1e-7));
  CHECK(euler.init_noise_sigma() == euler.sigmas()[0]);  // trailing
  // DDIM keeps alphas_cumprod[999] = 0: with v-prediction the first step is x_prev =
  // sqrt(1 - a_prev) x - sqrt(a_prev) v, a_prev the rescaled alphas_cumprod[899].
  std::vector<double> sqrt_a = sd15_alphas_cumprod();
  for (double& v : sqrt_a) v = std::sqrt(v);
  const double first = sqrt_a[0], last = sqrt_a[999];
  const double rescaled = (sqrt_a[899] - last) * first / (first - last);
  const double a_prev = rescaled * rescaled;
  const Scheduler ddim = make("ddim", zsnr);
  CHECK(ddim.timesteps()[0] == 999);
  const Combination& c = ddim.plan(0).writes[0].value;
  CHECK(c[Term::Sample] == Approx(std::sqrt(1 - a_prev)).epsilon(kCoefficientTolerance));
  CHECK(c[Term::ModelOutput] == Approx(-std::sqrt(a_prev)).epsilon(kCoefficientTolerance));
}

TEST_CASE("trained_betas replace the beta schedule", "[schedulers]") {
  std::string betas = "[";
  for (int i = 0; i < 1000; ++i) betas += i ? ", 0.01" : "0.01";
  betas += "]";
  // alphas_cumprod[t] = 0.99^(t + 1); call 0 of DDIM (leading, offset 0) goes 900 -> 800.
  const Scheduler s = make("ddim", R"({"clip_sample": false, "trained_betas": )" + betas + "}");
  CHECK(s.plan(0).writes[0].value[Term::Sample] == Approx(std::pow(0.99, -50.0)).epsilon(kCoefficientTolerance));
  CHECK_THAT(message_of([] { make("ddim", R"({"trained_betas": [0.1, 0.2]})"); }),
             Catch::Contains("test/scheduler_config.json") && Catch::Contains("\"trained_betas\"") &&
                 Catch::Contains("1000"));
}

TEST_CASE("PNDM's Runge-Kutta warm-up (skip_prk_steps false)", "[schedulers]") {
  // Default config, 10 steps: the last four timesteps 600..900 and their half steps, then PLMS.
  const Scheduler s = make("pndm", "{}");
  CHECK(timesteps_of(s) == std::vector<double>{900, 850, 850, 800, 800, 750, 750, 700, 700, 650, 650, 600,  //
                                               600, 500, 400, 300, 200, 100, 0});
  CHECK(s.history_slots() <= kHistorySlots);
  // With the same noise prediction e at all four calls of a group, the Runge-Kutta weights
  // (1/6, 1/3, 1/3, 1/6) sum to one and the group is one PNDM transfer from its first sample, t
  // = 900 to 800: x' = sqrt(a' / a) x - (a' - a) e / (a sqrt(1 - a') + sqrt(a (1 - a) a')).
  const std::vector<double> a = cumprod_of(linear_betas(0.0001, 0.02));
  const double at = a[900], ap = a[800];
  const double expected = std::sqrt(ap / at) * 1.0 - (ap - at) * 0.5 / (at * std::sqrt(1 - ap) + std::sqrt(at * (1 - at) * ap));
  std::vector<float> x = {1.0f}, e = {0.5f};
  std::vector<std::vector<float>> history(static_cast<std::size_t>(s.history_slots()), std::vector<float>(1));
  StepBuffers b{x, e, {}, {}};
  for (std::size_t i = 0; i < history.size(); ++i) b.history[i] = history[i];
  for (int call = 0; call < 4; ++call) apply_step_plan(s.plan(call), b);
  CHECK(x[0] == Approx(expected).epsilon(kCoefficientTolerance));
}

TEST_CASE("configs sdgen cannot run are refused naming the file and key", "[schedulers]") {
  const auto refused = [](const char* name, const char* json, const char* key) {
    INFO(name << " " << json);
    const std::string e = message_of([&] { make(name, json); });
    CHECK_THAT(e, Catch::Contains("test/scheduler_config.json") && Catch::Contains(key));
  };
  refused("ddim", R"({"thresholding": true})", "\"thresholding\"");
  refused("dpm++2m", R"({"thresholding": true})", "\"thresholding\"");
  refused("euler", R"({"use_exponential_sigmas": true})", "\"use_exponential_sigmas\"");
  refused("lms", R"({"use_beta_sigmas": true})", "\"use_beta_sigmas\"");
  refused("dpm++2m", R"({"use_lu_lambdas": true})", "\"use_lu_lambdas\"");
  refused("dpm++2m", R"({"variance_type": "learned_range"})", "\"variance_type\"");
  refused("euler", R"({"interpolation_type": "log_linear"})", "\"interpolation_type\"");
  refused("euler_a", R"({"prediction_type": "sample"})", "\"prediction_type\"");
  refused("pndm", R"({"prediction_type": "sample"})", "\"prediction_type\"");
  refused("ddim", R"({"beta_end": 1.5})", "\"beta_end\"");
  refused("ddim", R"({"num_train_timesteps": 1})", "\"num_train_timesteps\"");
  refused("ddim", R"({"steps_offset": 1000})", "\"steps_offset\"");
  CHECK_THROWS_AS(make("ddim", R"({"thresholding": true})"), ModelError);
}

TEST_CASE("apply_step_plan checks its buffers", "[schedulers]") {
  const Scheduler s = make("euler_a", "{}");
  std::vector<float> x(4), e(4), z(3);
  CHECK_THROWS_AS(apply_step_plan(s.plan(0), StepBuffers{x, e, z, {}}), sdgen::Error);  // noise too short
  CHECK_THROWS_AS(apply_step_plan(s.plan(0), StepBuffers{x, e, {}, {}}), sdgen::Error);  // noise missing
  const Scheduler lms = make("lms", "{}");
  CHECK_THROWS_AS(apply_step_plan(lms.plan(0), StepBuffers{x, e, {}, {}}), sdgen::Error);  // history missing
}
