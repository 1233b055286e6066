// One denoising step as the CUDA step kernel reads it: a fixed-size POD per UNet call.
//
// The schedulers (lib/schedulers) describe every step as a StepPlan: a few weighted sums of the
// step's input tensors, with all schedule arithmetic done on the host in double precision. The
// CUDA backend runs a whole generation's steps from ONE captured graph, so nothing the host passes
// to a kernel may change between steps: the plans of all calls are converted to this struct
// (schedulers::to_step_coefficients), uploaded once as an array, and the kernel
// (kernels/cuda/step_update.cuh) reads the entry at a step index that lives in device memory and
// that a second tiny kernel advances after each step.
//
// Plain C++ with fixed-size arrays and 32-bit enums, so that host and device agree on its layout
// and it can be copied byte for byte; it lives in kernels/ (not lib/) because the kernel needs it
// and kernels never include lib/. The term order mirrors schedulers::Term, which the conversion
// checks at compile time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace sdgen {

// The tensors a step reads, in schedulers::Term's order. ClippedX0 is not in memory: it is formed
// inside the step from the clip combination.
enum class StepTerm : std::int32_t {
  Sample,       // the latents, fp32, updated in place
  ModelOutput,  // the UNet output after guidance
  Noise,        // this step's standard normal noise, fp32
  History0,     // scheduler state carried between steps, fp32
  History1,
  History2,
  History3,
  History4,
  ClippedX0,
};
inline constexpr int kStepTermCount = 9;
inline constexpr int kStepHistorySlots = 5;
inline constexpr int kStepMaxWrites = 4;

// What the UNet output holds: the conditional rows only, or the n unconditional rows followed by
// the n conditional ones, combined as u + scale * (c - u) in fp32.
enum class StepGuidance : std::int32_t { None, ClassifierFree };

// DDIM's clip_sample: ClippedX0 = clamp(clip combination, -clip_range, clip_range).
enum class StepClip : std::int32_t { None, ClampX0 };

struct StepCoefficients {
  // Output k (k < write_count) is sum over t of write_weights[k][t] * term t, stored to
  // write_targets[k] (Sample or a history slot) after every output has been formed.
  double write_weights[kStepMaxWrites][kStepTermCount];
  double clip_weights[kStepTermCount];  // never weighs ClippedX0 itself
  double clip_range;
  float guidance_scale;  // used when guidance is ClassifierFree
  StepGuidance guidance;
  StepClip clip;
  StepTerm write_targets[kStepMaxWrites];
  std::int32_t write_count;
  // Bit t is set when term t (a term held in memory) has a non-zero weight in some output or in
  // the clip combination: the kernel reads exactly these buffers, so a history slot not yet
  // written or an absent noise buffer is never touched.
  std::uint32_t reads;
  // The UNet's inputs at this call: its timestep, and the factor the latents are scaled by
  // (scale_model_input), so that they too come from the table and a replayed step needs no
  // argument from the host.
  float timestep;
  float input_scale;
};
static_assert(std::is_trivially_copyable_v<StepCoefficients> && std::is_standard_layout_v<StepCoefficients>);

// One step's buffers in host memory, for backends that compute on the host. Each has `elements`
// floats (model_output twice that under guidance); a buffer the step does not read may be null.
struct StepHostBuffers {
  const float* model_output = nullptr;
  float* sample = nullptr;
  const float* noise = nullptr;
  std::array<float*, kStepHistorySlots> history{};
  std::int64_t elements = 0;
};

// The step on the host: per element, the arithmetic of the CUDA kernel (cuda/step_update.cuh) in
// the same order, each operation rounded once (guidance in float, the weighted sums in double,
// terms of zero weight skipped, every output formed before any is stored), so the two agree bit
// for bit. (step_update.cpp is compiled with -ffp-contract=off for that reason: g++ contracts
// a * b + c into an FMA whenever the target has one, even in ISO mode.)
void apply_step_coefficients(const StepCoefficients& s, const StepHostBuffers& b);

}  // namespace sdgen
