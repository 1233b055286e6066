// LtGemm (gemm.hpp) for the emulation build: the plans and their kernels exactly as gemm.cu runs
// them (plan_linear / ConvPlan, run_linear / run_conv2d), each GemmCall queued on the stream as
// host_gemm, a host loop with cuBLASLt's contract. Its memory is taken as gemm.cu takes it (one
// cudaMalloc of cuBLASLt's workspace), so the backend's accounting is the GPU's.
// What is not emulated is cuBLASLt itself: its descriptors, its heuristic and its kernels are tested
// on a GPU only (tests/cuda_kernels/gemm_gpu_test.cu).
#include "kernels/cuda/emu/emulated_gemm.hpp"

#include <cmath>
#include <cstdint>
#include <memory>
#include <unordered_set>

#include "kernels/cuda/emu/host_runtime.hpp"
#include "kernels/cuda/gemm.hpp"
#include "kernels/cuda/gemm_steps.cuh"
#include "lib/core/half.hpp"

namespace sdgen::cuda {

namespace emu {

void host_gemm(const GemmCall& call, DType storage) {
  const GemmKey& key = call.key;
  if (storage != DType::F16 && storage != DType::BF16)
    throw BackendError(cat("host_gemm: ", dtype_name(storage), " is not a 16-bit storage format"));
  const bool bf16 = storage == DType::BF16;
  const auto value = [bf16](std::uint16_t bits) { return bf16 ? bf16_to_f32(bits) : f16_to_f32(bits); };
  const auto stored = [bf16](float v) { return bf16 ? f32_to_bf16(v) : f32_to_f16(v); };
  const auto* a = static_cast<const std::uint16_t*>(call.a);
  const auto* w = static_cast<const std::uint16_t*>(call.w);
  const auto* c = static_cast<const std::uint16_t*>(call.c);
  const auto* bias = static_cast<const std::uint16_t*>(call.bias);
  auto* out = static_cast<std::uint16_t*>(call.out);
  const bool has_bias = key.epilogue == GemmEpilogue::Bias || key.epilogue == GemmEpilogue::GeluTanhBias;
  const bool gelu = key.epilogue == GemmEpilogue::GeluTanh || key.epilogue == GemmEpilogue::GeluTanhBias;
  if ((key.c == GemmC::Residual) != (c != nullptr) || has_bias != (bias != nullptr))
    throw BackendError("host_gemm: the call's C or bias pointer disagrees with its key");
  std::vector<float> row(static_cast<std::size_t>(key.k));
  for (std::int64_t i = 0; i < key.m; ++i) {
    for (std::int64_t k = 0; k < key.k; ++k) row[std::size_t(k)] = value(a[i * key.a_row_stride + k]);
    for (std::int64_t j = 0; j < key.n; ++j) {
      float acc = 0.0f;
      const std::uint16_t* wj = w + j * key.k;
      for (std::int64_t k = 0; k < key.k; ++k) acc += row[std::size_t(k)] * value(wj[k]);
      float v = call.alpha * acc;
      if (c) v += call.beta * value(c[i * key.c_row_stride + j]);
      if (has_bias) v += value(bias[j]);
      if (gelu) v = 0.5f * v * (1.0f + std::tanh(0.79788456f * (v + 0.044715f * v * v * v)));
      out[i * key.out_row_stride + j] = stored(v);
    }
  }
}

}  // namespace emu

namespace {


struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

}  // namespace

struct LtGemm::Impl {
  std::unique_ptr<void, CudaFree> memory;  // stands for cuBLASLt's workspace
  std::size_t workspace_bytes = 0;
  DType storage = DType::F16;
  std::unordered_set<GemmKey, GemmKeyHash> keys;  // what gemm.cu would hold an algorithm for

  explicit Impl(const LtGemmOptions& options)
      : workspace_bytes(options.cublaslt_workspace_bytes), storage(options.storage) {
    with_storage_type(storage, [](auto) {});  // refuses anything but F16 and BF16
    void* p = nullptr;
    if (workspace_bytes > 0 && cudaMalloc(&p, workspace_bytes) != cudaSuccess) {
      cudaGetLastError();
      throw BackendError(
          cat("LtGemm: allocating ", workspace_bytes, " bytes of cuBLASLt workspace failed: out of memory"));
    }
    memory.reset(p);
  }

  void matmul(const GemmCall& call, cudaStream_t stream) {
    keys.insert(call.key);
    emu::enqueue(stream, "cublasLtMatmul (emulated)", [call, storage = storage] { emu::host_gemm(call, storage); });
  }
};

LtGemm::LtGemm(const LtGemmOptions& options) : impl_(std::make_unique<Impl>(options)) {}

LtGemm::~LtGemm() = default;

std::size_t LtGemm::workspace_bytes() const { return impl_->workspace_bytes; }

std::size_t LtGemm::cached_algorithms() const { return impl_->keys.size(); }

void LtGemm::linear(const GemmLinear& op, cudaStream_t stream) {
  with_storage_type(impl_->storage, [&](auto t) {
    run_linear<decltype(t)>(plan_linear(op), stream, [&](const GemmCall& call) { impl_->matmul(call, stream); });
  });
}

void LtGemm::conv2d(const GemmConv2d& op, const GemmScratch& scratch, cudaStream_t stream) {
  with_storage_type(impl_->storage, [&](auto t) {
    run_conv2d<decltype(t)>(ConvPlan(op, scratch), stream, [&](const GemmCall& call) { impl_->matmul(call, stream); });
  });
}

}  // namespace sdgen::cuda
