// Helpers shared by the builders (see algorithms.hpp).
#include "lib/schedulers/algorithms.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

#include "lib/core/error.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

std::vector<Term> HistorySlots::carry(StepPlan& plan, std::span<const Combination> state) {
  std::array<bool, kHistorySlots> taken{};
  std::vector<Term> slots(state.size(), Term::Sample);
  std::vector<bool> placed(state.size(), false);
  const auto slot_number = [](Term t) { return static_cast<int>(t) - static_cast<int>(Term::History0); };
  for (std::size_t i = 0; i < state.size(); ++i) {
    if (const auto slot = state[i].as_history_slot()) {
      taken[static_cast<std::size_t>(slot_number(*slot))] = true;
      slots[i] = *slot;
      placed[i] = true;
    }
  }
  for (std::size_t i = 0; i < state.size(); ++i) {
    if (placed[i]) continue;
    const auto free = std::find(taken.begin(), taken.end(), false);
    // The builders keep at most kHistorySlots values: running out is a bug in one of them.
    if (free == taken.end()) throw std::logic_error("scheduler state needs more than kHistorySlots buffers");
    *free = true;
    slots[i] = history_slot(static_cast<int>(free - taken.begin()));
    plan.add_write(slots[i], state[i]);
  }
  for (Term t : slots) used_ = std::max(used_, slot_number(t) + 1);
  return slots;
}

std::vector<double> sigma_schedule_timesteps(const ResolvedConfig& c, int steps) {
  const int n_train = c.num_train_timesteps;
  std::vector<double> t;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace:
      t = np_linspace(0.0, n_train - 1, steps);
      std::reverse(t.begin(), t.end());
      for (double& v : t) v = f32(v);
      break;
    case TimestepSpacing::Leading: {
      const int ratio = n_train / steps;
      for (int i = steps - 1; i >= 0; --i) t.push_back(static_cast<double>(i * ratio));
      // float32 array += steps_offset
      for (double& v : t) v = f32(static_cast<float>(v) + static_cast<float>(c.steps_offset));
      break;
    }
    case TimestepSpacing::Trailing:
      for (double v : np_arange(n_train, 0.0, -static_cast<double>(n_train) / steps))
        t.push_back(f32(static_cast<float>(np_round(v)) - 1.0f));
      break;
  }
  return t;
}

Combination karras_denoised(PredictionType prediction, double sigma) {
  const Combination s = Combination::of(Term::Sample);
  const Combination m = Combination::of(Term::ModelOutput);
  switch (prediction) {
    case PredictionType::Epsilon: return s - sigma * m;
    case PredictionType::VPrediction: return m * (-sigma / std::sqrt(sigma * sigma + 1)) + s / (sigma * sigma + 1);
    case PredictionType::Sample: return m;
  }
  throw std::logic_error("unknown prediction type");
}

void set_sigma_scalings(Schedule& schedule, const ResolvedConfig& c) {
  const float max_sigma = static_cast<float>(*std::max_element(schedule.sigmas.begin(), schedule.sigmas.end()));
  const bool leading = c.timestep_spacing == TimestepSpacing::Leading;
  schedule.init_noise_sigma = leading ? static_cast<double>(std::sqrt(max_sigma * max_sigma + 1.0f)) : max_sigma;
  schedule.model_input_scale.clear();
  for (std::size_t i = 0; i + 1 < schedule.sigmas.size(); ++i) {
    const double sigma = schedule.sigmas[i];
    schedule.model_input_scale.push_back(1.0 / std::sqrt(sigma * sigma + 1.0));
  }
}

double alpha_at(std::span<const float> alphas_cumprod, long t, const char* scheduler) {
  if (t < 0 || t >= static_cast<long>(alphas_cumprod.size()))
    throw UsageError(cat(scheduler, ": timestep ", t, " falls outside the model's ", alphas_cumprod.size(),
                         " training timesteps; lower steps_offset or change the number of steps"));
  return alphas_cumprod[static_cast<std::size_t>(t)];
}

}  // namespace sdgen::schedulers
