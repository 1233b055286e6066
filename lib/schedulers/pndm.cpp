// PNDMScheduler (diffusers 0.33.1): pseudo numerical methods (Liu et al. 2022).
//
// Every update is the PNDM transfer of formula (9): from x_t and a (combined) noise prediction e,
//   x_prev = sqrt(a_prev / a_t) x_t - (a_prev - a_t) e / (a_t sqrt(1 - a_prev) + sqrt(a_t (1 - a_t) a_prev)).
// With skip_prk_steps (the SD configs) the combinations are PLMS, the linear multistep of
// crowsonkb's sampler: e, then (e + e_prev) / 2 re-run from the saved first sample (that second
// call repeats the second timestep, which is why 10 steps take 11 UNet calls), then the
// Adams-Bashforth weights (3, -1)/2, (23, -16, 5)/12, (55, -59, 37, -9)/24 over past outputs.
// Without it, three Runge-Kutta groups of four calls (weights 1/6, 1/3, 1/3, 1/6, around half
// steps) come first and produce the first three past outputs. Past outputs, the saved sample and
// the Runge-Kutta accumulator are carried in history slots.
#include <cmath>
#include <optional>

#include "lib/core/error.hpp"
#include "lib/schedulers/algorithms.hpp"
#include "lib/schedulers/noise_schedule.hpp"

namespace sdgen::schedulers {

namespace {

constexpr int kPndmOrder = 4;

// The evenly spaced timesteps, ascending (diffusers' _timesteps).
std::vector<long> base_timesteps(const ResolvedConfig& c, int steps) {
  const int n_train = c.num_train_timesteps;
  std::vector<long> t;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace:
      for (double v : np_linspace(0.0, n_train - 1, steps)) t.push_back(static_cast<long>(np_round(v)));
      break;
    case TimestepSpacing::Leading:
      for (int i = 0; i < steps; ++i) t.push_back(static_cast<long>(i) * (n_train / steps) + c.steps_offset);
      break;
    case TimestepSpacing::Trailing: {
      const std::vector<double> down = np_arange(n_train, 0.0, -static_cast<double>(n_train) / steps);
      for (auto it = down.rbegin(); it != down.rend(); ++it) t.push_back(static_cast<long>(np_round(*it)) - 1);
      break;
    }
  }
  return t;
}

// The Runge-Kutta calls: each of the last four timesteps and its half step, arranged as diffusers
// does (prk_timesteps[:-1].repeat(2)[1:-1], reversed).
std::vector<long> prk_timesteps(const std::vector<long>& base, int steps, int n_train) {
  const long half = n_train / steps / 2;
  std::vector<long> pairs;  // t, t + half for each of the last four, ascending
  for (std::size_t i = base.size() - kPndmOrder; i < base.size(); ++i) {
    pairs.push_back(base[i]);
    pairs.push_back(base[i] + half);
  }
  pairs.pop_back();
  std::vector<long> doubled;
  for (long t : pairs) doubled.insert(doubled.end(), {t, t});
  std::vector<long> out(doubled.begin() + 1, doubled.end() - 1);
  return {out.rbegin(), out.rend()};
}

}  // namespace

Schedule build_pndm(const ResolvedConfig& c, const BuildOptions& o) {
  const std::vector<float> alphas_cumprod = make_alphas_cumprod(c);
  const double final_alpha_cumprod = c.set_alpha_to_one ? 1.0 : alphas_cumprod.front();
  const long step_gap = c.num_train_timesteps / o.steps;

  const std::vector<long> base = base_timesteps(c, o.steps);
  std::vector<long> prk, plms;
  if (c.skip_prk_steps) {
    // All timesteps but the last, the second-to-last again, then the last; descending.
    plms.assign(base.begin(), base.end() - 1);
    if (base.size() >= 2) plms.push_back(base[base.size() - 2]);
    plms.push_back(base.back());
    plms = {plms.rbegin(), plms.rend()};
  } else {
    if (o.steps < kPndmOrder)
      throw UsageError(cat("pndm with Runge-Kutta warm-up steps (skip_prk_steps false) needs at least ", kPndmOrder,
                           " steps, got ", o.steps));
    prk = prk_timesteps(base, o.steps, c.num_train_timesteps);
    plms.assign(base.rbegin() + 3, base.rend());
  }

  const Combination s = Combination::of(Term::Sample);
  const Combination m = Combination::of(Term::ModelOutput);
  // formula (9), from `sample` at timestep t to prev_t with noise prediction `e` (or v)
  const auto transfer = [&](const Combination& sample, long t, long prev_t, Combination e) {
    const double a_t = alpha_at(alphas_cumprod, t, "pndm");
    const double a_prev = prev_t >= 0 ? alpha_at(alphas_cumprod, prev_t, "pndm") : final_alpha_cumprod;
    const double b_t = 1.0 - a_t;
    const double b_prev = 1.0 - a_prev;
    if (c.prediction_type == PredictionType::VPrediction) e = std::sqrt(a_t) * e + std::sqrt(b_t) * sample;
    const double denominator = a_t * std::sqrt(b_prev) + std::sqrt(a_t * b_t * a_prev);
    return std::sqrt(a_prev / a_t) * sample - ((a_prev - a_t) / denominator) * e;
  };

  Schedule out;
  HistorySlots slots;
  std::vector<Combination> ets;              // past model outputs, oldest first
  std::optional<Combination> cur_sample;     // the sample a Runge-Kutta group or PLMS restart starts from
  std::optional<Combination> cur_model_output;  // the Runge-Kutta accumulator
  const int calls = static_cast<int>(prk.size() + plms.size());
  for (int counter = 0; counter < calls; ++counter) {
    const bool runge_kutta = counter < static_cast<int>(prk.size());
    const long call_t = runge_kutta ? prk[static_cast<std::size_t>(counter)]
                                    : plms[static_cast<std::size_t>(counter) - prk.size()];
    Combination prev;
    if (runge_kutta) {
      const long prev_t = call_t - (counter % 2 ? 0 : step_gap / 2);
      const long t = prk[static_cast<std::size_t>(counter / 4 * 4)];
      Combination e = m;
      switch (counter % 4) {
        case 0:
          cur_model_output = m / 6.0;
          ets.push_back(m);
          cur_sample = s;
          break;
        case 1:
        case 2: cur_model_output = *cur_model_output + m / 3.0; break;
        case 3:
          e = *cur_model_output + m / 6.0;
          cur_model_output.reset();
          break;
      }
      prev = transfer(*cur_sample, t, prev_t, e);
      // After the fourth call the group's start sample is never read again.
      if (counter % 4 == 3) cur_sample.reset();
    } else {
      long t = call_t;
      long prev_t = t - step_gap;
      if (counter != 1) {
        if (ets.size() > 3) ets.erase(ets.begin(), ets.end() - 3);
        ets.push_back(m);
      } else {
        prev_t = t;
        t = t + step_gap;
      }
      Combination sample = s;
      Combination e;
      const std::size_t n = ets.size();
      if (n == 1 && counter == 0) {
        e = m;
        cur_sample = s;
      } else if (n == 1 && counter == 1) {
        e = (m + ets[0]) / 2.0;
        sample = *cur_sample;
        cur_sample.reset();
      } else if (n == 2) {
        e = (3.0 * ets[1] - ets[0]) / 2.0;
      } else if (n == 3) {
        e = (23.0 * ets[2] - 16.0 * ets[1] + 5.0 * ets[0]) / 12.0;
      } else {
        e = (1.0 / 24.0) * (55.0 * ets[3] - 59.0 * ets[2] + 37.0 * ets[1] - 9.0 * ets[0]);
      }
      prev = transfer(sample, t, prev_t, e);
    }

    StepPlan plan;
    plan.add_write(Term::Sample, prev);
    if (counter + 1 < calls) {
      // What later calls can read: the last three outputs, the saved sample, the accumulator.
      if (ets.size() > 3) ets.erase(ets.begin(), ets.end() - 3);
      std::vector<Combination> state = ets;
      if (cur_sample) state.push_back(*cur_sample);
      if (cur_model_output) state.push_back(*cur_model_output);
      const std::vector<Term> kept = slots.carry(plan, state);
      std::size_t k = 0;
      for (Combination& e : ets) e = Combination::of(kept[k++]);
      if (cur_sample) cur_sample = Combination::of(kept[k++]);
      if (cur_model_output) cur_model_output = Combination::of(kept[k++]);
    }
    out.plans.push_back(plan);
    out.timesteps.push_back(static_cast<double>(call_t));
    out.model_input_scale.push_back(1.0);
  }
  out.history_slots = slots.used();
  return out;
}

}  // namespace sdgen::schedulers
