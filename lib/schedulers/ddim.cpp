// DDIMScheduler (diffusers 0.33.1): Song et al. (2020), equations (12) and (16).
//
// From x_t and the model output: x0 and epsilon (converted per prediction type, both linear in
// x_t and the output), optionally x0 clipped to [-clip_sample_range, clip_sample_range], then
//   x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps + std z,
//   std = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)),
// where a = alphas_cumprod, z is fresh noise drawn only when eta > 0, and "prev" is always
// t - num_train_timesteps // steps whatever the spacing (diffusers' rule), a_prev being
// final_alpha_cumprod (1 or alphas_cumprod[0], per set_alpha_to_one) below 0.
#include <algorithm>
#include <cmath>

#include "lib/core/error.hpp"
#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

namespace {

std::vector<long> ddim_timesteps(const ResolvedConfig& c, int steps) {
  const int n_train = c.num_train_timesteps;
  std::vector<long> t;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace:
      for (double v : np_linspace(0.0, n_train - 1, steps)) t.push_back(static_cast<long>(np_round(v)));
      std::reverse(t.begin(), t.end());
      break;
    case TimestepSpacing::Leading: {
      const int ratio = n_train / steps;
      for (int i = steps - 1; i >= 0; --i) t.push_back(static_cast<long>(i) * ratio + c.steps_offset);
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(n_train, 0.0, -static_cast<double>(n_train) / steps))
        t.push_back(static_cast<long>(np_round(v)) - 1);
      break;
  }
  return t;
}

}  // namespace

Schedule build_ddim(const ResolvedConfig& c, const BuildOptions& o) {
  const std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  const double final_alpha_cumprod = c.set_alpha_to_one ? 1.0 : alphas_cumprod.front();
  const long step_gap = c.num_train_timesteps / o.steps;

  Schedule out;
  const Combination s = Combination::of(Term::Sample);
  const Combination m = Combination::of(Term::ModelOutput);
  for (long t : ddim_timesteps(c, o.steps)) {
    const long prev_t = t - step_gap;
    const double a_t = alpha_at(alphas_cumprod, t, "ddim");
    const double a_prev = prev_t >= 0 ? alpha_at(alphas_cumprod, prev_t, "ddim") : final_alpha_cumprod;
    const double b_t = 1.0 - a_t;
    const double b_prev = 1.0 - a_prev;

    Combination x0, eps;
    switch (c.prediction_type) {
      case PredictionType::Epsilon:
        x0 = (s - std::sqrt(b_t) * m) / std::sqrt(a_t);
        eps = m;
        break;
      case PredictionType::Sample:
        x0 = m;
        eps = (s - std::sqrt(a_t) * m) / std::sqrt(b_t);
        break;
      case PredictionType::VPrediction:
        x0 = std::sqrt(a_t) * s - std::sqrt(b_t) * m;
        eps = std::sqrt(a_t) * m + std::sqrt(b_t) * s;
        break;
    }
    StepPlan plan;
    if (c.clip_sample) {
      plan.clip = ClipX0{x0, c.clip_sample_range};
      x0 = Combination::of(Term::ClippedX0);
    }
    const double variance = (b_prev / b_t) * (1.0 - a_t / a_prev);
    const double std_dev = o.eta * std::sqrt(variance);
    const double direction = 1.0 - a_prev - std_dev * std_dev;
    if (direction < 0.0)
      throw UsageError(cat("eta ", o.eta, " is too large for ddim at timestep ", t,
                           " (the noise would exceed the step's variance); use eta <= 1"));
    Combination prev = std::sqrt(a_prev) * x0 + std::sqrt(direction) * eps;
    if (o.eta > 0.0) {
      plan.draws_noise = true;
      prev = prev + std_dev * Combination::of(Term::Noise);
    }
    plan.add_write(Term::Sample, prev);
    out.timesteps.push_back(static_cast<double>(t));
    out.model_input_scale.push_back(1.0);
    out.plans.push_back(plan);
  }
  return out;
}

}  // namespace sdgen::schedulers
