// The denoising step on the GPU: classifier-free guidance and the scheduler update in one
// elementwise kernel, driven by a device-resident table of per-step coefficients.
//
// What it computes. For every latent element i, exactly what the host loop of
// lib/pipeline/txt2img.cpp computes followed by schedulers::apply_step_plan:
//   m = u + g * (c - u) in fp32 (or m = the UNet output when unguided), from the UNet output (fp16 or bf16: T);
//   the step's inputs (sample, m, noise, history slots) as doubles; the clamped x0 when the plan
//   clips; each output's weighted sum in double; every output stored (as fp32) only after all of
//   them are formed, so an output may overwrite an input (the sample is updated in place).
// The operations are the host's, in the host's order, each rounded once: the _rn intrinsics keep
// nvcc from contracting a product and a sum into an FMA (which the host, compiled without FMA
// targets, does not do), so the result equals the CPU path bit for bit. The only difference from
// apply_step_plan is that terms of zero weight are skipped instead of multiplied by zero: that
// changes no finite sum (the running sum starts at +0 and x + 0 = x), and it means a buffer the
// step does not read is never touched: a history slot not yet written may hold any bits in the
// arena, and the noise buffer may be absent.
//
// Why a table and a device step index. The UNet step and this kernel are captured once into a
// CUDA graph and replayed for every call, and a replay cannot change kernel arguments. So the
// coefficients of ALL calls (StepCoefficients, kernels/step_update.hpp, computed on the host in
// double by schedulers::to_step_coefficients) are uploaded once; the kernel reads the entry at
// *step_index, and advance_step, a one-thread kernel queued after it, increments the index. The
// index cannot be advanced by the step kernel itself: its blocks run in no particular order, and
// every block must read the old value. An index outside the table makes the step a no-op, so a
// stray replay can never read past the table.
//
// Decomposition. One thread per latent element, 256 per block, coalesced fp32 and 16-bit accesses;
// the coefficients are the same for every thread, so their loads are warp-wide broadcasts served
// from L1. At SD sizes the step is 16K elements per image (64 blocks): a few microseconds,
// negligible beside the UNet, and the point of fusing is to avoid the round trips, not bandwidth.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_api.cuh"
#include "kernels/step_update.hpp"

namespace sdgen::cuda {

namespace step {

inline constexpr int kBlockThreads = 256;

template <class T>
struct StepUpdateParams {
  GlobalPtr<const StepCoefficients> steps;  // [step_count]
  GlobalPtr<const int> step_index;          // [1]
  GlobalPtr<const T> model_output;     // [elements] or [2 * elements] (guided)
  GlobalPtr<float> sample;                  // [elements]
  GlobalPtr<const float> noise;             // [elements], or empty
  GlobalPtr<float> history[kStepHistorySlots];
  std::int64_t elements;
  int step_count;
};

__device__ __forceinline__ bool reads(const StepCoefficients& s, StepTerm t) {
  return ((s.reads >> static_cast<int>(t)) & 1u) != 0u;
}

// sum over t of w[t] * v[t], in term order, each product and sum rounded once, as the host's dot.
__device__ __forceinline__ double weighted_sum(const double (&w)[kStepTermCount], const double (&v)[kStepTermCount]) {
  double sum = 0.0;
  for (int t = 0; t < kStepTermCount; ++t)
    if (w[t] != 0.0) sum = __dadd_rn(sum, __dmul_rn(w[t], v[t]));
  return sum;
}

template <class T>
__global__ void __launch_bounds__(kBlockThreads) step_update_kernel(StepUpdateParams<T> p) {
  const int index = p.step_index[0];
  if (index < 0 || index >= p.step_count) return;
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.elements) return;
  const StepCoefficients& s = p.steps[index];

  double v[kStepTermCount] = {};
  if (reads(s, StepTerm::Sample)) v[int(StepTerm::Sample)] = p.sample[i];
  if (reads(s, StepTerm::ModelOutput)) {
    const float u = to_float(p.model_output[i]);
    float m = u;
    if (s.guidance == StepGuidance::ClassifierFree) {
      const float c = to_float(p.model_output[p.elements + i]);
      m = __fadd_rn(u, __fmul_rn(s.guidance_scale, __fsub_rn(c, u)));
    }
    v[int(StepTerm::ModelOutput)] = m;
  }
  if (reads(s, StepTerm::Noise)) v[int(StepTerm::Noise)] = p.noise[i];
  for (int slot = 0; slot < kStepHistorySlots; ++slot) {
    const auto term = static_cast<StepTerm>(int(StepTerm::History0) + slot);
    if (reads(s, term)) v[int(term)] = p.history[slot][i];
  }
  if (s.clip == StepClip::ClampX0) {
    const double x0 = weighted_sum(s.clip_weights, v), r = s.clip_range;
    v[int(StepTerm::ClippedX0)] = x0 < -r ? -r : (r < x0 ? r : x0);  // std::clamp's comparisons
  }

  double out[kStepMaxWrites];
  for (int k = 0; k < s.write_count; ++k) out[k] = weighted_sum(s.write_weights[k], v);
  for (int k = 0; k < s.write_count; ++k) {
    const float value = static_cast<float>(out[k]);
    const StepTerm target = s.write_targets[k];
    if (target == StepTerm::Sample) p.sample[i] = value;
    // A loop over the slots rather than history[target - History0], so that the parameter array is
    // indexed by constants and stays in the parameter bank.
    for (int slot = 0; slot < kStepHistorySlots; ++slot)
      if (int(target) == int(StepTerm::History0) + slot) p.history[slot][i] = value;
  }
}

__global__ void advance_step_kernel(GlobalPtr<int> step_index) { step_index[0] += 1; }

template <class T>
struct ModelInputParams {
  GlobalPtr<const StepCoefficients> steps;
  GlobalPtr<const int> step_index;
  GlobalPtr<const float> latents;  // [elements]
  GlobalPtr<T> unet_in;       // [copies * elements]
  GlobalPtr<float> t;              // [rows]
  std::int64_t elements;
  std::int64_t copies;
  std::int64_t rows;
  int step_count;
};

// unet_in = latents * input_scale rounded to T (the product in fp32 and rounded once, as the
// convert kernel and the host do), every copy; the first `rows` threads also write t.
template <class T>
__global__ void __launch_bounds__(kBlockThreads) model_input_kernel(ModelInputParams<T> p) {
  const int index = p.step_index[0];
  if (index < 0 || index >= p.step_count) return;
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const StepCoefficients& s = p.steps[index];
  if (i < p.rows) p.t[i] = s.timestep;
  if (i >= p.elements) return;
  const T v = from_float<T>(__fmul_rn(p.latents[i], s.input_scale));
  for (std::int64_t copy = 0; copy < p.copies; ++copy) p.unet_in[copy * p.elements + i] = v;
}

}  // namespace step

// One denoising step: the entry *step_index of `steps` applied to every latent element.
//   steps:        the coefficients of every call of the generation (schedulers::to_step_coefficients,
//                 all made with the guidance model_output carries); step_count entries.
//   step_index:   one int in device memory; outside [0, step_count) the launch does nothing.
//   model_output: the UNet output, T (fp16 or bf16) NHWC, [n, h, w, c] or, guided, the n unconditional rows
//                 then the n conditional rows, [2n, h, w, c].
//   sample:       the latents, fp32 [n, h, w, c], read and updated in place.
//   noise:        fp32 [n, h, w, c] for steps that read noise; may be empty otherwise.
//   history:      the scheduler's slots 0 .. history_slots() - 1, fp32 [n, h, w, c] each; the others
//                 may be empty. They need no initialisation: a slot is written before it is read.
// `elements` is n * h * w * c. No alignment is required; no buffer may overlap another.
template <class T>
struct StepUpdateLaunch {
  GlobalPtr<const StepCoefficients> steps;
  int step_count = 0;
  GlobalPtr<const int> step_index;
  GlobalPtr<const T> model_output;
  GlobalPtr<float> sample;
  GlobalPtr<const float> noise;
  GlobalPtr<float> history[kStepHistorySlots];
  std::int64_t elements = 0;
  Stream stream = nullptr;
};

template <class T>
void step_update(const StepUpdateLaunch<T>& l) {
  if (l.elements == 0) return;
  step::StepUpdateParams<T> p{.steps = l.steps,
                           .step_index = l.step_index,
                           .model_output = l.model_output,
                           .sample = l.sample,
                           .noise = l.noise,
                           .history = {},
                           .elements = l.elements,
                           .step_count = l.step_count};
  for (int slot = 0; slot < kStepHistorySlots; ++slot) p.history[slot] = l.history[slot];
  const auto blocks = unsigned((l.elements + step::kBlockThreads - 1) / step::kBlockThreads);
  launch(SDGEN_KERNEL(step::step_update_kernel<T>), {.grid = blocks, .block = step::kBlockThreads, .stream = l.stream},
         p);
}

// The UNet's inputs of the call at *step_index (its timestep and scale_model_input, from the same
// table as step_update, for the same reason): unet_in = `copies` copies of latents scaled by the
// entry's input_scale, in T; t[0 .. rows) = the entry's timestep. Outside the table, nothing.
template <class T>
struct ModelInputLaunch {
  GlobalPtr<const StepCoefficients> steps;
  int step_count = 0;
  GlobalPtr<const int> step_index;
  GlobalPtr<const float> latents;
  GlobalPtr<T> unet_in;
  GlobalPtr<float> t;
  std::int64_t elements = 0;  // of latents
  std::int64_t copies = 1;    // unet_in holds copies * elements
  std::int64_t rows = 0;      // of t
  Stream stream = nullptr;
};

template <class T>
void model_input(const ModelInputLaunch<T>& l) {
  const std::int64_t threads = l.elements > l.rows ? l.elements : l.rows;
  if (threads == 0) return;
  const auto blocks = unsigned((threads + step::kBlockThreads - 1) / step::kBlockThreads);
  launch(SDGEN_KERNEL(step::model_input_kernel<T>), {.grid = blocks, .block = step::kBlockThreads, .stream = l.stream},
         step::ModelInputParams<T>{.steps = l.steps,
                                .step_index = l.step_index,
                                .latents = l.latents,
                                .unet_in = l.unet_in,
                                .t = l.t,
                                .elements = l.elements,
                                .copies = l.copies,
                                .rows = l.rows,
                                .step_count = l.step_count});
}

// *step_index += 1, queued after step_update on the same stream.
inline void advance_step(GlobalPtr<int> step_index, Stream stream = nullptr) {
  launch(SDGEN_KERNEL(step::advance_step_kernel), {.grid = 1, .block = 1, .stream = stream}, step_index);
}

}  // namespace sdgen::cuda
