// ReferenceBackend: the op set of kernels/backend.hpp as plain loops, for tests only.
//
// Why it exists. The CUDA kernels are checked against an fp32 answer computed on the host. That
// answer used to come from CpuBackend, which has two drawbacks as a yardstick: it needs oneDNN and
// OpenMP, which a bare GPU host may not have (the GPU tests must build and run there), and it is
// itself an optimised implementation (blocked GEMMs, tiled online softmax, vectorised polynomial
// exp and erf), so a kernel and the thing it is compared with could share a misreading of the
// contract. This backend is each op's definition in backend.hpp (torch's formulas) written as the
// obvious loop, reading tensors through the strides the contract allows, and nothing else: no
// blocking, no threads, no vector math, no oneDNN.
//
// Precision. Arithmetic ops accumulate and evaluate in double (libm's exp, erf, tanh, sin, cos) and
// round once when they store F32, so each result is the exact value of the definition to within
// about one fp32 rounding (2^-24 relative) plus double's own error (2^-53 per operation, times
// the terms of a sum): far below any fp32 or fp16 kernel's error, which is what lets a test treat
// the difference as the kernel's. Two exceptions are part of the contract itself and are followed
// as written: upsample_nearest's source index uses torch's F32 scale, and timestep_embedding
// computes its exponent, frequency and argument in F32 in torch's order (at t = 999 the argument's
// rounding moves a sine by about 1e-4, which torch's output contains). Pure data movement (concat,
// embedding, nearest upsampling, Act::None) copies floats exactly.
//
// What it accepts: F32 activations, parameters and weights on the CPU, weights strided (the OHWI /
// [out, in] layouts of backend.hpp). Arguments are validated with the shared checks of
// kernels/op_checks.hpp, so it rejects exactly what every backend rejects, with the same message;
// prepare_weight checks and keeps w (nothing is packed), and shape_only() is a ShapeBackend with
// the same support. The memory and step ops (allocator, upload, download, convert,
// scheduler_step) are Backend's host defaults (kernels/backend.cpp), plain loops already, shared
// with CpuBackend. It is slow (a 3x3 convolution at [2, 64, 64, 320] takes seconds): use it on
// test-sized inputs.
#pragma once

#include <memory>
#include <string_view>

#include "kernels/backend.hpp"
#include "kernels/op_checks.hpp"

namespace sdgen::test {

class ReferenceBackend final : public Backend {
 public:
  // F32 everywhere, on the CPU.
  static OpSupport op_support();

  std::string_view name() const override { return "reference"; }
  Tensor prepare_weight(const Tensor& w, WeightUse use) override;
  std::unique_ptr<Backend> shape_only() const override;

  void linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) override;
  void conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) override;
  void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const GroupNormArgs& args) override;
  void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const LayerNormArgs& args) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 const AttentionArgs& args) override;
  void geglu(const Tensor& x, const Tensor& out) override;
  void activation(const Tensor& x, const Tensor& out, Act act) override;
  void add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) override;
  void upsample_nearest(const Tensor& x, const Tensor& out) override;
  void concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) override;
  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
};

// An activation of backend.hpp's Act at one point, in double: what every op with an `act` applies.
double reference_act(Act act, double x);

}  // namespace sdgen::test
