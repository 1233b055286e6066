// The six schedulers against diffusers' own runs (tests/data/runs/<model>/p0_<scheduler>.*):
// 10 steps, seed 42, guidance 7.5, for `tiny` (epsilon) and `tiny-sd2` (v_prediction).
//
// Each scheduler is built from the model's scheduler_config.json as a user's run would build it,
// so the per-class defaults are exercised, and checked for: the resolved config against the one
// diffusers recorded, the timesteps, sigmas and init_noise_sigma, the UNet input at call 0, and
// the latents after every step, given the UNet outputs diffusers recorded:
//   teacher-forced  each step starts from diffusers' latents of the step before (history from
//                   diffusers' earlier inputs), so errors cannot accumulate;
//   free-running    the latents are ours from the seeded noise on (euler_a's step noise drawn
//                   from our generator), as in a real run.
//
// Tolerances. The reference is fp32 torch: every step is a few float32 operations whose
// intermediates reach several times |x| (x0 = (x - sqrt(1-a) e) / sqrt(a) at a ~ 0.01, multistep
// sums like (55 e1 - 59 e2 + 37 e3 - 9 e4) / 24), each rounding at 2^-24 relative, so one reference
// step carries up to ~1e-6 of max|x| in error; ours carries one float rounding (coefficients in
// double from the same float32 schedule). A teacher-forced step must agree within 2e-6 * max|x|
// (twice that bound). Free-running, the differences are carried along but not amplified over 10
// steps: within 1e-5 * max|ref| over the run (10 steps of the per-step bound), far inside the
// golden README's 1e-3 * max|ref| for a whole 10-step pipeline. Measured errors are ~1e-7 and
// ~3e-7 (test "[report]"). Timesteps must match exactly (they are integers, or float32 values of
// integers and halves); sigmas and init_noise_sigma to 1e-6 relative (float32 values reproduced
// op by op: in fact they are bit-identical).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/core/rng.hpp"
#include "lib/schedulers/scheduler.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/safetensors.hpp"
#include "weights/scheduler_config.hpp"

using namespace sdgen::schedulers;
using sdgen::weights::SafeTensorsFile;
using json = nlohmann::json;

namespace {

constexpr const char* kModels[] = {"tiny", "tiny-sd2"};
constexpr const char* kSchedulers[] = {"ddim", "dpm++2m", "euler", "euler_a", "pndm", "lms"};
constexpr float kGuidanceScale = 7.5f;
constexpr double kTeacherForcedTolerance = 2e-6;  // relative to max|x| of the step
constexpr double kFreeRunningTolerance = 1e-5;    // relative to max|x| over the run

class GoldenRun {
 public:
  GoldenRun(const std::string& model, const std::string& scheduler)
      : model_(model),
        scheduler_name_(scheduler),
        file_(sdgen::test::data_dir() / "runs" / model / ("p0_" + scheduler + ".safetensors")),
        meta_(json::parse(sdgen::weights::read_text_file(sdgen::test::data_dir() / "runs" / model /
                                                         ("p0_" + scheduler + ".json")))) {}

  std::span<const float> tensor(const char* name) const { return file_.f32(file_.at(name)); }
  bool has(const char* name) const { return file_.find(name) != nullptr; }
  const json& meta() const { return meta_; }
  std::size_t latent_size() const { return tensor("latents.init").size(); }
  int calls() const { return meta_.at("n_unet_calls").get<int>(); }
  // Call i's slice of a [S, ...] tensor.
  std::span<const float> at_call(const char* name, int i) const {
    return tensor(name).subspan(static_cast<std::size_t>(i) * latent_size(), latent_size());
  }
  // The guided model output of call i, in float32 as the pipeline computes it.
  std::vector<float> guided(int i) const {
    const auto u = at_call("eps.steps.uncond", i);
    const auto c = at_call("eps.steps.cond", i);
    std::vector<float> g(u.size());
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = u[k] + kGuidanceScale * (c[k] - u[k]);
    return g;
  }

  Scheduler build() const {
    const auto path = sdgen::test::data_dir() / "models" / model_ / "scheduler" / "scheduler_config.json";
    const auto config = sdgen::weights::parse_scheduler_config(sdgen::weights::read_text_file(path), path);
    return Scheduler(algorithm_from_name(scheduler_name_), config, SchedulerOptions{.steps = 10});
  }

 private:
  std::string model_, scheduler_name_;
  SafeTensorsFile file_;
  json meta_;
};

double max_abs(std::span<const float> v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, static_cast<double>(std::abs(x)));
  return m;
}

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// History buffers for a scheduler, and the StepBuffers view over them.
struct StepState {
  std::vector<std::vector<float>> history;
  StepState(const Scheduler& s, std::size_t n) : history(static_cast<std::size_t>(s.history_slots()), std::vector<float>(n)) {}
  StepBuffers buffers(std::span<float> sample, std::span<const float> model_output, std::span<const float> noise) {
    StepBuffers b{sample, model_output, noise, {}};
    for (std::size_t i = 0; i < history.size(); ++i) b.history[i] = history[i];
    return b;
  }
};

struct Errors {
  double sigma_rel = 0.0;
  bool sigmas_bit_exact = true;
  double unet_in_rel = 0.0;
  double teacher_forced_rel = 0.0;  // max over steps of max|ours - ref| / max|ref| of that step
  double free_running_rel = 0.0;    // max over steps of max|ours - ref|, / max|ref| over the run
};

Errors measure(const GoldenRun& run, const Scheduler& scheduler) {
  Errors e;
  const std::size_t n = run.latent_size();
  if (run.has("sigmas")) {
    const auto ref = run.tensor("sigmas");
    for (std::size_t i = 0; i < ref.size() && i < scheduler.sigmas().size(); ++i) {
      const double ours = scheduler.sigmas()[i];
      if (static_cast<float>(ours) != ref[i]) e.sigmas_bit_exact = false;
      if (ref[i] != 0.0f) e.sigma_rel = std::max(e.sigma_rel, std::abs(ours - ref[i]) / ref[i]);
    }
  }

  const auto init = run.tensor("latents.init");
  const auto unet_in = run.tensor("unet_in.step0");
  const double scale = scheduler.model_input_scale(0);
  for (std::size_t k = 0; k < unet_in.size(); ++k) {
    const float ours = static_cast<float>(init[k % n] * scale);
    e.unet_in_rel = std::max(e.unet_in_rel, std::abs(static_cast<double>(ours) - unet_in[k]) / max_abs(unet_in));
  }

  {  // teacher-forced
    StepState state(scheduler, n);
    for (int i = 0; i < scheduler.num_calls(); ++i) {
      const auto start = i == 0 ? init : run.at_call("latents.steps", i - 1);
      std::vector<float> sample(start.begin(), start.end());
      const std::vector<float> guided = run.guided(i);
      const auto noise = scheduler.needs_noise(i) ? run.at_call("step_noise", i) : std::span<const float>{};
      apply_step_plan(scheduler.plan(i), state.buffers(sample, guided, noise));
      const auto ref = run.at_call("latents.steps", i);
      e.teacher_forced_rel = std::max(e.teacher_forced_rel, max_abs_diff(sample, ref) / max_abs(ref));
    }
  }

  {  // free-running, drawing noise as a real run does
    sdgen::TorchCpuGenerator generator(42);
    std::vector<float> latents(n), noise(n);
    generator.randn(latents);
    for (float& x : latents) x = static_cast<float>(x * scheduler.init_noise_sigma());
    REQUIRE(max_abs_diff(latents, init) == 0.0);  // noise * init_noise_sigma, bit for bit
    StepState state(scheduler, n);
    double worst = 0.0, scale_of_run = 0.0;
    for (int i = 0; i < scheduler.num_calls(); ++i) {
      const std::vector<float> guided = run.guided(i);
      if (scheduler.needs_noise(i)) generator.randn(noise);
      apply_step_plan(scheduler.plan(i), state.buffers(latents, guided, scheduler.needs_noise(i) ? noise : std::span<const float>{}));
      const auto ref = run.at_call("latents.steps", i);
      worst = std::max(worst, max_abs_diff(latents, ref));
      scale_of_run = std::max(scale_of_run, max_abs(ref));
    }
    e.free_running_rel = worst / scale_of_run;
  }
  return e;
}

// The resolved keys diffusers recorded in the run's .json, against ours.
void check_resolved_config(const GoldenRun& run, const Scheduler& scheduler) {
  const json& ref = run.meta().at("scheduler_config");
  const ResolvedConfig& c = scheduler.config();
  CHECK(c.num_train_timesteps == ref.at("num_train_timesteps").get<int>());
  CHECK(c.beta_start == ref.at("beta_start").get<double>());
  CHECK(c.beta_end == ref.at("beta_end").get<double>());
  CHECK(ref.at("beta_schedule") == "scaled_linear");
  CHECK(c.beta_schedule == BetaSchedule::ScaledLinear);
  CHECK(c.steps_offset == ref.at("steps_offset").get<int>());
  const std::string spacing = ref.at("timestep_spacing");
  CHECK(c.timestep_spacing == (spacing == "leading" ? TimestepSpacing::Leading
                               : spacing == "trailing" ? TimestepSpacing::Trailing
                                                       : TimestepSpacing::Linspace));
  const std::string prediction = ref.at("prediction_type");
  CHECK(c.prediction_type == (prediction == "v_prediction" ? PredictionType::VPrediction : PredictionType::Epsilon));
  if (ref.contains("rescale_betas_zero_snr")) CHECK(c.rescale_betas_zero_snr == ref.at("rescale_betas_zero_snr").get<bool>());
  if (ref.contains("use_karras_sigmas")) CHECK(c.use_karras_sigmas == ref.at("use_karras_sigmas").get<bool>());
  if (ref.contains("final_sigmas_type"))
    CHECK((c.final_sigmas_type == FinalSigmasType::Zero) == (ref.at("final_sigmas_type") == "zero"));
  if (ref.contains("lower_order_final")) CHECK(c.lower_order_final == ref.at("lower_order_final").get<bool>());
  if (ref.contains("solver_type")) CHECK((c.solver_type == SolverType::Midpoint) == (ref.at("solver_type") == "midpoint"));
  if (ref.contains("timestep_type")) CHECK((c.timestep_type == TimestepType::Discrete) == (ref.at("timestep_type") == "discrete"));
  const std::string cls = ref.at("_class_name");
  if (cls == "DDIMScheduler" || cls == "PNDMScheduler")
    CHECK(c.set_alpha_to_one == ref.at("set_alpha_to_one").get<bool>());
  if (cls == "DDIMScheduler") {
    CHECK(c.clip_sample == ref.at("clip_sample").get<bool>());
    CHECK(c.clip_sample_range == ref.at("clip_sample_range").get<double>());
  }
  if (cls == "PNDMScheduler") CHECK(c.skip_prk_steps == ref.at("skip_prk_steps").get<bool>());
}

}  // namespace

TEST_CASE("schedulers reproduce diffusers' runs", "[schedulers][golden]") {
  for (const char* model : kModels) {
    for (const char* name : kSchedulers) {
      INFO(model << " / " << name);
      const GoldenRun run(model, name);
      const Scheduler scheduler = run.build();
      check_resolved_config(run, scheduler);

      // Timesteps: exactly, as the float32 values diffusers passed to the UNet.
      REQUIRE(scheduler.num_calls() == run.calls());
      const auto timesteps = run.tensor("timesteps");
      const auto step_timesteps = run.tensor("step_timesteps");
      for (int i = 0; i < run.calls(); ++i) {
        INFO("call " << i);
        CHECK(static_cast<float>(scheduler.timesteps()[static_cast<std::size_t>(i)]) == timesteps[static_cast<std::size_t>(i)]);
        CHECK(static_cast<float>(scheduler.timesteps()[static_cast<std::size_t>(i)]) == step_timesteps[static_cast<std::size_t>(i)]);
      }
      CHECK(scheduler.init_noise_sigma() == Approx(run.tensor("init_noise_sigma")[0]).epsilon(1e-6));
      if (run.has("sigmas")) CHECK(scheduler.sigmas().size() == run.tensor("sigmas").size());
      else CHECK(scheduler.sigmas().empty());
      // Only Euler ancestral draws noise (DDIM runs with eta 0).
      for (int i = 0; i < run.calls(); ++i) CHECK(scheduler.needs_noise(i) == run.has("step_noise"));

      const Errors e = measure(run, scheduler);
      CHECK(e.sigma_rel <= 1e-6);
      CHECK(e.unet_in_rel <= 1e-6);  // one division vs one multiplication by the reciprocal
      CHECK(e.teacher_forced_rel <= kTeacherForcedTolerance);
      CHECK(e.free_running_rel <= kFreeRunningTolerance);
    }
  }
}

// Prints the measured errors (run with the tag to see them: sdgen_schedulers_tests "[report]").
TEST_CASE("scheduler error report", "[.][report]") {
  std::printf("%-9s %-8s %12s %6s %12s %14s %14s\n", "model", "sched", "sigma rel", "exact", "unet_in rel",
              "teacher rel", "free-run rel");
  for (const char* model : kModels) {
    for (const char* name : kSchedulers) {
      const GoldenRun run(model, name);
      const Errors e = measure(run, run.build());
      std::printf("%-9s %-8s %12.3g %6s %12.3g %14.3g %14.3g\n", model, name, e.sigma_rel,
                  run.has("sigmas") ? (e.sigmas_bit_exact ? "yes" : "no") : "-", e.unet_in_rel,
                  e.teacher_forced_rel, e.free_running_rel);
    }
  }
}
