// scheduler_config.json, as written. Hub files hold only some keys, and each diffusers scheduler
// class applies its OWN defaults to the absent ones (DDIM and PNDM default timestep_spacing to
// "leading", Euler, LMS and DPM-Solver++ to "linspace", for example). So this struct keeps
// "absent" distinguishable from "present": the schedulers in lib/schedulers resolve the defaults
// of the algorithm actually chosen, which may differ from the file's _class_name.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdgen::weights {

struct SchedulerConfig {
  std::filesystem::path source;  // the file these values came from, for error messages
  std::string class_name;        // "_class_name", e.g. "PNDMScheduler"; may be empty
  std::optional<int> num_train_timesteps;
  std::optional<double> beta_start;
  std::optional<double> beta_end;
  std::optional<std::string> beta_schedule;  // "linear" | "scaled_linear" | "squaredcos_cap_v2"
  std::optional<std::vector<double>> trained_betas;
  std::optional<std::string> prediction_type;   // "epsilon" | "v_prediction" | "sample"
  std::optional<std::string> timestep_spacing;  // "leading" | "trailing" | "linspace"
  std::optional<int> steps_offset;
  std::optional<bool> set_alpha_to_one;
  std::optional<bool> skip_prk_steps;
  std::optional<bool> clip_sample;
  std::optional<double> clip_sample_range;
  std::optional<bool> rescale_betas_zero_snr;
  std::optional<bool> use_karras_sigmas;
  // Sigma spacings sdgen does not implement; kept so that a file asking for one is refused rather
  // than silently run with another spacing.
  std::optional<bool> use_exponential_sigmas;
  std::optional<bool> use_beta_sigmas;
  std::optional<bool> use_lu_lambdas;
  std::optional<bool> use_flow_sigmas;
  std::optional<double> sigma_min;  // Euler: Karras range overrides
  std::optional<double> sigma_max;
  std::optional<std::string> timestep_type;  // Euler: "discrete" | "continuous"
  std::optional<std::string> interpolation_type;
  std::optional<std::string> final_sigmas_type;  // DPM-Solver++: "zero" | "sigma_min"
  std::optional<bool> lower_order_final;
  std::optional<bool> euler_at_final;
  std::optional<double> lambda_min_clipped;  // may be -inf (diffusers writes -Infinity)
  std::optional<std::string> variance_type;  // DPM-Solver: null | "learned" | "learned_range"
  std::optional<int> solver_order;
  std::optional<std::string> algorithm_type;
  std::optional<std::string> solver_type;
  std::optional<bool> thresholding;
};

// Parses the text of a scheduler_config.json; `where` names the file in error messages.
// Unknown keys are ignored (hub files carry many); a known key with the wrong JSON type, or an
// enumerated string sdgen does not know, is a ModelError naming the file and key.
SchedulerConfig parse_scheduler_config(std::string_view json_text, const std::filesystem::path& where);

}  // namespace sdgen::weights
