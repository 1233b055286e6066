// LtGemm: linear and conv2d of the CUDA backend on cuBLASLt (16-bit operands, fp16 or bf16 as the
// backend stores them, fp32 accumulation, the same 16-bit format out), as planned by gemm_plan.hpp; conv2d is im2col + GEMM, the simple path that is right for
// every shape (conv2d_implicit.cuh is the fast one).
//
// It owns what the calls share: the cuBLASLt handle, cuBLASLt's workspace (allocated in the
// constructor), and a cache of
// cuBLASLt algorithms and descriptors per GemmKey (sizes, strides, epilogue, C, alignments), filled
// by cublasLtMatmulAlgoGetHeuristic the first time a key is seen. Nothing is allocated on the device
// after construction, and every call only enqueues work on the given stream, so the calls can be
// captured into a CUDA graph once each key has been seen (the heuristic itself enqueues nothing).
//
// Not thread-safe: one LtGemm per stream-issuing thread, as the backend has.
#pragma once


#include <cstddef>
#include <memory>

#include "kernels/cuda/gemm_plan.hpp"
#include "lib/core/dtype.hpp"
#include "kernels/cuda/runtime_api.hpp"

namespace sdgen::cuda {

struct LtGemmOptions {
  // The format of every operand, bias and output: DType::F16 or DType::BF16.
  DType storage = DType::F16;
  // cuBLASLt's own workspace (split-K and stream-K reductions): 32 MiB is what NVIDIA recommends
  // for Hopper.
  std::size_t cublaslt_workspace_bytes = std::size_t(32) << 20;
};

class LtGemm {
 public:
  // Creates the cuBLASLt handle and allocates the workspace on the current device; throws
  // BackendError when either fails.
  explicit LtGemm(const LtGemmOptions& options = {});
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Device bytes this object holds (cuBLASLt's workspace), for memory planning and --profile.
  std::size_t workspace_bytes() const;
  // Algorithms chosen so far (one per GemmKey seen).
  std::size_t cached_algorithms() const;

  // Enqueue the op on `stream`. Validate as plan_linear / ConvPlan do (BackendError naming the op
  // and shapes); a cuBLASLt failure, or no algorithm for a shape, is a BackendError too. A conv2d
  // runs its im2col rows and scaled bias in the caller's `scratch` (conv2d_gemm_scratch_bytes asks
  // for enough to run it in one GEMM per segment; less runs it in chunks), which it may use until
  // the work enqueued here has run.
  void linear(const GemmLinear& op, cudaStream_t stream);
  void conv2d(const GemmConv2d& op, const GemmScratch& scratch, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdgen::cuda
