// EulerDiscreteScheduler (diffusers 0.33.1): Karras et al. (2022) algorithm 2 without churn.
//
// sigmas are interpolated from the training sigmas at the spaced timesteps (or respaced with the
// Karras ramp, their timesteps then found back by log-sigma interpolation), a final 0 (or the
// smallest training sigma) is appended, and each step is one explicit Euler step of the
// probability-flow ODE dx/dsigma = (x - x0) / sigma from sigma_i to sigma_{i+1}. diffusers'
// s_churn defaults to 0, so gamma = 0, sigma_hat = sigma and no noise is drawn.
#include <cmath>

#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

Schedule build_euler(const ResolvedConfig& c, const BuildOptions& o) {
  std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  patch_zero_snr_tail(alphas_cumprod, c);
  const std::vector<float> train_sigmas = make_train_sigmas(alphas_cumprod);
  const std::vector<float> log_sigmas = float_log(train_sigmas);

  Schedule out;
  std::vector<double> timesteps = sigma_schedule_timesteps(c, o.steps);
  std::vector<double> sigmas;
  for (double t : timesteps) sigmas.push_back(interp(t, train_sigmas));
  if (c.use_karras_sigmas) {
    sigmas = karras_sigmas(c.sigma_min.value_or(sigmas.back()), c.sigma_max.value_or(sigmas.front()), o.steps);
    timesteps.clear();
    for (double s : sigmas) timesteps.push_back(f32(sigma_to_t(s, log_sigmas)));
  }
  sigmas.push_back(c.final_sigmas_type == FinalSigmasType::SigmaMin ? train_sigmas.front() : 0.0);
  for (double& s : sigmas) s = f32(s);

  // EDM-style models take 0.25 log(sigma) as their time input.
  if (c.timestep_type == TimestepType::Continuous && c.prediction_type == PredictionType::VPrediction) {
    timesteps.clear();
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i)
      timesteps.push_back(f32(0.25f * std::log(static_cast<float>(sigmas[i]))));
  }
  out.timesteps = std::move(timesteps);
  out.sigmas = std::move(sigmas);
  set_sigma_scalings(out, c);

  const Combination s = Combination::of(Term::Sample);
  for (std::size_t i = 0; i + 1 < out.sigmas.size(); ++i) {
    const double sigma = out.sigmas[i];
    const Combination derivative = (s - karras_denoised(c.prediction_type, sigma)) / sigma;
    StepPlan plan;
    plan.add_write(Term::Sample, s + derivative * (out.sigmas[i + 1] - sigma));
    out.plans.push_back(plan);
  }
  return out;
}

}  // namespace sdgen::schedulers
