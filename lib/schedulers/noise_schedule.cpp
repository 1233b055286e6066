// Float32-exact training schedule and numpy-exact helpers (see noise_schedule.hpp).
// Compiled with -ffp-contract=off: a fused multiply-add would change the float32 values.
#include "lib/schedulers/noise_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace sdgen::schedulers {

namespace {

// torch.linspace(start, end, steps, dtype=float32) on the CPU, as torch 1.13 computes it: start and
// end are rounded to float32, the step is computed in the accumulation type (double), the first
// half is start + step*i and the second half end - step*(steps-1-i), each rounded to float32, so
// both ends are exact. Contiguous output goes through torch's vectorised loop, which takes pairs
// of 8-float vectors: per vector it rounds the first lane as above and fills lane k with
// base + k*step (in double, then rounded); the last (steps mod 16) values take the scalar formula.
// Only this exact sequence reproduces the golden runs' sigmas bit for bit: a pure float32 or a
// pure scalar linspace moves the sigmas near t = 999 by 1-3 ulp.
std::vector<float> torch_linspace_f32(double start_value, double end_value, std::int64_t steps) {
  std::vector<float> out(static_cast<std::size_t>(steps));
  const float start = static_cast<float>(start_value);
  const float end = static_cast<float>(end_value);
  const double step = (static_cast<double>(end) - static_cast<double>(start)) / static_cast<double>(steps - 1);
  const std::int64_t halfway = steps / 2;
  const auto scalar = [&](std::int64_t i) {
    return static_cast<float>(i < halfway ? start + step * static_cast<double>(i)
                                          : end - step * static_cast<double>(steps - i - 1));
  };
  constexpr std::int64_t kLanes = 8;  // Vectorized<float>::size() for AVX2 and the generic build
  std::int64_t i = 0;
  for (; i + 2 * kLanes <= steps; i += 2 * kLanes) {
    for (std::int64_t v = i; v < i + 2 * kLanes; v += kLanes) {
      const float base = scalar(v);
      for (std::int64_t k = 0; k < kLanes; ++k)
        out[static_cast<std::size_t>(v + k)] = static_cast<float>(static_cast<double>(base) + static_cast<double>(k) * step);
    }
  }
  for (; i < steps; ++i) out[static_cast<std::size_t>(i)] = scalar(i);
  return out;
}

// diffusers' betas_for_alpha_bar (the "cosine" transform), in float64 then stored as float32.
std::vector<float> squaredcos_cap_v2_betas(int n) {
  const auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  std::vector<float> betas(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    // Real division: candle's integer i / n made this schedule all zeros but the last entry.
    const double t1 = static_cast<double>(i) / n;
    const double t2 = static_cast<double>(i + 1) / n;
    betas[static_cast<std::size_t>(i)] = static_cast<float>(std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

// torch.cumprod(1.0 - betas) on the CPU: float32 factors, a double accumulator, float32 results.
std::vector<float> cumprod_of_alphas(const std::vector<float>& betas) {
  std::vector<float> out(betas.size());
  double acc = 1.0;
  for (std::size_t i = 0; i < betas.size(); ++i) {
    acc *= static_cast<double>(1.0f - betas[i]);
    out[i] = static_cast<float>(acc);
  }
  return out;
}

// diffusers' rescale_zero_terminal_snr (Lin et al. 2023, algorithm 1), in float32 torch ops:
// shift sqrt(alphas_cumprod) so the last is 0, scale so the first keeps its value, convert back.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> sqrt_ac = cumprod_of_alphas(betas);
  for (float& v : sqrt_ac) v = std::sqrt(v);
  const float first = sqrt_ac.front();
  const float last = sqrt_ac.back();
  const float scale = first / (first - last);
  std::vector<float> ac(sqrt_ac.size());
  for (std::size_t i = 0; i < ac.size(); ++i) {
    const float shifted = (sqrt_ac[i] - last) * scale;
    ac[i] = shifted * shifted;
  }
  std::vector<float> out(betas.size());
  out[0] = 1.0f - ac[0];
  for (std::size_t i = 1; i < ac.size(); ++i) out[i] = 1.0f - ac[i] / ac[i - 1];
  return out;
}

}  // namespace

std::vector<float> make_alphas_cumprod(const ResolvedConfig& c) {
  std::vector<float> betas;
  if (!c.trained_betas.empty()) {
    for (double b : c.trained_betas) betas.push_back(static_cast<float>(b));
  } else {
    switch (c.beta_schedule) {
      case BetaSchedule::Linear: betas = torch_linspace_f32(c.beta_start, c.beta_end, c.num_train_timesteps); break;
      case BetaSchedule::ScaledLinear:
        betas = torch_linspace_f32(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps);
        for (float& b : betas) b = b * b;
        break;
      case BetaSchedule::SquaredCosCapV2: betas = squaredcos_cap_v2_betas(c.num_train_timesteps); break;
    }
  }
  if (c.rescale_betas_zero_snr) betas = rescale_zero_terminal_snr(betas);
  return cumprod_of_alphas(betas);
}

void patch_zero_snr_tail(std::vector<float>& alphas_cumprod, const ResolvedConfig& c) {
  if (c.rescale_betas_zero_snr) alphas_cumprod.back() = 0x1p-24f;
}

std::vector<float> make_train_sigmas(std::span<const float> alphas_cumprod) {
  std::vector<float> out;
  out.reserve(alphas_cumprod.size());
  for (float a : alphas_cumprod) out.push_back(std::sqrt((1.0f - a) / a));
  return out;
}

std::vector<float> float_log(std::span<const float> values) {
  std::vector<float> out;
  out.reserve(values.size());
  for (float v : values) out.push_back(static_cast<float>(std::log(static_cast<double>(v))));
  return out;
}

double interp(double x, std::span<const float> values) {
  const auto n = static_cast<double>(values.size());
  if (!(x > 0.0)) return values.front();
  if (x >= n - 1.0) return values.back();
  const auto j = static_cast<std::size_t>(std::floor(x));
  const double lo = values[j];
  const double hi = values[j + 1];
  const double slope = hi - lo;  // the x spacing is 1
  return slope * (x - static_cast<double>(j)) + lo;
}

std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> out(static_cast<std::size_t>(num));
  if (num == 1) {
    out[0] = start;
    return out;
  }
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) out[static_cast<std::size_t>(i)] = static_cast<double>(i) * step + start;
  out.back() = stop;
  return out;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double count = std::ceil((stop - start) / step);
  std::vector<double> out;
  if (!(count > 0)) return out;
  out.resize(static_cast<std::size_t>(count));
  // numpy stores start and start + step, then fills the rest from their difference.
  const double delta = (start + step) - start;
  out[0] = start;
  for (std::size_t i = 1; i < out.size(); ++i) out[i] = start + static_cast<double>(i) * delta;
  return out;
}

double np_round(double x) { return std::nearbyint(x); }

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  constexpr double rho = 7.0;  // the paper's value, as diffusers uses it
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas;
  for (double ramp : np_linspace(0.0, 1.0, n)) sigmas.push_back(std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho));
  return sigmas;
}

double sigma_to_t(double sigma, std::span<const float> log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // The last training timestep whose log-sigma does not exceed ours (0 when none does), kept
  // below the end so that it has an upper neighbour.
  std::size_t low = 0;
  for (std::size_t j = 0; j < log_sigmas.size(); ++j)
    if (log_sigma - static_cast<double>(log_sigmas[j]) >= 0) low = j;
  low = std::min(low, log_sigmas.size() - 2);
  const double lo = log_sigmas[low];
  const double hi = log_sigmas[low + 1];
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

}  // namespace sdgen::schedulers
