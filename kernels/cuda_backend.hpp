// The CUDA backend's public face: a factory, so that app/ and the tests create it without seeing
// a CUDA header, and builds without CUDA still link (kernels/no_cuda.cpp answers with a clear error).
//
// The backend itself (kernels/cuda/cuda_backend.cu) keeps activations and weights in fp16 (or bf16)
// on the device, accumulates in fp32, runs GEMMs and the convolution fallback on cuBLASLt and everything
// else on sdgen's own kernels (kernels/cuda/*.cuh, each tested in emulation in CI).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>

#include "kernels/backend.hpp"

namespace sdgen {

// Whether the denoising loop records one call as a CUDA graph and replays it (the default), or
// enqueues every call's kernels itself: slower by the launches, for finding a fault on a GPU (an
// error inside a replayed graph names no kernel; with CUDA_LAUNCH_BLOCKING=1 an eager launch does).
enum class CudaGraphs { Capture, Off };

struct CudaBackendOptions {
  int device = 0;
  // The 16-bit format of activations and weights: DType::F16, or DType::BF16 (fp32's exponent
  // range, 3 fewer mantissa bits) for models whose activations overflow fp16. Anything else is a
  // BackendError.
  DType storage = DType::F16;
  CudaGraphs graphs = CudaGraphs::Capture;
  // At most this many bytes of device memory for everything the backend allocates (weights,
  // activations, library workspaces): --max-vram. A request past it fails with a
  // DeviceMemoryError, as a real out-of-memory does.
  std::optional<std::size_t> memory_limit;
};

// Throws UsageError when this build has no CUDA or the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options);

}  // namespace sdgen
