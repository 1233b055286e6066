// The op set's argument rules, written once: every backend (CPU, CUDA, shape-only) calls these at
// the entry of each op, so a malformed call fails the same way, with the same message, whichever
// backend runs it, and ShapeBackend rejects exactly what the real backends reject.
//
// Each check returns the op's geometry as a small POD struct (sizes and element strides), so that
// a backend validates once and its kernels take plain numbers, never a Tensor to re-inspect (the
// flash-attention params-struct habit). Messages name the op, the argument and the shapes:
//   "group_norm: x is [2, 64, 64, 320] but gamma is [640]; expected [320]".
//
// What a backend computes in (device, activation and weight dtypes) differs, so the checks take it
// as an OpSupport value; the shapes and aliasing rules are the op set's and do not vary.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/backend.hpp"

namespace sdgen {

// A set of dtypes, for messages like "w is F16; expected one of F32, BF16".
class DTypeSet {
 public:
  DTypeSet(std::initializer_list<DType> types) {
    for (DType t : types) mask_ |= bit(t);
  }
  bool contains(DType t) const { return (mask_ & bit(t)) != 0; }
  std::string str() const;

 private:
  static std::uint32_t bit(DType t) { return 1u << static_cast<unsigned>(t); }
  std::uint32_t mask_ = 0;
};

// What one backend accepts. Every tensor of an op must live on `device`.
struct OpSupport {
  DeviceKind device = DeviceKind::Cpu;
  DType activations = DType::F32;  // x, out, residual, q/k/v, a/b, tables, timesteps
  DType params = DType::F32;       // bias, gamma, beta, add_per_channel
  DTypeSet weights{DType::F32};    // linear and conv weights (strided or packed)
};

// A tensor seen as a matrix of rows: [..., cols] whose leading dimensions collapse to one stride.
struct RowsView {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;  // elements between consecutive rows
};

struct LinearGeometry {
  RowsView x, out, residual;  // residual.rows == 0 when absent
  std::int64_t n = 0;         // out features
  std::int64_t k = 0;         // in features
};

struct Conv2dGeometry {
  std::int64_t batch = 0, h = 0, w = 0, cin = 0;
  std::int64_t cout = 0, kh = 0, kw = 0;
  std::int64_t ho = 0, wo = 0;
  int stride = 1, padding = 0;
};

struct GroupNormGeometry {
  std::int64_t batch = 0;
  std::int64_t pixels = 0;  // H*W (or N) per batch element
  std::int64_t channels = 0;
  int groups = 0;
};

struct LayerNormGeometry {
  RowsView x, out;
};

// Element strides of one [B, N, C] operand of attention.
struct AttentionOperand {
  std::int64_t batch_stride = 0;
  std::int64_t row_stride = 0;
};

struct AttentionGeometry {
  std::int64_t batch = 0, nq = 0, nk = 0;
  int heads = 0;
  std::int64_t head_dim = 0;
  float scale = 0.0f;  // resolved: never 0
  bool causal = false;
  AttentionOperand q, k, v, out;
};

struct GegluGeometry {
  RowsView x, out;  // out.cols == x.cols / 2
};

struct AddGeometry {
  std::int64_t n = 0;         // elements of a (and out)
  std::int64_t b_period = 0;  // elements of b (0 without b): b repeats every b_period elements of a
};

struct ConcatGeometry {
  std::int64_t pixels = 0;  // B*H*W
  std::int64_t ca = 0, cb = 0;
};

struct UpsampleGeometry {
  std::int64_t batch = 0, h = 0, w = 0, c = 0;
  std::int64_t ho = 0, wo = 0;
};

struct TimestepGeometry {
  std::int64_t batch = 0, dim = 0;
};

struct EmbeddingGeometry {
  std::int64_t tokens = 0, vocab = 0, dim = 0;
};

// ---- the checks: one per op of backend.hpp; each throws sdgen::Error or returns the geometry.
LinearGeometry check_linear(const OpSupport& s, const Tensor& x, const Tensor& w, const Tensor& out,
                            const LinearArgs& args);
Conv2dGeometry check_conv2d(const OpSupport& s, const Tensor& x, const Tensor& w, const Tensor& out,
                            const Conv2dArgs& args);
GroupNormGeometry check_group_norm(const OpSupport& s, const Tensor& x, const Tensor& gamma,
                                   const Tensor& beta, const Tensor& out, const GroupNormArgs& args);
LayerNormGeometry check_layer_norm(const OpSupport& s, const Tensor& x, const Tensor& gamma,
                                   const Tensor& beta, const Tensor& out, const LayerNormArgs& args);
AttentionGeometry check_attention(const OpSupport& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const AttentionArgs& args);
GegluGeometry check_geglu(const OpSupport& s, const Tensor& x, const Tensor& out);
std::int64_t check_activation(const OpSupport& s, const Tensor& x, const Tensor& out, Act act);

// "none", "silu", "gelu", "gelu_tanh", "quick_gelu" ("?" for a value outside the enum), for messages.
std::string_view act_name(Act act);
AddGeometry check_add(const OpSupport& s, const Tensor& a, const Tensor* b, const Tensor& out,
                      const AddArgs& args);
UpsampleGeometry check_upsample_nearest(const OpSupport& s, const Tensor& x, const Tensor& out);
ConcatGeometry check_concat_channels(const OpSupport& s, const Tensor& a, const Tensor& b, const Tensor& out);
TimestepGeometry check_timestep_embedding(const OpSupport& s, const Tensor& t, const Tensor& out,
                                          const TimestepEmbeddingArgs& args);
EmbeddingGeometry check_embedding(const OpSupport& s, const Tensor& ids, const Tensor& table, const Tensor& out);
// A weight handed to Backend::prepare_weight: rank 2 for Linear, 4 for Conv2d, a supported dtype.
void check_weight(const OpSupport& s, std::string_view op, const Tensor& w, WeightUse use);
// upload / download: `host` is contiguous host memory in F32 or I32; `mine` (the backend's side)
// has the same shape, is contiguous, and holds the same dtype or, for F32 data, the activation
// dtype. Returns the element count.
std::int64_t check_transfer(const OpSupport& s, std::string_view op, const Tensor& host, const Tensor& mine);
// convert: same shape, contiguous, each F32 or the activation dtype, not overlapping.
std::int64_t check_convert(const OpSupport& s, const Tensor& x, const Tensor& out);
// scheduler_step: `call` indexes `steps`; every tensor the step reads or writes is present,
// contiguous, F32 with the sample's element count (the model output in the activation dtype,
// twice that under guidance). Returns the sample's element count.
std::int64_t check_scheduler_step(const OpSupport& s, std::span<const StepCoefficients> steps, int call,
                                  const StepTensors& t);
// model_input: `call` indexes `steps`; latents F32 [n, ...] contiguous; unet_in contiguous in the
// activation dtype, [k n, ...] for a whole k >= 1 with latents' other dimensions; t F32 [k n]. Not
// overlapping. Returns the latents' element count.
std::int64_t check_model_input(const OpSupport& s, std::span<const StepCoefficients> steps, int call,
                               const Tensor& latents, const Tensor& unet_in, const Tensor& t);

}  // namespace sdgen
