// The six diffusers samplers, as host-computed schedules of fused elementwise steps.
//
// A Scheduler is built once per generation from the algorithm the user chose, the model's
// scheduler_config.json and the user's options. Construction runs diffusers' set_timesteps and
// replays its step() logic for every UNet call (in double precision, from the float32 training
// schedule diffusers itself uses), so afterwards everything is a lookup:
//
//   latents = noise * init_noise_sigma()                  (noise: TorchCpuGenerator::randn)
//   for call in 0 .. num_calls()-1:
//     unet_in = latents * model_input_scale(call), for both CFG halves
//     out     = UNet(unet_in, timesteps()[call]);  guided = u + g (c - u)
//     if needs_noise(call): noise = randn(latent size) from the same generator
//     apply plan(call) to {latents, guided, noise, history buffers}
//
// Draw order (what makes a seed reproduce diffusers): the initial latents first, then one
// latent-sized draw for every call whose plan needs noise, in call order. Euler ancestral draws at
// every call, the last included (its last draw is multiplied by zero but still advances the
// generator); DDIM draws at every call when eta > 0; the others never draw. Draws are in NCHW
// order, the whole batch at once, as torch.randn(latents.shape) does.
//
// The plans (step_plan.hpp) are what the CUDA backend uploads: one elementwise kernel per call.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/resolved_config.hpp"
#include "lib/schedulers/step_plan.hpp"
#include "weights/scheduler_config.hpp"

namespace sdgen::schedulers {

// ---- registry: the command-line names

struct AlgorithmInfo {
  std::string_view name;  // --scheduler value
  Algorithm algorithm;
  std::string_view diffusers_class;
  std::string_view summary;  // one line for --help
};

// In --help order.
std::span<const AlgorithmInfo> algorithm_infos();
const AlgorithmInfo& algorithm_info(Algorithm algorithm);
// Throws UsageError listing the valid names.
Algorithm algorithm_from_name(std::string_view name);
// "ddim, dpm++2m, euler, euler_a, pndm, lms"
std::string algorithm_name_list();

// ---- the scheduler

struct SchedulerOptions {
  int steps = 50;     // num_inference_steps; PNDM makes one UNet call more (or nine more with
                      // its Runge-Kutta warm-up)
  double eta = 0.0;   // DDIM's noise weight (0: deterministic DDIM, 1: DDPM-like); DDIM only
  std::optional<bool> use_karras_sigmas;         // overrides the config's (euler, lms, dpm++2m)
  std::optional<PredictionType> prediction_type;  // overrides the config's
};

class Scheduler {
 public:
  // Throws UsageError for bad options (steps < 1 or above num_train_timesteps, eta outside DDIM)
  // and ModelError, naming the file and key, for a config sdgen cannot run.
  Scheduler(Algorithm algorithm, const weights::SchedulerConfig& config, const SchedulerOptions& options);

  Algorithm algorithm() const { return algorithm_; }
  const ResolvedConfig& config() const { return config_; }

  int num_calls() const { return static_cast<int>(schedule_.plans.size()); }
  // The timestep passed to the UNet at each call (integers for DDIM, PNDM and DPM-Solver++).
  std::span<const double> timesteps() const { return schedule_.timesteps; }
  // Euler, Euler ancestral, LMS and DPM-Solver++: sigma at each call plus the final one (as
  // diffusers' scheduler.sigmas); empty for DDIM and PNDM.
  std::span<const double> sigmas() const { return schedule_.sigmas; }
  double init_noise_sigma() const { return schedule_.init_noise_sigma; }
  double model_input_scale(int call) const { return schedule_.model_input_scale.at(static_cast<std::size_t>(call)); }
  bool needs_noise(int call) const { return plan(call).needs_noise(); }
  const StepPlan& plan(int call) const { return schedule_.plans.at(static_cast<std::size_t>(call)); }
  // History buffers (latent-sized, zero-initialised or not: a slot is always written before it
  // is read) the caller must provide: slots 0 .. history_slots()-1.
  int history_slots() const { return schedule_.history_slots; }

 private:
  Algorithm algorithm_;
  ResolvedConfig config_;
  Schedule schedule_;
};

}  // namespace sdgen::schedulers
