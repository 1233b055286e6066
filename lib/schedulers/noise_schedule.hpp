// The training noise schedule and the numpy/torch helpers the six schedulers share.
//
// diffusers computes betas, alphas and alphas_cumprod as float32 torch tensors (torch.linspace in
// float32, 1 - betas in float32, cumprod accumulated in double and stored as float32), and the
// Karras-style sigmas sqrt((1 - a) / a) with float32 ops too. Those float32 values are the
// schedule every later step reads, so they are reproduced here operation by operation (this file
// is compiled with -ffp-contract=off so that no multiply-add is fused); everything computed from
// them afterwards (interpolation, Karras ramps, step coefficients) is done in double, where
// diffusers mixes float64 numpy and float32 torch. Sigmas and alphas therefore come out equal to
// diffusers' (tests check them against the golden runs), and step coefficients agree to about the
// float32 rounding of diffusers' own arithmetic.
//
// The numpy helpers follow numpy's formulas (linspace, arange with a float step, round half to
// even, interp), because timesteps are rounded from them and a last-bit difference can move a
// timestep by one.
#pragma once

#include <span>
#include <vector>

#include "lib/schedulers/resolved_config.hpp"

namespace sdgen::schedulers {

// diffusers' alphas_cumprod (float32), after rescale_betas_zero_snr when the config asks for it.
std::vector<float> make_alphas_cumprod(const ResolvedConfig& config);

// Euler, Euler ancestral and DPM-Solver++ replace the zero that rescale_betas_zero_snr leaves at
// the end of alphas_cumprod by 2^-24 (the smallest fp16 subnormal), so that the first sigma is
// finite. DDIM keeps the zero.
void patch_zero_snr_tail(std::vector<float>& alphas_cumprod, const ResolvedConfig& config);

// sqrt((1 - a) / a) per training timestep, in float32 as torch computes it.
std::vector<float> make_train_sigmas(std::span<const float> alphas_cumprod);

// np.log of a float32 array: float32 results.
std::vector<float> float_log(std::span<const float> values);

// np.interp(x, arange(len(values)), values).
double interp(double x, std::span<const float> values);

// np.linspace(start, stop, num) in float64.
std::vector<double> np_linspace(double start, double stop, int num);
// np.arange(start, stop, step) in float64, for the negative steps of "trailing" spacing.
std::vector<double> np_arange(double start, double stop, double step);
// np.round: halves go to the even neighbour.
double np_round(double x);

// The Karras et al. (2022) ramp: (max^(1/7) + i/(n-1) (min^(1/7) - max^(1/7)))^7, i = 0..n-1.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n);

// diffusers' _sigma_to_t: the fractional training timestep whose log-sigma matches, by linear
// interpolation in log-sigma between neighbouring training timesteps (log_sigmas ascending).
double sigma_to_t(double sigma, std::span<const float> log_sigmas);

}  // namespace sdgen::schedulers
