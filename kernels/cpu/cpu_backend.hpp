// CpuBackend: the op set of backend.hpp on the CPU, multithreaded, on oneDNN.
//
// Which library does what, measured on this machine (docs/benchmarks.md has the figures):
//  * linear and conv2d: oneDNN matmul / convolution with the fused epilogue as post-ops (bias,
//    activation, residual, output scale). oneDNN's brgemm kernels reach 360-440 GFLOP/s in fp32 on
//    2 cores and its AMX kernels 1-3.5 TFLOP/s in bf16; OpenBLAS sgemm reaches 220-350 GFLOP/s and
//    Debian's build has no bf16 GEMM, so OpenBLAS is not used.
//  * attention: tiled, online softmax, two oneDNN matmuls per tile (attention.cpp).
//  * norms and elementwise ops: our own OpenMP loops on 16-lane vectors (vec.hpp): they are
//    memory-bound, and a fused loop (GroupNorm + SiLU) reads the tensor once less than oneDNN's
//    separate primitives would.
//
// Precision (CpuBackendOptions::compute):
//  * F32 (the reference): everything in fp32.
//  * BF16 (for AVX512-BF16 / AMX CPUs): linear and conv weights are stored in bf16 (prepare_weight
//    converts them), the inputs of linear, conv2d and attention's two matmuls are rounded to bf16,
//    and every product is accumulated in fp32. Activations stay fp32 in memory, so norms,
//    softmax statistics and elementwise ops are fp32, as in PyTorch's bf16 autocast.
//
// Threads: one OpenMP pool (the runtime oneDNN uses), `threads` wide for every op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/backend.hpp"
#include "kernels/op_checks.hpp"

namespace sdgen {

namespace cpu {
class Context;
}  // namespace cpu

struct CpuBackendOptions {
  int threads = 0;             // 0: every core the process may use
  DType compute = DType::F32;  // F32, or BF16 (needs AVX512-BF16; refused otherwise)
};

// What the backend holds and has done, for --profile and the benchmarks.
struct CpuBackendStats {
  std::size_t prepared_weight_bytes = 0;
  std::size_t scratch_bytes = 0;
  std::int64_t repacks = 0;     // prepared weights re-laid out because a primitive wanted another layout
  std::int64_t primitives = 0;  // oneDNN primitives created so far
};

class CpuBackend final : public Backend {
 public:
  // Throws UsageError for a negative thread count, a compute dtype other than F32/BF16, or BF16 on
  // a CPU without AVX512-BF16.
  explicit CpuBackend(const CpuBackendOptions& options = {});
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  // What this backend accepts, for a ShapeBackend that plans for it.
  static OpSupport op_support();

  int threads() const;
  DType compute() const;
  CpuBackendStats stats() const;

  std::string_view name() const override { return "cpu"; }
  // Packs a Linear [N, K] or Conv2d OHWI weight (F32, F16 or BF16) into the blocked layout
  // oneDNN's kernels read, in the compute dtype. The result is Layout::Packed.
  Tensor prepare_weight(const Tensor& w, WeightUse use) override;
  std::size_t held_bytes() const override;
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

 private:
  std::unique_ptr<cpu::Context> ctx_;
};

}  // namespace sdgen
