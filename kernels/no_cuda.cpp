// Compiled instead of the CUDA backend (cuda/device_query.cu, cuda/cuda_backend.cu) when sdgen is
// built without CUDA: the same functions, answering that there is no GPU.
#include "kernels/cuda_backend.hpp"
#include "kernels/device_info.hpp"

namespace sdgen {

GpuQuery query_gpus() {
  GpuQuery q;
  q.why_none = "this sdgen was built without CUDA (configure with -DSDGEN_CUDA=ON on a machine with nvcc)";
  return q;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions&) {
  throw UsageError(cat("--device cuda: ", query_gpus().why_none));
}

}  // namespace sdgen
