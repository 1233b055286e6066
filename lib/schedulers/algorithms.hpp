// Internal to lib/schedulers: what each algorithm's builder produces, and the helper that places
// carried state in history slots.
//
// A builder replays diffusers' set_timesteps and then its step() state machine once per UNet call,
// symbolically: tensors are Combinations of the step's inputs, so the replay yields each call's
// StepPlan instead of numbers. State that diffusers keeps between steps (PNDM's ets, LMS's
// derivatives, DPM-Solver's model_outputs) becomes history slots.
#pragma once

#include <span>
#include <vector>

#include "lib/schedulers/resolved_config.hpp"
#include "lib/schedulers/step_plan.hpp"

namespace sdgen::schedulers {

struct Schedule {
  std::vector<double> timesteps;          // per UNet call, as the UNet receives them
  std::vector<double> sigmas;             // Karras-style schedulers: one per call plus the final one
  double init_noise_sigma = 1.0;          // initial latents = noise * init_noise_sigma
  std::vector<double> model_input_scale;  // per call: scale_model_input is x * scale
  std::vector<StepPlan> plans;            // per call
  int history_slots = 0;                  // slots any plan reads or writes
};

struct BuildOptions {
  int steps = 0;
  double eta = 0.0;  // DDIM only
};

Schedule build_ddim(const ResolvedConfig& config, const BuildOptions& options);
Schedule build_dpm_solver_multistep(const ResolvedConfig& config, const BuildOptions& options);
Schedule build_euler(const ResolvedConfig& config, const BuildOptions& options);
Schedule build_euler_ancestral(const ResolvedConfig& config, const BuildOptions& options);
Schedule build_pndm(const ResolvedConfig& config, const BuildOptions& options);
Schedule build_lms(const ResolvedConfig& config, const BuildOptions& options);

// Assigns history slots to the state that survives a call. `state` lists the values the
// scheduler keeps after the call, in its own order: each is either a value already in a slot
// (a plain copy of a History term, which stays where it is) or a new combination of this call's
// inputs, which goes to a slot no surviving value occupies and is written by `plan`. Because a
// step reads all inputs before writing, a slot read by this call and dropped after it is free.
// Returns the slot of each value, in order.
class HistorySlots {
 public:
  std::vector<Term> carry(StepPlan& plan, std::span<const Combination> state);
  int used() const { return used_; }

 private:
  int used_ = 0;
};

// ---- shared by Euler, Euler ancestral and LMS (diffusers' "Karras-style" discrete schedulers,
// whose sample lives at scale sqrt(sigma^2 + 1))

// Their float32 timesteps for the configured spacing (before any Karras respacing).
std::vector<double> sigma_schedule_timesteps(const ResolvedConfig& config, int steps);

// x0 = f(sample, model_output) at noise level sigma, in their "c_skip/c_out" form.
Combination karras_denoised(PredictionType prediction, double sigma);

// init_noise_sigma (max sigma for "linspace"/"trailing" spacing, sqrt(max^2 + 1) otherwise, in
// float32 as diffusers computes it) and scale_model_input's 1 / sqrt(sigma^2 + 1), from
// schedule.sigmas.
void set_sigma_scalings(Schedule& schedule, const ResolvedConfig& config);

// The float32 value diffusers holds, as a double.
inline double f32(double v) { return static_cast<double>(static_cast<float>(v)); }

// alphas_cumprod[t], refusing a timestep outside the training range (diffusers would raise an
// IndexError; sdgen says which setting caused it).
double alpha_at(std::span<const float> alphas_cumprod, long t, const char* scheduler);

}  // namespace sdgen::schedulers
