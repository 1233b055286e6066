// The CPU step: the reference for the fused device kernel (see step_plan.hpp).
#include "lib/schedulers/step_plan.hpp"

#include <algorithm>
#include <stdexcept>

#include "lib/core/error.hpp"

namespace sdgen::schedulers {

std::optional<Term> Combination::as_history_slot() const {
  std::optional<Term> slot;
  for (int i = 0; i < kTermCount; ++i) {
    const Term t = static_cast<Term>(i);
    if (w_[index(t)] == 0.0) continue;
    const bool is_history = i >= static_cast<int>(Term::History0) && i < static_cast<int>(Term::History0) + kHistorySlots;
    if (slot || !is_history || w_[index(t)] != 1.0) return std::nullopt;
    slot = t;
  }
  return slot;
}

Combination Combination::operator+(const Combination& o) const {
  Combination r = *this;
  for (std::size_t i = 0; i < w_.size(); ++i) r.w_[i] += o.w_[i];
  return r;
}

Combination Combination::operator-(const Combination& o) const {
  Combination r = *this;
  for (std::size_t i = 0; i < w_.size(); ++i) r.w_[i] -= o.w_[i];
  return r;
}

Combination Combination::operator*(double k) const {
  Combination r = *this;
  for (double& w : r.w_) w *= k;
  return r;
}

void StepPlan::add_write(Term target, const Combination& value) {
  // Plans are built by sdgen's own schedulers: running out of room is a bug in one of them.
  if (write_count == kMaxWrites) throw std::logic_error("StepPlan: more than kMaxWrites outputs");
  writes[static_cast<std::size_t>(write_count++)] = Write{target, value};
}

bool StepPlan::uses(Term t) const {
  if (t == Term::Noise && draws_noise) return true;
  if (clip && clip->x0.uses(t)) return true;
  for (const Write& w : active_writes())
    if (w.target == t || w.value.uses(t)) return true;
  return false;
}

namespace {

std::size_t slot_index(Term t) { return static_cast<std::size_t>(t) - static_cast<std::size_t>(Term::History0); }

}  // namespace

void apply_step_plan(const StepPlan& plan, const StepBuffers& buffers) {
  const std::size_t n = buffers.sample.size();
  // Read pointers per input term; null where the plan does not read the term.
  std::array<const float*, kTermCount> in{};
  const auto bind = [&](Term t, std::span<const float> data, const char* name) {
    if (!plan.uses(t)) return;
    if (data.size() != n)
      throw Error(cat("scheduler step: buffer '", name, "' has ", data.size(), " elements, the sample has ", n));
    in[static_cast<std::size_t>(t)] = data.data();
  };
  bind(Term::Sample, buffers.sample, "sample");
  bind(Term::ModelOutput, buffers.model_output, "model_output");
  bind(Term::Noise, buffers.noise, "noise");
  for (int i = 0; i < kHistorySlots; ++i) bind(history_slot(i), buffers.history[static_cast<std::size_t>(i)], "history");

  std::array<float*, kMaxWrites> out{};
  for (int k = 0; k < plan.write_count; ++k) {
    const Term target = plan.writes[static_cast<std::size_t>(k)].target;
    out[static_cast<std::size_t>(k)] =
        target == Term::Sample ? buffers.sample.data() : buffers.history[slot_index(target)].data();
  }

  const auto inputs = [&](std::size_t i) {
    std::array<double, kTermCount> v{};
    for (int t = 0; t < kTermCount; ++t)
      if (in[static_cast<std::size_t>(t)]) v[static_cast<std::size_t>(t)] = in[static_cast<std::size_t>(t)][i];
    return v;
  };
  const auto dot = [](const Combination& c, const std::array<double, kTermCount>& v) {
    double sum = 0.0;
    for (int t = 0; t < kTermCount; ++t) sum += c[static_cast<Term>(t)] * v[static_cast<std::size_t>(t)];
    return sum;
  };

  std::array<double, kMaxWrites> result{};
  for (std::size_t i = 0; i < n; ++i) {
    auto v = inputs(i);
    if (plan.clip) {
      const double r = plan.clip->range;
      v[static_cast<std::size_t>(Term::ClippedX0)] = std::clamp(dot(plan.clip->x0, v), -r, r);
    }
    // Every input of element i is read before any output is written: outputs may alias inputs.
    for (int k = 0; k < plan.write_count; ++k)
      result[static_cast<std::size_t>(k)] = dot(plan.writes[static_cast<std::size_t>(k)].value, v);
    for (int k = 0; k < plan.write_count; ++k)
      out[static_cast<std::size_t>(k)][i] = static_cast<float>(result[static_cast<std::size_t>(k)]);
  }
}

// The POD indexes terms by schedulers::Term's values.
static_assert(kTermCount == kStepTermCount && kHistorySlots == kStepHistorySlots && kMaxWrites == kStepMaxWrites);
static_assert(static_cast<int>(Term::Sample) == static_cast<int>(StepTerm::Sample) &&
              static_cast<int>(Term::ModelOutput) == static_cast<int>(StepTerm::ModelOutput) &&
              static_cast<int>(Term::Noise) == static_cast<int>(StepTerm::Noise) &&
              static_cast<int>(Term::History0) == static_cast<int>(StepTerm::History0) &&
              static_cast<int>(Term::History4) == static_cast<int>(StepTerm::History4) &&
              static_cast<int>(Term::ClippedX0) == static_cast<int>(StepTerm::ClippedX0));

StepCoefficients to_step_coefficients(const StepPlan& plan, std::optional<double> guidance_scale) {
  StepCoefficients c{};
  const auto weigh = [&c](const Combination& combination, double (&weights)[kStepTermCount]) {
    for (int t = 0; t < kTermCount; ++t) {
      const double w = combination[static_cast<Term>(t)];
      weights[t] = w;
      if (w != 0.0 && static_cast<Term>(t) != Term::ClippedX0) c.reads |= 1u << t;
    }
  };
  c.write_count = plan.write_count;
  for (int k = 0; k < plan.write_count; ++k) {
    const Write& write = plan.writes[static_cast<std::size_t>(k)];
    c.write_targets[k] = static_cast<StepTerm>(write.target);
    weigh(write.value, c.write_weights[k]);
  }
  if (plan.clip) {
    c.clip = StepClip::ClampX0;
    c.clip_range = plan.clip->range;
    weigh(plan.clip->x0, c.clip_weights);
  }
  if (guidance_scale) {
    c.guidance = StepGuidance::ClassifierFree;
    c.guidance_scale = static_cast<float>(*guidance_scale);
  }
  return c;
}

}  // namespace sdgen::schedulers
