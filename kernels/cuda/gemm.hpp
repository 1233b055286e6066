// LtGemm: linear and conv2d of the CUDA backend on cuBLASLt (fp16 operands, fp32 accumulation,
// fp16 out), as planned by gemm_plan.hpp; conv2d is im2col + GEMM, the simple path that is right for
// every shape (conv2d_implicit.cuh is the fast one).
//
// It owns what the calls share: the cuBLASLt handle, one device allocation made in the constructor
// (cuBLASLt's workspace, and the scratch for im2col rows and the per-image conv bias), and a cache of
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
#include "kernels/cuda/runtime_api.hpp"

namespace sdgen::cuda {

struct LtGemmOptions {
  // im2col rows and the per-image conv bias. The largest im2col of SD 1.5 at 512x512 px is the VAE
  // decoder's 3x3 conv over 256 channels at full resolution (262144 x 2304 halves, 1.2 GB); 64 MiB
  // runs it as 19 GEMMs of 13,824 rows, each large enough to fill an H100 (by arithmetic, not yet
  // measured). A conv needs at least one im2col row (KH*KW*Cin halves) plus Cout halves.
  std::size_t scratch_bytes = std::size_t(64) << 20;
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

  // Device bytes this object holds (the workspace and scratch), for memory planning and --profile.
  std::size_t workspace_bytes() const;
  // Algorithms chosen so far (one per GemmKey seen).
  std::size_t cached_algorithms() const;

  // Enqueue the op on `stream`. Validate as plan_linear / ConvPlan do (BackendError naming the op
  // and shapes); a cuBLASLt failure, or no algorithm for a shape, is a BackendError too.
  void linear(const GemmLinear& op, cudaStream_t stream);
  void conv2d(const GemmConv2d& op, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdgen::cuda
