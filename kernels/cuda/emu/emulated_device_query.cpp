// query_gpus for the emulated CUDA backend: one device, the emulator, with the capacity the
// emulated runtime enforces (SDGEN_EMULATED_GPU_MEMORY, host_runtime.hpp). Its name says what it
// is wherever sdgen prints it, so an emulated figure is never mistaken for a GPU's.
#include "kernels/cuda/emu/host_runtime.hpp"
#include "kernels/device_info.hpp"

namespace sdgen {

GpuQuery query_gpus() {
  GpuQuery q;
  q.cuda_built = true;
  int multiprocessors = 0;
  cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0);
  q.gpus.push_back(GpuInfo{.index = 0,
                           .name = "sdgen CUDA emulator (CPU)",
                           .compute_major = 8,
                           .compute_minor = 0,
                           .total_memory_bytes = cuda::emu::device_memory_capacity(),
                           .multiprocessors = multiprocessors});
  return q;
}

}  // namespace sdgen
