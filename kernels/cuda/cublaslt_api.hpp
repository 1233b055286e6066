// cuBLASLt, opened when the CUDA backend first needs it rather than linked into sdgen.
//
// libcublasLt is a 540 MB library. Linked, the dynamic loader maps and relocates it at every start,
// which costs about 200 MB of resident memory (measured: a CPU run of the tiny model went from
// 39 MB to 243 MB peak RSS) and would put the CPU backend's bf16 run over its 3.0 GB budget. So
// only the functions LtGemm calls are looked up, with dlopen/dlsym, the first time an LtGemm is
// built; a run on the CPU never touches the library. The types and constants still come from
// <cublasLt.h>, so the calls are checked against the header sdgen was built with.
#pragma once

#include <cublasLt.h>

namespace sdgen::cuda {

struct CublasLtApi {
  decltype(&::cublasLtCreate) create;
  decltype(&::cublasLtDestroy) destroy;
  decltype(&::cublasLtGetStatusString) get_status_string;
  decltype(&::cublasLtMatmul) matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) algo_get_heuristic;
  decltype(&::cublasLtMatmulDescCreate) desc_create;
  decltype(&::cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&::cublasLtMatmulDescSetAttribute) desc_set_attribute;
  decltype(&::cublasLtMatmulPreferenceCreate) preference_create;
  decltype(&::cublasLtMatmulPreferenceDestroy) preference_destroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) preference_set_attribute;
  decltype(&::cublasLtMatrixLayoutCreate) layout_create;
  decltype(&::cublasLtMatrixLayoutDestroy) layout_destroy;
};

// The library's functions, loaded on the first call (thread-safe). Throws BackendError naming the
// library and what dlopen said when it cannot be loaded or lacks a function.
const CublasLtApi& cublaslt();

}  // namespace sdgen::cuda
