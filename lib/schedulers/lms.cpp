// LMSDiscreteScheduler (diffusers 0.33.1): the linear multistep method of order 4 on the
// probability-flow ODE in sigma. With derivatives d_k = (x_k - x0_k) / sigma_k, the step is
//   x_{i+1} = x_i + sum_k c_k d_{i-k},   c_k = integral over [sigma_i, sigma_{i+1}] of the Lagrange
// basis polynomial through sigma_i, ..., sigma_{i-order+1} that is 1 at sigma_{i-k},
// with order = min(i + 1, 4). diffusers integrates with scipy.integrate.quad; the integrand is a
// polynomial of degree order - 1 <= 3, which two-point Gauss-Legendre integrates exactly.
// Up to three past derivatives are carried in history slots.
#include <algorithm>
#include <cmath>

#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

namespace {

constexpr int kOrder = 4;  // diffusers' step(order=4) default, which pipelines never change

double lms_coefficient(std::span<const double> sigmas, int order, int i, int k) {
  const auto basis = [&](double tau) {
    double prod = 1.0;
    for (int j = 0; j < order; ++j) {
      if (j == k) continue;
      const double node = sigmas[static_cast<std::size_t>(i - j)];
      prod *= (tau - node) / (sigmas[static_cast<std::size_t>(i - k)] - node);
    }
    return prod;
  };
  const double a = sigmas[static_cast<std::size_t>(i)];
  const double b = sigmas[static_cast<std::size_t>(i + 1)];
  const double mid = 0.5 * (a + b);
  const double half = 0.5 * (b - a);
  const double offset = half / std::sqrt(3.0);
  return half * (basis(mid - offset) + basis(mid + offset));
}

}  // namespace

Schedule build_lms(const ResolvedConfig& c, const BuildOptions& o) {
  const std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  const std::vector<float> train_sigmas = make_train_sigmas(alphas_cumprod);
  const std::vector<float> log_sigmas = float_log(train_sigmas);

  Schedule out;
  std::vector<double> timesteps = sigma_schedule_timesteps(c, o.steps);
  std::vector<double> sigmas;
  for (double t : timesteps) sigmas.push_back(interp(t, train_sigmas));
  if (c.use_karras_sigmas) {
    sigmas = karras_sigmas(sigmas.back(), sigmas.front(), o.steps);
    timesteps.clear();
    for (double s : sigmas) timesteps.push_back(f32(sigma_to_t(s, log_sigmas)));
  }
  sigmas.push_back(0.0);
  for (double& s : sigmas) s = f32(s);
  out.timesteps = std::move(timesteps);
  out.sigmas = std::move(sigmas);
  set_sigma_scalings(out, c);

  const Combination s = Combination::of(Term::Sample);
  HistorySlots slots;
  std::vector<Combination> derivatives;  // oldest first; past ones live in history slots
  for (int i = 0; i + 1 < static_cast<int>(out.sigmas.size()); ++i) {
    const double sigma = out.sigmas[static_cast<std::size_t>(i)];
    derivatives.push_back((s - karras_denoised(c.prediction_type, sigma)) / sigma);
    const int order = std::min(i + 1, kOrder);
    Combination prev = s;
    for (int k = 0; k < order; ++k)
      prev = prev + lms_coefficient(out.sigmas, order, i, k) * derivatives[derivatives.size() - 1 - static_cast<std::size_t>(k)];
    StepPlan plan;
    plan.add_write(Term::Sample, prev);
    const bool last = i + 2 == static_cast<int>(out.sigmas.size());
    if (!last) {
      // The next step reads at most kOrder - 1 of these.
      if (derivatives.size() > kOrder - 1) derivatives.erase(derivatives.begin());
      const std::vector<Term> kept = slots.carry(plan, derivatives);
      for (std::size_t j = 0; j < kept.size(); ++j) derivatives[j] = Combination::of(kept[j]);
    }
    out.plans.push_back(plan);
  }
  out.history_slots = slots.used();
  return out;
}

}  // namespace sdgen::schedulers
