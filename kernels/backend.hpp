// THE op set: every computation the networks (CLIP, UNet, VAE) perform, as one abstract Backend.
//
// lib/ writes each model once against this interface; kernels/cpu and kernels/cuda implement it,
// and kernels/shape_backend validates shapes and computes nothing (memory planning, cheap tests).
// Fusions are part of the op set, not discovered by pattern matching: "conv2d with the ResNet time
// embedding added per channel and the skip added" is ONE call, so the GPU can do it in one kernel
// and the CPU implements the same semantics simply; every fusion therefore has a reference.
//
// Conventions, for every op:
//  * destination passing: the caller allocates `out` (from the arena); ops never allocate
//    activations. `out` never overlaps an input unless the op says so (then only exactly: the same
//    data, shape and strides).
//  * memory: tensors are contiguous unless the op says otherwise ("rows": the last dimension has
//    stride 1 and the leading ones collapse to a single row stride, e.g. a column slice of a fused
//    buffer).
//  * layouts: images are NHWC [B, H, W, C]; token sequences [B, N, C]; shapes outermost first.
//  * weights: Linear [out, in] (torch layout); Conv2d [Cout, KH, KW, Cin] (OHWI: re-laid out once at
//    load from torch's OIHW, so the inner loop over Cin is contiguous in both x and w in NHWC).
//    Either strided, or packed by this backend's prepare_weight (the fast path: see below).
//  * dtypes: F32 everywhere on the CPU reference path; a backend documents any other compute dtype
//    (e.g. BF16 weights on the CPU, F16 on the GPU) and always accumulates in F32, with norm
//    statistics in F32.
//  * arguments are typed structs with designated initialisers: {.bias = &b, .act = Act::Silu}.
//  * each backend validates its arguments once, at entry, and throws sdgen::Error with a message
//    naming the op and the offending shapes ("group_norm: x is [2, 64, 64, 320] but gamma has 640").
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "kernels/step_update.hpp"
#include "lib/core/allocator.hpp"
#include "lib/core/tensor.hpp"

namespace sdgen {

enum class Act { None, Silu, Gelu, GeluTanh, QuickGelu };

// out = act(x @ w^T + bias) + residual.   x [..., K], w [N, K], bias [N], residual/out [..., N]
// x, residual and out are "rows" (see above); the leading dimensions of all three agree.
struct LinearArgs {
  const Tensor* bias = nullptr;
  Act act = Act::None;
  const Tensor* residual = nullptr;  // added after the activation
};

// out = (conv(x, w) + bias + add_per_channel[b, :] + residual) * output_scale.
//   x [B, H, W, Cin], w [Cout, KH, KW, Cin], out [B, Ho, Wo, Cout]; padding is symmetric zeros;
//   Ho = (H + 2 * padding - KH) / stride + 1 (floor, as torch).
struct Conv2dArgs {
  int stride = 1;
  int padding = 0;
  const Tensor* bias = nullptr;             // [Cout]
  const Tensor* add_per_channel = nullptr;  // [B, Cout]: the ResNet time embedding
  const Tensor* residual = nullptr;         // [B, Ho, Wo, Cout]: the skip connection
  float output_scale = 1.0f;                // (conv + bias + add + residual) * output_scale
};

// x [B, H, W, C] (or [B, N, C]); statistics per (batch, group of C/groups channels), in F32.
// out may be x (in place).
struct GroupNormArgs {
  int groups = 32;
  float eps = 1e-5f;
  bool silu = false;  // SiLU applied after the affine transform
};

// over the last dimension; x and out are "rows"; out may be x (in place).
struct LayerNormArgs {
  float eps = 1e-5f;
};

// q [B, Nq, heads*d], k and v [B, Nk, heads*d] (views with any batch and row stride, unit stride in
// the last dimension), out [B, Nq, heads*d] ("rows" per batch). Head h is columns [h*d, (h+1)*d).
// softmax(q k^T * scale [+ causal mask]) v per head, computed with an online softmax over tiles of
// keys: never the full Nq x Nk matrix of all heads at once.
// causal: query i sees keys 0..i (torch's is_causal, aligned top-left, also when Nq != Nk), so
// every query sees at least one key.
struct AttentionArgs {
  int heads = 1;
  float scale = 0.0f;  // 0: 1/sqrt(d)
  bool causal = false;
};

// Elementwise: out = a * alpha + b * beta (b optional). Shapes equal, or b broadcast over leading
// dims when its shape is a suffix of a's. out may be a, or b when b has a's shape (in place).
struct AddArgs {
  float alpha = 1.0f;
  float beta = 1.0f;
};

// Sinusoidal embedding of timesteps as diffusers' get_timestep_embedding:
// t [B] (F32) -> out [B, dim]; half = dim/2; freq_i = exp(-ln(max_period) * i / (half - freq_shift));
// out = [sin(t * freq), cos(t * freq)] ([cos, sin] when flip_sin_to_cos), computed in F32 in torch's
// order; an odd dim gets a zero last column, as diffusers pads.
struct TimestepEmbeddingArgs {
  bool flip_sin_to_cos = true;
  float freq_shift = 0.0f;
  float max_period = 10000.0f;
};

// out = x * scale + shift, converting x's dtype to out's (F32 latents <-> the activation dtype).
struct ConvertArgs {
  float scale = 1.0f;
  float shift = 0.0f;
};

// The tensors of one denoising step (kernels/step_update.hpp): model_output is the UNet output in
// the activation dtype, [n, ...] or, under guidance, the n unconditional rows then the n
// conditional ones; sample (updated in place), noise and the history slots are F32 [n, ...].
// Tensors the step does not read may be absent (null).
struct StepTensors {
  Tensor model_output;
  Tensor sample;
  const Tensor* noise = nullptr;
  std::array<const Tensor*, kStepHistorySlots> history{};
};

// What a parameter is for, so that a backend can lay it out for that op once, at load: a matrix
// of linear / conv2d, or a vector (bias, norm scale and shift) or embedding table read as is.
enum class WeightUse { Linear, Conv2d, Vector, Table };

// One generation's denoising loop (Backend::begin_denoising). Every call does the same work on the
// same memory: model_input, the UNet, scheduler_step, with what changes between calls (timestep,
// input scale, scheduler coefficients) read from the table of StepCoefficients at the loop's
// current call. So a device backend can upload the table once, keep the current call in device
// memory, and record one call's work to replay it for the next ones (a CUDA graph): run() is where
// it may.
class DenoisingLoop {
 public:
  virtual ~DenoisingLoop() = default;
  // The call the next model_input and scheduler_step are for: 0 at the start, then advanced by
  // each scheduler_step (or each replay of one).
  virtual int call() const = 0;
  // Runs one call's work, which `step` enqueues: model_input, the UNet's ops, scheduler_step.
  // `step` must enqueue the same ops on the same tensors at every call, and nothing else: no
  // download, no upload, no synchronize. A backend may run `step` only for the first calls and
  // replay what it enqueued for the later ones.
  virtual void run(const std::function<void()>& step) = 0;
  // unet_in = each of its unet_in.shape[0] / n copies of latents [n, ...] (F32) scaled by the call's
  // input_scale, in the activation dtype; t [unet_in.shape[0]] (F32) = the call's timestep.
  virtual void model_input(const Tensor& latents, const Tensor& unet_in, const Tensor& t) = 0;
  // Classifier-free guidance and the scheduler update of the current call, then the next call.
  virtual void scheduler_step(const StepTensors& tensors) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Parameters are constants, so a backend may re-lay them out once rather than at every step
  // (oneDNN's blocked formats, bf16 on the CPU; fp16 or bf16 device copies on a GPU). prepare_weight
  // receives every parameter in host memory and returns the tensor to compute with from then on:
  // either w itself (the caller keeps the memory alive), or a tensor in memory this backend owns
  // until it is destroyed, so the caller may release the source right away. The result keeps w's
  // shape and may be Layout::Packed (readable by this backend only). The default keeps w.
  virtual Tensor prepare_weight(const Tensor& w, WeightUse /*use*/) { return w; }
  // Bytes the backend holds itself from loading on (prepared weights, library workspaces, and
  // scratch that is not planned per stage), for --profile and the memory plan. The scratch held by
  // reserve_scratch is not in it: each stage's plan counts its own.
  virtual std::size_t held_bytes() const { return 0; }
  // The high-water mark of the device memory this backend allocated (weights, activations,
  // workspaces), for --profile; 0 for a backend that computes in host memory.
  virtual std::size_t peak_device_bytes() const { return 0; }
  // The high-water mark of the device memory in use as the driver reports it (cudaMemGetInfo:
  // total - free, sampled whenever the backend waits for the device), which also counts the CUDA
  // context, libraries' own allocations and other processes; 0 for a host backend.
  virtual std::size_t peak_device_used_bytes() const { return 0; }
  // A ShapeBackend that accepts exactly what this backend accepts and computes nothing: the
  // pipeline runs a stage through it once to plan the activation arena before the first step.
  virtual std::unique_ptr<Backend> shape_only() const = 0;
  // On a shape-only backend: the scratch the ops run on it so far need (the largest single op's);
  // 0 elsewhere.
  virtual std::size_t planned_scratch_bytes() const { return 0; }
  // Memory a denoising loop of `calls` calls holds besides the pipeline's tensors (the device copy
  // of the coefficient table, on a GPU), for planning; 0 where the table stays on the host.
  virtual std::size_t denoising_loop_bytes(std::size_t /*calls*/) const { return 0; }
  // Holds exactly `bytes` of the ops' scratch from now on (growing or shrinking what was held),
  // before a stage whose planning pass measured them, so that the stage itself allocates nothing
  // and keeps no more than it needs. A no-op for a backend without scratch.
  virtual void reserve_scratch(std::size_t /*bytes*/) {}

  // ---- memory. Activations live where the backend computes; the pipeline moves host data in
  // and out only through these calls, so the same pipeline drives a CPU or a GPU. The defaults
  // serve backends that compute in host memory with F32 activations.
  // Where activations are allocated (the pipeline builds its arenas on it).
  virtual Allocator& allocator() { return host_memory_; }
  // The dtype activations are computed in (F32 on the CPU, F16 on a GPU).
  virtual DType activation_dtype() const { return DType::F32; }
  // host (contiguous, host memory, F32 or I32) -> dst (this backend's, same shape; F32 data may
  // land in the activation dtype).
  virtual void upload(const Tensor& host, const Tensor& dst);
  // src (this backend's) -> host (contiguous F32 or I32, host memory, same shape). Waits for the
  // work queued before it.
  virtual void download(const Tensor& src, const Tensor& host);
  // Returns once every queued op has finished (for timing stages); a no-op on the host.
  virtual void synchronize() {}

  // ---- the denoising loop's own ops
  // out = x * scale + shift elementwise, with x and out of the same shape in F32 or the
  // activation dtype (either way round). Not in place.
  virtual void convert(const Tensor& x, const Tensor& out, const ConvertArgs& args);
  // A generation's denoising loop over `steps`, the coefficients of every call (which must outlive
  // the loop). The default computes on the host with F32 activations.
  virtual std::unique_ptr<DenoisingLoop> begin_denoising(std::span<const StepCoefficients> steps);

  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) = 0;
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) = 0;
  virtual void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                          const GroupNormArgs& args) = 0;
  virtual void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                          const LayerNormArgs& args) = 0;
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const AttentionArgs& args) = 0;
  // x [..., 2F] -> out [..., F]: first half * gelu(second half) (diffusers GEGLU's chunk order).
  virtual void geglu(const Tensor& x, const Tensor& out) = 0;
  // out = act(x), same shape (Act::None copies); may run in place (out == x).
  virtual void activation(const Tensor& x, const Tensor& out, Act act) = 0;
  virtual void add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) = 0;
  // [B, H, W, C] -> [B, Ho, Wo, C], nearest neighbour exactly as torch's
  // F.interpolate(size=(Ho, Wo), mode="nearest"): output row y reads input row
  // min(floor(y * s), H - 1) with s = float(H) / float(Ho) computed in F32 (columns alike). Ho = 2H
  // is the usual case (s = 0.5 exactly); the UNet asks for its skip's size when an odd size was
  // rounded down on the way in (an image side that is a multiple of 8 but not of 64).
  virtual void upsample_nearest(const Tensor& x, const Tensor& out) = 0;
  // [B, H, W, Ca] ++ [B, H, W, Cb] -> [B, H, W, Ca + Cb] (the UNet's skip concatenation).
  virtual void concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) = 0;
  // ids [B, N] (I32) rows of table [V, C] -> out [B, N, C]; an id outside [0, V) is an error.
  virtual void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;

 private:
  HeapAllocator host_memory_;
};

}  // namespace sdgen
