// What runs around the cuBLASLt GEMMs of a planned linear or conv2d (gemm_plan.hpp), and in which
// order: the two small kernels the epilogue cannot do, and the loop over a plan's steps.
//
//  * conv_bias_kernel: one image's GEMM bias s * (bias + add_per_channel[b]), computed in fp32 from
//    the 16-bit terms and rounded once to T (cuBLASLt's bias has D's type). Cout threads at most:
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
// Precision: the GEMM rounds its fp32 result to T once; a pass after it reads that 16-bit value,
// applies the activation and adds the residual in fp32, and rounds once more. The CPU backend
// rounds nothing in between; the tests' storage rule accounts for the extra rounding.
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

template <class T>
struct ConvBiasParams {
  GlobalPtr<const T> bias;  // [channels], read unless terms is Add
  GlobalPtr<const T> add;   // [channels], read unless terms is Bias
  GlobalPtr<T> out;         // [channels]
  std::int64_t channels = 0;
  float scale = 1.0f;
};

template <BiasTerms kTerms, class T>
__global__ void __launch_bounds__(kElementwiseThreads) conv_bias_kernel(ConvBiasParams<T> p) {
  for (std::int64_t c = grid_thread_index(); c < p.channels; c += grid_threads()) {
    float v = 0.0f;
    if constexpr (kTerms != BiasTerms::Add) v += to_float(p.bias[c]);
    if constexpr (kTerms != BiasTerms::Bias) v += to_float(p.add[c]);
    p.out[c] = from_float<T>(p.scale * v);
  }
}

enum class RowsResidual { None, Add };

template <class T>
struct RowsEpilogueParams {
  GlobalPtr<T> out;
  GlobalPtr<const T> residual;  // read when RowsResidual::Add
  std::int64_t rows = 0, cols = 0;
  std::int64_t out_row_stride = 0, residual_row_stride = 0;
};

template <Act A, RowsResidual kResidual, int kVec, class T>
__global__ void __launch_bounds__(kElementwiseThreads) rows_epilogue_kernel(RowsEpilogueParams<T> p) {
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

// out[c] = T(scale * (bias[c] + add[c])) for c < channels; bias or add may be absent (a default
// GlobalPtr), not both. out overlaps neither.
template <class T>
struct ConvBiasLaunch {
  GlobalPtr<const T> bias;
  GlobalPtr<const T> add;
  GlobalPtr<T> out;
  std::int64_t channels = 0;
  float scale = 1.0f;
  Stream stream = nullptr;
};

template <class T>
void launch_conv_bias(const ConvBiasLaunch<T>& l) {
  const ConvBiasParams<T> p{.bias = l.bias, .add = l.add, .out = l.out, .channels = l.channels, .scale = l.scale};
  const LaunchConfig config{.grid = elementwise_blocks(l.channels), .block = kElementwiseThreads, .stream = l.stream};
  if (l.add.raw() == nullptr)
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::Bias, T>), config, p);
  else if (l.bias.raw() == nullptr)
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::Add, T>), config, p);
  else
    launch(SDGEN_KERNEL(conv_bias_kernel<BiasTerms::BiasAndAdd, T>), config, p);
}

// out[r, :] = act(out[r, :]) + residual[r, :] over rows x cols (residual optional: a default
// GlobalPtr); unit stride along a row; residual does not overlap out.
template <class T>
struct RowsEpilogueLaunch {
  GlobalPtr<T> out;
  GlobalPtr<const T> residual;
  Act act = Act::None;
  std::int64_t rows = 0, cols = 0;
  std::int64_t out_row_stride = 0, residual_row_stride = 0;
  Stream stream = nullptr;
};

template <class T>
void launch_rows_epilogue(const RowsEpilogueLaunch<T>& l) {
  const bool has_residual = l.residual.raw() != nullptr;
  if (l.rows == 0 || l.cols == 0 || (l.act == Act::None && !has_residual)) return;
  const RowsEpilogueParams<T> p{.out = l.out,
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
        launch(SDGEN_KERNEL(rows_epilogue_kernel<kAct, RowsResidual::Add, kVec, T>), config, p);
      else
        launch(SDGEN_KERNEL(rows_epilogue_kernel<kAct, RowsResidual::None, kVec, T>), config, p);
    });
  });
}

// ---- a plan's launches

namespace gemm_steps_detail {

// A plan's device address as a checked view of `count` elements of T (an empty view for null).
template <class T>
GlobalPtr<const T> elements(const void* p, std::int64_t count, const char* name) {
  if (p == nullptr) return {};
  return GlobalPtr<const T>(static_cast<const T*>(p), std::size_t(count), name);
}
template <class T>
GlobalPtr<T> elements(void* p, std::int64_t count, const char* name) {
  return GlobalPtr<T>(static_cast<T*>(p), std::size_t(count), name);
}

// Elements a rows view spans: the last row need not be followed by its padding.
inline std::int64_t rows_extent(std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  return (rows - 1) * row_stride + cols;
}

}  // namespace gemm_steps_detail

// Runs a planned linear on `stream`, its tensors in the storage format T: gemm(plan.gemm) (which
// must enqueue the GEMM on the same stream), then the pass after it, if any.
template <class T, class Gemm>
void run_linear(const LinearPlan& plan, Stream stream, Gemm&& gemm) {
  using gemm_steps_detail::elements;
  using gemm_steps_detail::rows_extent;
  gemm(plan.gemm);
  if (!plan.pass) return;
  const RowsPass& pass = *plan.pass;
  launch_rows_epilogue<T>(
      {.out = elements<T>(pass.out, rows_extent(pass.rows, pass.cols, pass.out_row_stride), "out"),
       .residual = elements<T>(pass.residual, rows_extent(pass.rows, pass.cols, pass.residual_row_stride), "residual"),
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
template <class T, class Gemm>
void run_conv2d(const ConvPlan& plan, Stream stream, Gemm&& gemm) {
  using gemm_steps_detail::elements;
  const Conv2dGeometry& g = plan.geometry();
  for (std::int64_t i = 0; i < plan.steps(); ++i) {
    const ConvStep step = plan.step(i);
    if (step.bias) {
      const ConvBiasStep& b = *step.bias;
      launch_conv_bias<T>({.bias = elements<T>(b.bias, b.channels, "bias"),
                        .add = elements<T>(b.add, b.channels, "add_per_channel"),
                        .out = elements<T>(b.bias_out, b.channels, "scaled bias"),
                        .channels = b.channels,
                        .scale = b.scale,
                        .stream = stream});
    }
    if (step.im2col) {
      const Im2colStep& s = *step.im2col;
      launch_im2col<T>({.x = elements<T>(s.x, g.batch * g.h * g.w * g.cin, "x"),
                     .col = elements<T>(s.col, s.rows * s.col_row_stride, "im2col"),
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
