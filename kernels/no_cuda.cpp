// Compiled instead of cuda/device_query.cu when sdgen is built without the CUDA backend.
#include "kernels/device_info.hpp"

namespace sdgen {

GpuQuery query_gpus() {
  GpuQuery q;
  q.why_none = "this sdgen was built without CUDA (configure with -DSDGEN_CUDA=ON on a machine with nvcc)";
  return q;
}

}  // namespace sdgen
