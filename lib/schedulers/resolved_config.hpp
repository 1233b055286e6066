// The scheduler configuration after defaults: every value the chosen algorithm uses.
//
// diffusers builds the scheduler the user picked from the model's scheduler_config.json, whatever
// class the file was written for: keys the class does not know are dropped, and keys the file
// lacks take that class's own __init__ defaults. Those defaults differ between classes (DDIM and
// PNDM space timesteps "leading", the Karras-style schedulers "linspace"; DDIM clips x0 by default,
// PNDM runs Runge-Kutta warm-up steps by default), so the same file gives different settings
// under different schedulers. resolve_config reproduces that, per algorithm, from diffusers
// 0.33.1's signatures. It also refuses, naming the file and key, the options sdgen does not
// implement (dynamic thresholding, exponential/beta/Lu/flow sigmas, log-linear interpolation,
// learned variance), so that nothing runs with a setting other than the one asked for.
#pragma once

#include <limits>
#include <optional>
#include <vector>

#include "weights/scheduler_config.hpp"

namespace sdgen::schedulers {

enum class Algorithm { Ddim, DpmSolverMultistep, EulerDiscrete, EulerAncestralDiscrete, Pndm, LmsDiscrete };

enum class BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2 };
enum class PredictionType { Epsilon, VPrediction, Sample };
enum class TimestepSpacing { Leading, Trailing, Linspace };
enum class TimestepType { Discrete, Continuous };  // Euler: continuous = 0.25 log(sigma) (EDM-style)
enum class FinalSigmasType { Zero, SigmaMin };
enum class SolverType { Midpoint, Heun };  // DPM-Solver++ second-order update

struct ResolvedConfig {
  // Noise schedule (all classes).
  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  std::vector<double> trained_betas;  // when non-empty, replaces beta_schedule
  bool rescale_betas_zero_snr = false;
  PredictionType prediction_type = PredictionType::Epsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::Linspace;
  int steps_offset = 0;
  // DDIM and PNDM.
  bool set_alpha_to_one = false;
  bool clip_sample = false;  // DDIM
  double clip_sample_range = 1.0;
  bool skip_prk_steps = false;  // PNDM
  // Karras-style schedulers (Euler, LMS, DPM-Solver++).
  bool use_karras_sigmas = false;
  FinalSigmasType final_sigmas_type = FinalSigmasType::Zero;
  TimestepType timestep_type = TimestepType::Discrete;
  std::optional<double> sigma_min;  // Euler's Karras range, when the file sets it
  std::optional<double> sigma_max;
  // DPM-Solver++.
  SolverType solver_type = SolverType::Midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
};

// The options a user gives on the command line, which take precedence over the file.
struct ConfigOverrides {
  std::optional<bool> use_karras_sigmas;
  std::optional<PredictionType> prediction_type;
};

// Applies `algorithm`'s defaults to the keys `file` lacks. Throws ModelError naming
// file.source and the key for a value sdgen does not implement. A Karras override is only read
// for the classes that have Karras sigmas (the Scheduler refuses it for the others).
ResolvedConfig resolve_config(Algorithm algorithm, const weights::SchedulerConfig& file,
                              const ConfigOverrides& overrides);

}  // namespace sdgen::schedulers
