// The host implementation of one denoising step (see step_update.hpp): the CPU backends' step
// and the reference the CUDA step kernel is compared with, bit for bit.
#include "kernels/step_update.hpp"

namespace sdgen {

namespace {

bool reads(const StepCoefficients& s, StepTerm t) { return ((s.reads >> static_cast<int>(t)) & 1u) != 0u; }

// sum over t of w[t] * v[t] in term order, each product and sum rounded once, as the kernel's.
double weighted_sum(const double (&w)[kStepTermCount], const double (&v)[kStepTermCount]) {
  double sum = 0.0;
  for (int t = 0; t < kStepTermCount; ++t)
    if (w[t] != 0.0) sum += w[t] * v[t];
  return sum;
}

}  // namespace

void apply_step_coefficients(const StepCoefficients& s, const StepHostBuffers& b) {
  for (std::int64_t i = 0; i < b.elements; ++i) {
    double v[kStepTermCount] = {};
    if (reads(s, StepTerm::Sample)) v[static_cast<int>(StepTerm::Sample)] = b.sample[i];
    if (reads(s, StepTerm::ModelOutput)) {
      const float u = b.model_output[i];
      v[static_cast<int>(StepTerm::ModelOutput)] =
          s.guidance == StepGuidance::ClassifierFree ? u + s.guidance_scale * (b.model_output[b.elements + i] - u) : u;
    }
    if (reads(s, StepTerm::Noise)) v[static_cast<int>(StepTerm::Noise)] = b.noise[i];
    for (int slot = 0; slot < kStepHistorySlots; ++slot) {
      const auto term = static_cast<StepTerm>(static_cast<int>(StepTerm::History0) + slot);
      if (reads(s, term)) v[static_cast<int>(term)] = b.history[static_cast<std::size_t>(slot)][i];
    }
    if (s.clip == StepClip::ClampX0) {
      const double x0 = weighted_sum(s.clip_weights, v), r = s.clip_range;
      v[static_cast<int>(StepTerm::ClippedX0)] = x0 < -r ? -r : (r < x0 ? r : x0);  // std::clamp's order
    }
    // Every input of element i is read before any output is written: outputs may alias inputs.
    double out[kStepMaxWrites] = {};
    for (int k = 0; k < s.write_count; ++k) out[k] = weighted_sum(s.write_weights[k], v);
    for (int k = 0; k < s.write_count; ++k) {
      const StepTerm target = s.write_targets[k];
      float* dst = target == StepTerm::Sample
                       ? b.sample
                       : b.history[static_cast<std::size_t>(static_cast<int>(target) - static_cast<int>(StepTerm::History0))];
      dst[i] = static_cast<float>(out[k]);
    }
  }
}

}  // namespace sdgen
