// Loads cuBLASLt at run time (see cublaslt_api.hpp).
#include "kernels/cuda/cublaslt_api.hpp"

#include <dlfcn.h>

#include <string>

#include "lib/core/error.hpp"

namespace sdgen::cuda {

namespace {

// The soname of the major version sdgen was compiled against: its ABI is the header's.
const std::string kLibrary = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);

template <class F>
void bind(void* library, F& function, const char* name) {
  void* symbol = dlsym(library, name);
  if (symbol == nullptr) throw BackendError(cat(kLibrary, " has no ", name, " (", dlerror(), ")"));
  function = reinterpret_cast<F>(symbol);
}

CublasLtApi load() {
  // Never closed: the functions are used until the process ends.
  void* library = dlopen(kLibrary.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr)
    throw BackendError(cat("cannot load ", kLibrary, " (cuBLASLt, part of the CUDA toolkit): ", dlerror()));
  CublasLtApi api{};
  bind(library, api.create, "cublasLtCreate");
  bind(library, api.destroy, "cublasLtDestroy");
  bind(library, api.get_status_string, "cublasLtGetStatusString");
  bind(library, api.matmul, "cublasLtMatmul");
  bind(library, api.algo_get_heuristic, "cublasLtMatmulAlgoGetHeuristic");
  bind(library, api.desc_create, "cublasLtMatmulDescCreate");
  bind(library, api.desc_destroy, "cublasLtMatmulDescDestroy");
  bind(library, api.desc_set_attribute, "cublasLtMatmulDescSetAttribute");
  bind(library, api.preference_create, "cublasLtMatmulPreferenceCreate");
  bind(library, api.preference_destroy, "cublasLtMatmulPreferenceDestroy");
  bind(library, api.preference_set_attribute, "cublasLtMatmulPreferenceSetAttribute");
  bind(library, api.layout_create, "cublasLtMatrixLayoutCreate");
  bind(library, api.layout_destroy, "cublasLtMatrixLayoutDestroy");
  return api;
}

}  // namespace

const CublasLtApi& cublaslt() {
  static const CublasLtApi api = load();
  return api;
}

}  // namespace sdgen::cuda
