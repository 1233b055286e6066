// LtGemm (gemm.hpp): a GemmCall of gemm_plan.hpp as one cublasLtMatmul, and the plans' steps in
// order (gemm_steps.cuh).
//
// The mapping (see gemm_plan.hpp): cuBLASLt is column-major, so the row-major out[m, n] =
// a[m, k] w[n, k]^T is computed as out^T = op_T(w) a^T with A = w stored k x n (ld k), B = a stored
// k x m (ld = a's row stride), and C, D stored n x m (ld = their row strides); the bias then has
// D's n rows, one per output feature. Compute type fp32 with fp32 alpha/beta; operands, bias and
// output in the 16-bit format of LtGemmOptions::storage (CUDA_R_16F or CUDA_R_16BF).
//
// Per GemmKey the cache holds the matmul descriptor, the four layouts and the algorithm the
// heuristic ranked first under this object's workspace size and the key's alignments; a call then
// only sets the bias pointer on the cached descriptor (cuBLASLt reads descriptors when the matmul
// is enqueued) and enqueues. The first algorithm is taken as ranked: timing the candidates would
// need a synchronising benchmark at the first call (and a GPU to tune on), which this simple path
// does not do.
#include "kernels/cuda/gemm.hpp"

#include <cublasLt.h>

#include <string>
#include <type_traits>
#include <unordered_map>

#include "kernels/cuda/cublaslt_api.hpp"
#include "kernels/cuda/gemm_steps.cuh"
#include "lib/core/error.hpp"

namespace sdgen::cuda {

namespace {

void check_cuda(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw BackendError(cat("LtGemm: ", what, " failed: ", cudaGetErrorString(err)));
}

std::string_view epilogue_name(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::Default: return "none";
    case GemmEpilogue::Bias: return "bias";
    case GemmEpilogue::GeluTanh: return "gelu_tanh";
    case GemmEpilogue::GeluTanhBias: return "bias + gelu_tanh";
  }
  return "?";
}

// "[77, 768] x [3072, 768]^T (row strides 768 / 3072, epilogue bias + gelu_tanh, + C)", for messages.
std::string describe(const GemmKey& key) {
  return cat("[", key.m, ", ", key.k, "] x [", key.n, ", ", key.k, "]^T (row strides ", key.a_row_stride, " / ",
             key.out_row_stride, ", epilogue ", epilogue_name(key.epilogue), key.c == GemmC::Residual ? ", + C" : "",
             ")");
}

void check_lt(cublasStatus_t status, const char* what, const GemmKey& key) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw BackendError(
        cat("cuBLASLt ", what, " failed for the GEMM ", describe(key), ": ", cublaslt().get_status_string(status)));
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::Default: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::GeluTanh: return CUBLASLT_EPILOGUE_GELU;
    case GemmEpilogue::GeluTanhBias: return CUBLASLT_EPILOGUE_GELU_BIAS;
  }
  throw BackendError(cat("LtGemm: unknown epilogue ", static_cast<int>(e)));
}

bool has_bias(GemmEpilogue e) { return e == GemmEpilogue::Bias || e == GemmEpilogue::GeluTanhBias; }

// cuBLASLt's opaque objects, released by their destroy functions.
template <class H, auto Destroy>
struct LtDestroy {
  void operator()(H h) const { (cublaslt().*Destroy)(h); }
};
template <class H, auto Destroy>
using LtOwned = std::unique_ptr<std::remove_pointer_t<H>, LtDestroy<H, Destroy>>;

using HandleOwned = LtOwned<cublasLtHandle_t, &CublasLtApi::destroy>;
using MatmulDescOwned = LtOwned<cublasLtMatmulDesc_t, &CublasLtApi::desc_destroy>;
using LayoutOwned = LtOwned<cublasLtMatrixLayout_t, &CublasLtApi::layout_destroy>;
using PreferenceOwned = LtOwned<cublasLtMatmulPreference_t, &CublasLtApi::preference_destroy>;

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

cudaDataType_t lt_type(DType storage) { return storage == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F; }

LayoutOwned storage_layout(DType storage, std::int64_t rows, std::int64_t cols, std::int64_t ld, const GemmKey& key) {
  cublasLtMatrixLayout_t layout = nullptr;
  check_lt(cublaslt().layout_create(&layout, lt_type(storage), static_cast<std::uint64_t>(rows),
                                      static_cast<std::uint64_t>(cols), ld),
           "cublasLtMatrixLayoutCreate", key);
  return LayoutOwned(layout);
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value, const GemmKey& key) {
  check_lt(cublaslt().desc_set_attribute(desc, attribute, &value, sizeof(value)), "cublasLtMatmulDescSetAttribute",
           key);
}

template <class T>
void set_preference(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute, const T& value,
                    const GemmKey& key) {
  check_lt(cublaslt().preference_set_attribute(pref, attribute, &value, sizeof(value)),
           "cublasLtMatmulPreferenceSetAttribute", key);
}

// Everything a key's calls share.
struct Prepared {
  MatmulDescOwned desc;
  LayoutOwned w, a, c, out;  // cuBLASLt's A, B, C and D
  cublasLtMatmulAlgo_t algo{};
};

}  // namespace

struct LtGemm::Impl {
  HandleOwned handle;
  std::unique_ptr<void, CudaFree> memory;  // cuBLASLt's workspace
  std::size_t workspace_bytes = 0;
  DType storage = DType::F16;
  std::unordered_map<GemmKey, Prepared, GemmKeyHash> cache;

  explicit Impl(const LtGemmOptions& options)
      : workspace_bytes(options.cublaslt_workspace_bytes), storage(options.storage) {
    with_storage_type(storage, [](auto) {});  // refuses anything but F16 and BF16
    cublasLtHandle_t h = nullptr;
    const cublasStatus_t status = cublaslt().create(&h);
    if (status != CUBLAS_STATUS_SUCCESS)
      throw BackendError(cat("LtGemm: cublasLtCreate failed: ", cublaslt().get_status_string(status)));
    handle.reset(h);
    void* p = nullptr;
    if (workspace_bytes > 0)
      check_cuda(cudaMalloc(&p, workspace_bytes), cat("allocating ", workspace_bytes, " bytes of cuBLASLt workspace"));
    memory.reset(p);
  }


  // The cached descriptor and algorithm for call.key, asking the heuristic on a key's first call.
  Prepared& prepare(const GemmCall& call) {
    const GemmKey& key = call.key;
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    Prepared p;
    cublasLtMatmulDesc_t desc = nullptr;
    check_lt(cublaslt().desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", key);
    p.desc.reset(desc);
    set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, key);
    set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, key);
    set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, lt_epilogue(key.epilogue), key);
    // The heuristic reads the bias pointer's alignment from the descriptor: any of this key's calls
    // has the key's alignment.
    if (has_bias(key.epilogue)) set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, call.bias, key);
    p.w = storage_layout(storage, key.k, key.n, key.k, key);
    p.a = storage_layout(storage, key.k, key.m, key.a_row_stride, key);
    p.out = storage_layout(storage, key.n, key.m, key.out_row_stride, key);
    if (key.c == GemmC::Residual) p.c = storage_layout(storage, key.n, key.m, key.c_row_stride, key);

    cublasLtMatmulPreference_t pref_raw = nullptr;
    check_lt(cublaslt().preference_create(&pref_raw), "cublasLtMatmulPreferenceCreate", key);
    const PreferenceOwned pref(pref_raw);
    const std::uint64_t workspace = workspace_bytes;
    set_preference(pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace, key);
    set_preference(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.alignment.w, key);
    set_preference(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.alignment.a, key);
    set_preference(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.alignment.c, key);
    set_preference(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.alignment.out, key);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check_lt(cublaslt().algo_get_heuristic(handle.get(), desc, p.w.get(), p.a.get(), p.c ? p.c.get() : p.out.get(),
                                            p.out.get(), pref_raw, 1, &result, &found),
             "cublasLtMatmulAlgoGetHeuristic", key);
    if (found == 0)
      throw BackendError(cat("cuBLASLt has no algorithm for the GEMM ", describe(key), " with alignments a ",
                             key.alignment.a, ", w ", key.alignment.w, ", c ", key.alignment.c, ", out ",
                             key.alignment.out, " bytes and a workspace of ", workspace_bytes, " bytes"));
    p.algo = result.algo;
    return cache.emplace(key, std::move(p)).first->second;
  }

  void matmul(const GemmCall& call, cudaStream_t stream) {
    Prepared& p = prepare(call);
    const GemmKey& key = call.key;
    if (has_bias(key.epilogue)) set_desc(p.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, call.bias, key);
    // Without C, D stands in for it (beta is 0: cuBLASLt does not read it).
    const void* c = call.c ? call.c : call.out;
    check_lt(cublaslt().matmul(handle.get(), p.desc.get(), &call.alpha, call.w, p.w.get(), call.a, p.a.get(), &call.beta,
                            c, p.c ? p.c.get() : p.out.get(), call.out, p.out.get(), &p.algo, memory.get(),
                            workspace_bytes, stream),
             "cublasLtMatmul", key);
  }
};

LtGemm::LtGemm(const LtGemmOptions& options) : impl_(std::make_unique<Impl>(options)) {}

LtGemm::~LtGemm() = default;

std::size_t LtGemm::workspace_bytes() const { return impl_->workspace_bytes; }

std::size_t LtGemm::cached_algorithms() const { return impl_->cache.size(); }

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
