// What runs around the cuBLASLt GEMMs of a planned linear or conv2d (gemm_plan.hpp), and in which
// order: the two small kernels the epilogue cannot do, and the loop over a plan's steps.
//
//  * conv_bias_kernel: one image's GEMM bias s * (bias + add_per_channel[b]), computed in fp32 from
//    the fp16 terms and rounded once to fp16 (cuBLASLt's bias has D's type). Cout threads at most:
//    its cost is the launch.
//  * rows_epilogue_kernel: out = act(out) + residual over the output rows, for the activations
//    cuBLASLt cannot apply (it has tanh-GELU only) and for a residual that must come after the
//    activation (C is added before it). One read-modify-write of out (and a read of the residual)
//    instead of an activation pass and an add pass; rows with any stride, as linear's out and
//    residual may be column slices of wider buffers. Vector access and the grid-stride loop are
//    elementwise.cuh's (8 halves per access when the columns, both row strides and both pointers
//    allow it, else 1); the activation formulas are its activate<A>.
//  * run_linear / run_conv2d: a plan's launches in order on one stream, with the GEMM itself left to
//    the caller: cuBLASLt in kernels/cuda/gemm.cu, a host loop with cuBLASLt's contract in the
//    emulation test (tests/cuda_kernels/gemm_emulated_test.cpp), which so checks every launch and
//    every pointer of the plan on the CPU.
//
// Precision: the GEMM rounds its fp32 result to fp16 once; a pass after it reads that fp16 value,
// applies the activation and adds the residual in fp32, and rounds once more. The CPU backend
// rounds nothing in between; the tests' fp16 rule accounts for the extra rounding.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/cuda/device_api.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemm_plan.hpp"
#include "kernels/cuda/im2col.cuh"

namespace sdgen::cuda {

// ---- kernels

enum class BiasTerms { Bias, Add, BiasAndAdd };

struct ConvBiasParams {
  GlobalPtr<const __half> bias;  // [channels], read unless terms is Add
  GlobalPtr<const __half> add;   // [channels], read unless terms is Bias
  GlobalPtr<__half> out;         // [channels]
  std::int64_t channels = 0;
  float scale = 1.0f;
};

template <BiasTerms kTerms>
__global__ void __launch_bounds__(kElementwiseThreads) conv_bias_kernel(ConvBiasParams p) {
  for (std::int64_t c = grid_thread_index(); c < p.channels; c += grid_threads()) {
    float v = 0.0f;
    if constexpr (kTerms != BiasTerms::Add) v += __half2float(p.bias[c]);
    if constexpr (kTerms != BiasTerms::Bias) v += __half2float(p.add[c]);
    p.out[c] = __float2half(p.scale * v);
  }
}

enum class RowsResidual { None, Add };

struct RowsEpilogueParams {
  GlobalPtr<__half> out;
  GlobalPtr<const __half> residual;  // read when RowsResidual::Add
  std::int64_t rows = 0, cols = 0;
  std::int64_t out_row_stride = 0, residual_row_stride = 0;
};

template <Act A, RowsResidual kResidual, int kVec>
__global__ void __launch_bounds__(kElementwiseThreads) rows_epilogue_kernel(RowsEpilogueParams p) {
  const std::int64_t per_row = p.cols / kVec;  // kVec divides cols on the vector path
  const std::int64_t items = p.rows * per_row;
  for (std::int64_t item = grid_thread_index(); item < items; item += grid_threads()) {
    const std::int64_t r = item / per_row;
    const std::int64_t c = (item - r * per_row) * kVec;
    float v[kVec];
    load_halves<kVec>(p.out, r * p.out_row_stride + c, v);
    for (int k = 0; k < kVec; ++k) v[k] = activate<A>(v[k]);
    if constexpr (kResidual == RowsResidual::Add) {
      float res[kVec];
      load_halves<kVec>(p.residual, r * p.residual_row_stride + c, res);
      for (int k = 0; k < kVec; ++k) v[k] += res[k];
    }
    store_halves<kVec>(p.out, r * p.out_row_stride + c, v);
  }
}

// ---- launchers

// out[c] = fp16(scale * (bias[c] + add[c])) for c < channels; bias or add may be absent (a default
// GlobalPtr), not both. out overlaps neither.
struct ConvBiasLaunch {
  GlobalPtr<const __half> bias;
  GlobalPtr<const __half> add;
  GlobalPtr<__half> out;
  std::int64_t channels = 0;
  float scale = 1.0f;
  Stream stream = nullptr;
};

inline void launch_conv_bias(const ConvBiasLaunch& l) {
  const ConvBiasParams p{.bias = l.bias, .add = l.add, .out = l.out, .channels = l.channels, .scale = l.scale};
  const LaunchConfig config{.grid = elementwise_blocks(l.channels), .block = kElementwiseThreads, .stream = l.stream};
  if (l.add.raw() == nullptr)
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::Bias>), config, p);
  else if (l.bias.raw() == nullptr)
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::Add>), config, p);
  else
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::BiasAndAdd>), config, p);
}

// out[r, :] = act(out[r, :]) + residual[r, :] over rows x cols (residual optional: a default
// GlobalPtr); unit stride along a row; residual does not overlap out.
struct RowsEpilogueLaunch {
  GlobalPtr<__half> out;
  GlobalPtr<const __half> residual;
  Act act = Act::None;
  std::int64_t rows = 0, cols = 0;
  std::int64_t out_row_stride = 0, residual_row_stride = 0;
  Stream stream = nullptr;
};

inline void launch_rows_epilogue(const RowsEpilogueLaunch& l) {
  const bool has_residual = l.residual.raw() != nullptr;
  if (l.rows == 0 || l.cols == 0 || (l.act == Act::None && !has_residual)) return;
  const RowsEpilogueParams p{.out = l.out,
                             .residual = l.residual,
                             .rows = l.rows,
                             .cols = l.cols,
                             .out_row_stride = l.out_row_stride,
                             .residual_row_stride = l.residual_row_stride};
  // Every row start of out (and of the residual) must land on a 16-byte boundary.
  const bool vectors = l.cols % kHalvesPerVector == 0 && l.out_row_stride % kHalvesPerVector == 0 &&
                       vector_aligned(l.out) &&
                       (!has_residual || (l.residual_row_stride % kHalvesPerVector == 0 && vector_aligned(l.residual)));
  with_vector_width(vectors, [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    with_act(l.act, [&](auto act) {
      constexpr Act kAct = decltype(act)::value;
      const LaunchConfig config{
          .grid = elementwise_blocks(l.rows * (l.cols / kVec)), .block = kElementwiseThreads, .stream = l.stream};
      if (has_residual)
        launch(SDGEN_KERNEL(rows_epilogue_kernel<kAct, RowsResidual::Add, kVec>), config, p);
      else
        launch(SDGEN_KERNEL(rows_epilogue_kernel<kAct, RowsResidual::None, kVec>), config, p);
    });
  });
}

// ---- a plan's launches

namespace gemm_steps_detail {

// A plan's device address as a checked view of `count` halves (an empty view for null).
inline GlobalPtr<const __half> halves(const void* p, std::int64_t count, const char* name) {
  if (p == nullptr) return {};
  return GlobalPtr<const __half>(static_cast<const __half*>(p), std::size_t(count), name);
}
inline GlobalPtr<__half> halves(void* p, std::int64_t count, const char* name) {
  return GlobalPtr<__half>(static_cast<__half*>(p), std::size_t(count), name);
}

// Elements a rows view spans: the last row need not be followed by its padding.
inline std::int64_t rows_extent(std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  return (rows - 1) * row_stride + cols;
}

}  // namespace gemm_steps_detail

// Runs a planned linear on `stream`: gemm(plan.gemm) (which must enqueue the GEMM on the same
// stream), then the pass after it, if any.
template <class Gemm>
void run_linear(const LinearPlan& plan, Stream stream, Gemm&& gemm) {
  using gemm_steps_detail::halves;
  using gemm_steps_detail::rows_extent;
  gemm(plan.gemm);
  if (!plan.pass) return;
  const RowsPass& pass = *plan.pass;
  launch_rows_epilogue(
      {.out = halves(pass.out, rows_extent(pass.rows, pass.cols, pass.out_row_stride), "out"),
       .residual = halves(pass.residual, rows_extent(pass.rows, pass.cols, pass.residual_row_stride), "residual"),
       .act = pass.act,
       .rows = pass.rows,
       .cols = pass.cols,
       .out_row_stride = pass.out_row_stride,
       .residual_row_stride = pass.residual_row_stride,
       .stream = stream});
}

// Runs a planned conv2d on `stream`, step by step: the scaled bias and the im2col rows a GEMM needs,
// then gemm(step.gemm) (which must enqueue the GEMM on the same stream: the next step reuses the
// scratch).
template <class Gemm>
void run_conv2d(const ConvPlan& plan, Stream stream, Gemm&& gemm) {
  using gemm_steps_detail::halves;
  const Conv2dGeometry& g = plan.geometry();
  for (std::int64_t i = 0; i < plan.steps(); ++i) {
    const ConvStep step = plan.step(i);
    if (step.bias) {
      const ConvBiasStep& b = *step.bias;
      launch_conv_bias({.bias = halves(b.bias, b.channels, "bias"),
                        .add = halves(b.add, b.channels, "add_per_channel"),
                        .out = halves(b.bias_out, b.channels, "scaled bias"),
                        .channels = b.channels,
                        .scale = b.scale,
                        .stream = stream});
    }
    if (step.im2col) {
      const Im2colStep& s = *step.im2col;
      launch_im2col({.x = halves(s.x, g.batch * g.h * g.w * g.cin, "x"),
                     .col = halves(s.col, s.rows * s.col_row_stride, "im2col"),
                     .geometry = g,
                     .row0 = s.row0,
                     .rows = s.rows,
                     .col_row_stride = s.col_row_stride,
                     .stream = stream});
    }
    gemm(step.gemm);
  }
}

}  // namespace sdgen::cuda
