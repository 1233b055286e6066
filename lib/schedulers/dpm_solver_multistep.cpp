// DPMSolverMultistepScheduler (diffusers 0.33.1) as "dpm++2m": algorithm_type dpmsolver++,
// solver_order 2 (Lu et al. 2022, "DPM-Solver++", multistep second order).
//
// In VP terms alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t, lambda = log(alpha_t /
// sigma_t) = -log(sigma). Each call converts the model output to a data prediction x0 and updates
//   first order:  x = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) x0,           h = lambda_t - lambda_s
//   second order: D0 = x0, D1 = (x0 - x0_prev) / r0, r0 = h_prev / h, and
//     midpoint:   x = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) (D0 + D1 / 2)
//     heun:       x = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1) / h + 1) D1
// The first call is first order (no previous x0), and so is the last one when lower_order_final
// applies with fewer than 15 steps, euler_at_final is set, or the final sigma is zero (where
// lambda_t = +inf, e^-h = 0 and the update is x = x0). The previous x0 is carried in a history slot.
#include <algorithm>
#include <cmath>

#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

namespace {

struct VpCoefficients {
  double alpha;   // alpha_t
  double sigma;   // sigma_t
  double lambda;  // log(alpha_t) - log(sigma_t); +inf at sigma = 0
};

VpCoefficients vp(double sigma) {
  const double alpha = 1.0 / std::sqrt(sigma * sigma + 1.0);
  const double sigma_t = sigma * alpha;
  return {alpha, sigma_t, std::log(alpha) - std::log(sigma_t)};
}

std::vector<long> dpm_timesteps(const ResolvedConfig& c, int steps, long last_timestep) {
  std::vector<long> t;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      // steps + 1 points down from last_timestep - 1, dropping the final 0.
      std::vector<double> points = np_linspace(0.0, static_cast<double>(last_timestep - 1), steps + 1);
      for (int i = steps; i >= 1; --i) t.push_back(static_cast<long>(np_round(points[static_cast<std::size_t>(i)])));
      break;
    }
    case TimestepSpacing::Leading: {
      const long ratio = last_timestep / (steps + 1);
      for (int i = steps; i >= 1; --i) t.push_back(static_cast<long>(i) * ratio + c.steps_offset);
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(static_cast<double>(last_timestep), 0.0, -static_cast<double>(c.num_train_timesteps) / steps))
        t.push_back(static_cast<long>(np_round(v)) - 1);
      break;
  }
  return t;
}

// diffusers clips the timesteps whose log-SNR lambda falls below lambda_min_clipped (for the
// cosine schedule): the count of such timesteps, counted from the noisy end.
long clipped_timesteps(std::span<const float> alphas_cumprod, double lambda_min_clipped) {
  long count = 0;
  for (float a : alphas_cumprod) {
    const float lambda = std::log(std::sqrt(a)) - std::log(std::sqrt(1.0f - a));
    if (static_cast<double>(lambda) < lambda_min_clipped) ++count;
  }
  return count;
}

}  // namespace

Schedule build_dpm_solver_multistep(const ResolvedConfig& c, const BuildOptions& o) {
  std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  patch_zero_snr_tail(alphas_cumprod, c);
  const std::vector<float> train_sigmas = make_train_sigmas(alphas_cumprod);
  const std::vector<float> log_sigmas = float_log(train_sigmas);
  const long last_timestep = c.num_train_timesteps - clipped_timesteps(alphas_cumprod, c.lambda_min_clipped);

  Schedule out;
  std::vector<double> sigmas;
  if (c.use_karras_sigmas) {
    sigmas = karras_sigmas(train_sigmas.front(), train_sigmas.back(), o.steps);
    for (double s : sigmas) {
      const double t = sigma_to_t(s, log_sigmas);
      // diffusers rounds these to the nearest timestep, except for the cosine schedule, whose
      // fractional timesteps it truncates when converting to integers.
      out.timesteps.push_back(std::trunc(c.beta_schedule == BetaSchedule::SquaredCosCapV2 ? t : np_round(t)));
    }
  } else {
    for (long t : dpm_timesteps(c, o.steps, last_timestep)) {
      out.timesteps.push_back(static_cast<double>(t));
      sigmas.push_back(interp(static_cast<double>(t), train_sigmas));
    }
  }
  sigmas.push_back(c.final_sigmas_type == FinalSigmasType::SigmaMin ? train_sigmas.front() : 0.0);
  for (double& s : sigmas) s = f32(s);
  out.sigmas = std::move(sigmas);
  out.model_input_scale.assign(out.timesteps.size(), 1.0);

  const int calls = static_cast<int>(out.timesteps.size());
  const Combination s = Combination::of(Term::Sample);
  const Combination m = Combination::of(Term::ModelOutput);
  HistorySlots slots;
  Combination previous_x0;
  int lower_order_nums = 0;
  for (int i = 0; i < calls; ++i) {
    const VpCoefficients now = vp(out.sigmas[static_cast<std::size_t>(i)]);
    const VpCoefficients next = vp(out.sigmas[static_cast<std::size_t>(i + 1)]);
    Combination x0;
    switch (c.prediction_type) {
      case PredictionType::Epsilon: x0 = (s - now.sigma * m) / now.alpha; break;
      case PredictionType::Sample: x0 = m; break;
      case PredictionType::VPrediction: x0 = now.alpha * s - now.sigma * m; break;
    }
    const bool last = i == calls - 1;
    const bool lower_order_final =
        last && (c.euler_at_final || (c.lower_order_final && calls < 15) || c.final_sigmas_type == FinalSigmasType::Zero);

    const double h = next.lambda - now.lambda;
    const double exp_neg_h_minus_1 = std::exp(-h) - 1.0;
    Combination prev = (next.sigma / now.sigma) * s - (next.alpha * exp_neg_h_minus_1) * x0;
    if (lower_order_nums >= 1 && !lower_order_final) {
      const VpCoefficients before = vp(out.sigmas[static_cast<std::size_t>(i - 1)]);
      const double r0 = (now.lambda - before.lambda) / h;
      const Combination d1 = (x0 - previous_x0) / r0;
      if (c.solver_type == SolverType::Midpoint)
        prev = prev - 0.5 * (next.alpha * exp_neg_h_minus_1) * d1;
      else
        prev = prev + (next.alpha * (exp_neg_h_minus_1 / h + 1.0)) * d1;
    }
    lower_order_nums = std::min(lower_order_nums + 1, 2);

    StepPlan plan;
    plan.add_write(Term::Sample, prev);
    if (!last) previous_x0 = Combination::of(slots.carry(plan, std::span(&x0, 1)).front());
    out.plans.push_back(plan);
  }
  out.history_slots = slots.used();
  return out;
}

}  // namespace sdgen::schedulers
