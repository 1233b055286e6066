// Registry of command-line names and the Scheduler front door: validate options, resolve the
// config for the chosen algorithm, run its builder.
#include "lib/schedulers/scheduler.hpp"

#include <array>
#include <cmath>

#include "lib/core/error.hpp"

namespace sdgen::schedulers {

namespace {

constexpr std::array<AlgorithmInfo, 6> kAlgorithms = {{
    {"ddim", Algorithm::Ddim, "DDIMScheduler", "DDIM (deterministic; --eta adds DDPM-like noise)"},
    {"dpm++2m", Algorithm::DpmSolverMultistep, "DPMSolverMultistepScheduler",
     "DPM-Solver++ 2M, second-order multistep (good at 20-25 steps)"},
    {"euler", Algorithm::EulerDiscrete, "EulerDiscreteScheduler", "Euler (Karras et al. algorithm 2)"},
    {"euler_a", Algorithm::EulerAncestralDiscrete, "EulerAncestralDiscreteScheduler",
     "Euler ancestral (adds noise every step)"},
    {"pndm", Algorithm::Pndm, "PNDMScheduler", "PNDM / PLMS (the SD 1.x default; one extra UNet call)"},
    {"lms", Algorithm::LmsDiscrete, "LMSDiscreteScheduler", "linear multistep, order 4"},
}};

}  // namespace

std::span<const AlgorithmInfo> algorithm_infos() { return kAlgorithms; }

const AlgorithmInfo& algorithm_info(Algorithm algorithm) {
  for (const AlgorithmInfo& info : kAlgorithms)
    if (info.algorithm == algorithm) return info;
  throw std::logic_error("unregistered scheduler algorithm");
}

std::string algorithm_name_list() {
  std::string list;
  for (const AlgorithmInfo& info : kAlgorithms) list += cat(list.empty() ? "" : ", ", info.name);
  return list;
}

Algorithm algorithm_from_name(std::string_view name) {
  for (const AlgorithmInfo& info : kAlgorithms)
    if (info.name == name) return info.algorithm;
  throw UsageError(cat("unknown scheduler '", name, "'; choose one of: ", algorithm_name_list()));
}

Scheduler::Scheduler(Algorithm algorithm, const weights::SchedulerConfig& config, const SchedulerOptions& options)
    : algorithm_(algorithm) {
  const AlgorithmInfo& info = algorithm_info(algorithm);
  if (options.steps < 1) throw UsageError(cat("the number of steps must be at least 1, got ", options.steps));
  if (!std::isfinite(options.eta) || options.eta < 0.0)
    throw UsageError(cat("eta must be a non-negative number, got ", options.eta));
  if (options.eta != 0.0 && algorithm != Algorithm::Ddim)
    throw UsageError(cat("eta applies only to the ddim scheduler, not to ", info.name));
  if (options.use_karras_sigmas.value_or(false) && algorithm != Algorithm::EulerDiscrete &&
      algorithm != Algorithm::LmsDiscrete && algorithm != Algorithm::DpmSolverMultistep)
    throw UsageError(cat("Karras sigmas apply to the euler, lms and dpm++2m schedulers, not to ", info.name));

  config_ = resolve_config(algorithm, config, {options.use_karras_sigmas, options.prediction_type});
  if (options.steps > config_.num_train_timesteps)
    throw UsageError(cat("the number of steps (", options.steps, ") cannot exceed the model's ",
                         config_.num_train_timesteps, " training timesteps"));

  const BuildOptions build{options.steps, options.eta};
  switch (algorithm) {
    case Algorithm::Ddim: schedule_ = build_ddim(config_, build); break;
    case Algorithm::DpmSolverMultistep: schedule_ = build_dpm_solver_multistep(config_, build); break;
    case Algorithm::EulerDiscrete: schedule_ = build_euler(config_, build); break;
    case Algorithm::EulerAncestralDiscrete: schedule_ = build_euler_ancestral(config_, build); break;
    case Algorithm::Pndm: schedule_ = build_pndm(config_, build); break;
    case Algorithm::LmsDiscrete: schedule_ = build_lms(config_, build); break;
  }
}

}  // namespace sdgen::schedulers
