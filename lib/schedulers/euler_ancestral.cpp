// EulerAncestralDiscreteScheduler (diffusers 0.33.1): Euler steps to sigma_down plus fresh noise
// of standard deviation sigma_up, where sigma_down^2 + sigma_up^2 = sigma_next^2 and
// sigma_up = sigma_next sqrt(1 - sigma_next^2 / sigma^2) (k-diffusion's get_ancestral_step, eta 1).
// Noise is drawn at every step, the last included (where sigma_up = 0).
#include <algorithm>
#include <cmath>

#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

Schedule build_euler_ancestral(const ResolvedConfig& c, const BuildOptions& o) {
  std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  patch_zero_snr_tail(alphas_cumprod, c);
  const std::vector<float> train_sigmas = make_train_sigmas(alphas_cumprod);

  Schedule out;
  out.timesteps = sigma_schedule_timesteps(c, o.steps);
  for (double t : out.timesteps) out.sigmas.push_back(f32(interp(t, train_sigmas)));
  out.sigmas.push_back(0.0);
  set_sigma_scalings(out, c);

  const Combination s = Combination::of(Term::Sample);
  const Combination noise = Combination::of(Term::Noise);
  for (std::size_t i = 0; i + 1 < out.sigmas.size(); ++i) {
    const double sigma = out.sigmas[i];
    const double next = out.sigmas[i + 1];
    const double sigma_up = std::sqrt(next * next * (sigma * sigma - next * next) / (sigma * sigma));
    // Mathematically next^2 / sigma; the max() only guards the square root against rounding.
    const double sigma_down = std::sqrt(std::max(0.0, next * next - sigma_up * sigma_up));
    const Combination derivative = (s - karras_denoised(c.prediction_type, sigma)) / sigma;
    StepPlan plan;
    plan.draws_noise = true;
    plan.add_write(Term::Sample, s + derivative * (sigma_down - sigma) + noise * sigma_up);
    out.plans.push_back(plan);
  }
  return out;
}

}  // namespace sdgen::schedulers
