// Per-class defaults of diffusers 0.33.1 (each scheduler's __init__ signature), applied to the keys
// the file lacks. See resolved_config.hpp for why the chosen algorithm, not the file's _class_name,
// decides them.
#include "lib/schedulers/resolved_config.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "lib/core/error.hpp"

namespace sdgen::schedulers {

namespace {

// Which of the optional keys a class's __init__ takes: a key a class lacks is ignored, as
// diffusers ignores it (from_config drops it), even when the file sets it.
struct ClassKeys {
  const char* class_name;
  TimestepSpacing default_spacing;
  bool rescale_betas_zero_snr;
  bool karras_family;  // use_karras_sigmas and the other sigma spacings
  bool sample_prediction;  // prediction_type "sample" is implemented by the class
};

ClassKeys keys_of(Algorithm a) {
  switch (a) {
    case Algorithm::Ddim: return {"DDIMScheduler", TimestepSpacing::Leading, true, false, true};
    case Algorithm::Pndm: return {"PNDMScheduler", TimestepSpacing::Leading, false, false, false};
    case Algorithm::DpmSolverMultistep:
      return {"DPMSolverMultistepScheduler", TimestepSpacing::Linspace, true, true, true};
    case Algorithm::EulerDiscrete: return {"EulerDiscreteScheduler", TimestepSpacing::Linspace, true, true, true};
    case Algorithm::EulerAncestralDiscrete:
      return {"EulerAncestralDiscreteScheduler", TimestepSpacing::Linspace, true, false, false};
    case Algorithm::LmsDiscrete: return {"LMSDiscreteScheduler", TimestepSpacing::Linspace, false, true, true};
  }
  throw std::logic_error("unknown scheduler algorithm");
}

class Resolver {
 public:
  explicit Resolver(const weights::SchedulerConfig& file) : file_(file) {}

  [[noreturn]] void fail(std::string_view key, std::string_view problem) const {
    throw ModelError(cat(file_.source.string(), ": \"", key, "\" ", problem));
  }
  // A feature sdgen does not implement, switched on in the file.
  void refuse_if_true(std::string_view key, const std::optional<bool>& value, std::string_view what) const {
    if (value.value_or(false)) fail(key, cat("is true, but ", what, " is not supported by sdgen"));
  }

 private:
  const weights::SchedulerConfig& file_;
};

BetaSchedule beta_schedule_from(const std::string& s) {
  if (s == "scaled_linear") return BetaSchedule::ScaledLinear;
  if (s == "squaredcos_cap_v2") return BetaSchedule::SquaredCosCapV2;
  return BetaSchedule::Linear;  // the parser admits only these three
}

PredictionType prediction_from(const std::string& s) {
  if (s == "v_prediction") return PredictionType::VPrediction;
  if (s == "sample") return PredictionType::Sample;
  return PredictionType::Epsilon;
}

TimestepSpacing spacing_from(const std::string& s) {
  if (s == "leading") return TimestepSpacing::Leading;
  if (s == "trailing") return TimestepSpacing::Trailing;
  return TimestepSpacing::Linspace;
}

}  // namespace

ResolvedConfig resolve_config(Algorithm algorithm, const weights::SchedulerConfig& file,
                              const ConfigOverrides& overrides) {
  const ClassKeys keys = keys_of(algorithm);
  const Resolver r(file);
  ResolvedConfig c;

  // ---- the noise schedule, common to all six classes
  c.num_train_timesteps = file.num_train_timesteps.value_or(1000);
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > 100000)
    r.fail("num_train_timesteps", cat("is ", c.num_train_timesteps, "; expected 2 to 100000"));
  c.beta_start = file.beta_start.value_or(0.0001);
  c.beta_end = file.beta_end.value_or(0.02);
  for (auto [key, v] : {std::pair{"beta_start", c.beta_start}, std::pair{"beta_end", c.beta_end}})
    if (!(v >= 0.0 && v < 1.0)) r.fail(key, cat("is ", v, "; a beta must lie in [0, 1)"));
  c.beta_schedule = beta_schedule_from(file.beta_schedule.value_or("linear"));
  if (file.trained_betas) {
    c.trained_betas = *file.trained_betas;
    if (static_cast<int>(c.trained_betas.size()) != c.num_train_timesteps)
      r.fail("trained_betas", cat("has ", c.trained_betas.size(), " values but \"num_train_timesteps\" is ",
                                  c.num_train_timesteps));
    for (double b : c.trained_betas)
      if (!(b >= 0.0 && b < 1.0)) r.fail("trained_betas", cat("holds ", b, "; a beta must lie in [0, 1)"));
  }
  if (keys.rescale_betas_zero_snr) c.rescale_betas_zero_snr = file.rescale_betas_zero_snr.value_or(false);

  c.prediction_type = overrides.prediction_type.value_or(prediction_from(file.prediction_type.value_or("epsilon")));
  if (c.prediction_type == PredictionType::Sample && !keys.sample_prediction)
    throw ModelError(cat(file.source.string(), ": \"prediction_type\" is \"sample\", which diffusers' ",
                         keys.class_name, " does not implement; choose another scheduler"));

  c.timestep_spacing = file.timestep_spacing ? spacing_from(*file.timestep_spacing) : keys.default_spacing;
  c.steps_offset = file.steps_offset.value_or(0);
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    r.fail("steps_offset", cat("is ", c.steps_offset, "; expected 0 to num_train_timesteps - 1"));

  // ---- class-specific keys
  switch (algorithm) {
    case Algorithm::Ddim:
      c.set_alpha_to_one = file.set_alpha_to_one.value_or(true);
      c.clip_sample = file.clip_sample.value_or(true);
      c.clip_sample_range = file.clip_sample_range.value_or(1.0);
      if (!(c.clip_sample_range > 0.0)) r.fail("clip_sample_range", cat("is ", c.clip_sample_range, "; must be positive"));
      r.refuse_if_true("thresholding", file.thresholding, "dynamic thresholding");
      break;
    case Algorithm::Pndm:
      c.set_alpha_to_one = file.set_alpha_to_one.value_or(false);
      c.skip_prk_steps = file.skip_prk_steps.value_or(false);
      break;
    case Algorithm::DpmSolverMultistep:
      // "dpm++2m" fixes algorithm_type = dpmsolver++ and solver_order = 2 whatever the file says,
      // as diffusers does when the pipeline passes them (the golden runs were made that way).
      r.refuse_if_true("thresholding", file.thresholding, "dynamic thresholding");
      r.refuse_if_true("use_lu_lambdas", file.use_lu_lambdas, "the uniform-logSNR (Lu) spacing");
      r.refuse_if_true("use_flow_sigmas", file.use_flow_sigmas, "flow-matching sigmas");
      if (file.variance_type)
        r.fail("variance_type", cat("is \"", *file.variance_type, "\"; models with learned variance are not supported"));
      c.solver_type = file.solver_type.value_or("midpoint") == "heun" ? SolverType::Heun : SolverType::Midpoint;
      c.lower_order_final = file.lower_order_final.value_or(true);
      c.euler_at_final = file.euler_at_final.value_or(false);
      c.lambda_min_clipped = file.lambda_min_clipped.value_or(-std::numeric_limits<double>::infinity());
      if (std::isnan(c.lambda_min_clipped)) r.fail("lambda_min_clipped", "is NaN");
      c.final_sigmas_type = file.final_sigmas_type.value_or("zero") == "sigma_min" ? FinalSigmasType::SigmaMin
                                                                                     : FinalSigmasType::Zero;
      break;
    case Algorithm::EulerDiscrete:
      if (file.interpolation_type.value_or("linear") != "linear")
        r.fail("interpolation_type", cat("is \"", *file.interpolation_type, "\"; only \"linear\" is supported"));
      c.timestep_type = file.timestep_type.value_or("discrete") == "continuous" ? TimestepType::Continuous
                                                                                 : TimestepType::Discrete;
      c.sigma_min = file.sigma_min;
      c.sigma_max = file.sigma_max;
      c.final_sigmas_type = file.final_sigmas_type.value_or("zero") == "sigma_min" ? FinalSigmasType::SigmaMin
                                                                                     : FinalSigmasType::Zero;
      break;
    case Algorithm::EulerAncestralDiscrete:
    case Algorithm::LmsDiscrete: break;
  }

  if (keys.karras_family) {
    r.refuse_if_true("use_exponential_sigmas", file.use_exponential_sigmas, "the exponential sigma spacing");
    r.refuse_if_true("use_beta_sigmas", file.use_beta_sigmas, "the beta-distribution sigma spacing");
    c.use_karras_sigmas = overrides.use_karras_sigmas.value_or(file.use_karras_sigmas.value_or(false));
  }
  return c;
}

}  // namespace sdgen::schedulers
