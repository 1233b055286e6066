// Device discovery through the CUDA runtime. The only CUDA code so far; the kernels of the CUDA
// backend join this folder. A missing driver or GPU is reported as an empty list with the runtime's
// reason, because the same binary must run on machines without a GPU.
#include <cuda_runtime.h>

#include "kernels/device_info.hpp"

namespace sdgen {

GpuQuery query_gpus() {
  GpuQuery q;
  q.cuda_built = true;
  cudaRuntimeGetVersion(&q.runtime_version);
  cudaDriverGetVersion(&q.driver_version);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    q.why_none = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return q;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    q.gpus.push_back(GpuInfo{.index = i,
                             .name = prop.name,
                             .compute_major = prop.major,
                             .compute_minor = prop.minor,
                             .total_memory_bytes = prop.totalGlobalMem,
                             .multiprocessors = prop.multiProcessorCount});
  }
  if (q.gpus.empty()) q.why_none = "the CUDA runtime reports no devices";
  return q;
}

}  // namespace sdgen
