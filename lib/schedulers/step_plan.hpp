// A scheduler step as data: the coefficients of one elementwise update, computed on the host.
//
// Every step of the six diffusers schedulers sdgen runs (DDIM, DPM-Solver++ 2M, Euler, Euler
// ancestral, PNDM/PLMS, LMS) is linear in the tensors it touches: the sample x_t, the guided model
// output, the step's fresh noise and a few tensors of scheduler state carried from earlier steps
// (past model outputs, past derivatives, a saved sample). The conversions between what the model
// predicts (epsilon, v or x0) and what the solver needs are linear in (sample, model output) too.
// So a step is fully described by a handful of scalars per output tensor, and all the schedule
// arithmetic (alphas, sigmas, log-SNR steps, multistep weights, LMS integrals) happens once, on the
// host, in double precision. The device then runs ONE elementwise kernel per step, reading every
// input of an element before writing any output (so an output may overwrite an input slot).
//
// The one non-linear operation is DDIM's clip_sample: the predicted x0 is clamped to
// [-range, range] before use. It is still elementwise, so the plan carries the x0 combination and
// the range, and outputs may refer to the clamped value as the pseudo-input ClippedX0.
//
// apply_step_plan runs a plan on host buffers: per element it gathers the inputs as doubles, forms
// each output's weighted sum in double and rounds once to float, so a step adds one float rounding
// to the reference's several. It converts the plan with to_step_coefficients and runs
// kernels/step_update's host step, the same arithmetic as the CUDA kernel's.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>

#include "kernels/step_update.hpp"

namespace sdgen::schedulers {

// The tensors a step reads. All have the latent's size and layout.
enum class Term : int {
  Sample,       // x_t: the latents entering the step
  ModelOutput,  // the guided UNet output (epsilon, v or x0, as the prediction type says)
  Noise,        // standard normal noise drawn for this step (Euler ancestral, DDIM with eta > 0)
  History0,     // scheduler state carried between steps; which slot holds what is the
  History1,     //   scheduler's business, fixed when the plans are built
  History2,
  History3,
  History4,
  ClippedX0,  // clamp(plan.clip->x0, -range, range), formed inside the step (DDIM clip_sample)
};
inline constexpr int kTermCount = 9;
inline constexpr int kHistorySlots = 5;  // PNDM with its Runge-Kutta warm-up needs all five
inline constexpr int kMaxWrites = 4;  // PNDM's first Runge-Kutta call: x, e, the saved x, the sum

inline constexpr Term history_slot(int i) { return static_cast<Term>(static_cast<int>(Term::History0) + i); }

// A weighted sum of the step's inputs, written the way diffusers writes the formula:
// `auto x0 = (s - sigma * m) / alpha;` with s, m = Combination::of(Term::Sample / ModelOutput).
class Combination {
 public:
  constexpr Combination() = default;
  static Combination of(Term t) {
    Combination c;
    c.w_[index(t)] = 1.0;
    return c;
  }

  double operator[](Term t) const { return w_[index(t)]; }
  bool uses(Term t) const { return w_[index(t)] != 0.0; }
  // The history slot this combination is a plain copy of, if it is one.
  std::optional<Term> as_history_slot() const;

  Combination operator+(const Combination& o) const;
  Combination operator-(const Combination& o) const;
  Combination operator-() const { return *this * -1.0; }
  Combination operator*(double k) const;
  Combination operator/(double k) const { return *this * (1.0 / k); }
  friend Combination operator*(double k, const Combination& c) { return c * k; }

 private:
  static constexpr std::size_t index(Term t) { return static_cast<std::size_t>(t); }
  std::array<double, kTermCount> w_{};
};

// DDIM clip_sample: x0 = clamp(x0, -range, range) before the update.
struct ClipX0 {
  Combination x0;  // must not use ClippedX0
  double range = 1.0;
};

struct Write {
  Term target = Term::Sample;  // Sample or a history slot
  Combination value;
};

struct StepPlan {
  std::optional<ClipX0> clip;
  std::array<Write, kMaxWrites> writes{};
  int write_count = 0;
  // A latent-sized noise tensor is drawn for this call. Not the same as "Noise has a non-zero
  // weight": Euler ancestral's last step draws noise and multiplies it by sigma_up = 0, and the
  // draw still advances the generator that later images share.
  bool draws_noise = false;

  void add_write(Term target, const Combination& value);
  std::span<const Write> active_writes() const { return {writes.data(), static_cast<std::size_t>(write_count)}; }
  // Whether the step reads or writes the buffer of `t` (Noise: whenever noise is drawn).
  bool uses(Term t) const;
  bool needs_noise() const { return draws_noise; }
};

// The buffers of one step, each of the latent's element count. `noise` may be empty when the plan
// draws none, and history slots the plan neither reads nor writes may be empty.
struct StepBuffers {
  std::span<float> sample;
  std::span<const float> model_output;
  std::span<const float> noise;
  std::array<std::span<float>, kHistorySlots> history{};
};

// Runs one step on the CPU. Throws sdgen::Error when a buffer the plan uses is missing or of
// another size (a caller bug, not a user error).
void apply_step_plan(const StepPlan& plan, const StepBuffers& buffers);

// The plan as the CUDA step kernel reads it (kernels/step_update.hpp), with the guidance the
// UNet output of the step carries: a classifier-free guidance scale when the output holds the
// unconditional rows then the conditional ones (rounded to float, as the host loop rounds it), or
// nullopt when it holds the conditional rows only. The kernel then computes, per element, what the
// host's fp32 guidance loop followed by apply_step_plan computes, operation for operation.
StepCoefficients to_step_coefficients(const StepPlan& plan, std::optional<double> guidance_scale);

}  // namespace sdgen::schedulers
