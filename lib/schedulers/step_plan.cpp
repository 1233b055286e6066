// Plans as data, and the host step (see step_plan.hpp).
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

void apply_step_plan(const StepPlan& plan, const StepBuffers& buffers) {
  const std::size_t n = buffers.sample.size();
  StepHostBuffers host{.sample = buffers.sample.data(), .elements = static_cast<std::int64_t>(n)};
  const auto check = [&](Term t, std::size_t size, const char* name) {
    if (plan.uses(t) && size != n)
      throw Error(cat("scheduler step: buffer '", name, "' has ", size, " elements, the sample has ", n));
  };
  check(Term::ModelOutput, buffers.model_output.size(), "model_output");
  check(Term::Noise, buffers.noise.size(), "noise");
  host.model_output = buffers.model_output.data();
  host.noise = buffers.noise.data();
  for (int i = 0; i < kHistorySlots; ++i) {
    check(history_slot(i), buffers.history[static_cast<std::size_t>(i)].size(), "history");
    host.history[static_cast<std::size_t>(i)] = buffers.history[static_cast<std::size_t>(i)].data();
  }
  // The arithmetic lives in kernels/ with the device kernel's, so the two cannot drift apart.
  apply_step_coefficients(to_step_coefficients(plan, std::nullopt), host);
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
