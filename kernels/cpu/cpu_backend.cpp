// CpuBackend's entry points: validate with the shared checks (op_checks.hpp), set the thread count,
// call the kernel, and turn oneDNN's failures into BackendError naming the op.
#include "kernels/cpu/cpu_backend.hpp"

#include "kernels/shape_backend.hpp"

#include <thread>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "lib/core/half.hpp"

namespace sdgen {

namespace {

// oneDNN reads the OpenMP thread count when it creates and runs a primitive, and the count is
// per calling thread, so every entry sets it (a no-op when it is already right).
class ThreadCount {
 public:
  explicit ThreadCount(int n) {
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
  }
};

template <class F>
void guarded(std::string_view op, int threads, F&& f) {
  ThreadCount count(threads);
  try {
    f();
  } catch (const dnnl::error& e) {
    throw BackendError(cat(op, ": oneDNN failed: ", e.what(), " (status ", static_cast<int>(e.status), ")"));
  }
}

template <class T>
const T* in(const Tensor& t) {
  return static_cast<const T*>(t.data);
}
template <class T>
T* out_ptr(const Tensor& t) {
  return static_cast<T*>(t.data);
}

int resolve_threads(int requested) {
  if (requested < 0) throw UsageError(cat("--threads ", requested, " must be at least 1 (or 0 for every core)"));
  if (requested > 0) return requested;
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

DType resolve_compute(DType requested) {
  if (requested == DType::F32) return requested;
  if (requested != DType::BF16)
    throw UsageError(cat("the CPU backend computes in F32 or BF16, not ", dtype_name(requested)));
  if (!__builtin_cpu_supports("avx512bf16"))
    throw UsageError(
        "bf16 on the CPU needs AVX512-BF16 (Intel Cooper Lake / Sapphire Rapids or later, AMD Zen 4 or later); "
        "this CPU lacks it: use --dtype f32");
  return requested;
}

}  // namespace

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : ctx_(std::make_unique<cpu::Context>(resolve_threads(options.threads), resolve_compute(options.compute))) {}

CpuBackend::~CpuBackend() = default;

OpSupport CpuBackend::op_support() {
  return OpSupport{DeviceKind::Cpu, DType::F32, DType::F32, DTypeSet{DType::F32, DType::BF16}};
}

std::unique_ptr<Backend> CpuBackend::shape_only() const { return std::make_unique<ShapeBackend>(op_support()); }

int CpuBackend::threads() const { return ctx_->threads; }
DType CpuBackend::compute() const { return ctx_->compute; }
CpuBackendStats CpuBackend::stats() const { return ctx_->stats(); }

std::size_t CpuBackend::held_bytes() const {
  const CpuBackendStats s = ctx_->stats();
  return s.prepared_weight_bytes + s.scratch_bytes;
}

Tensor CpuBackend::prepare_weight(const Tensor& w, WeightUse use) {
  check_weight(op_support(), "prepare_weight", w, use);
  if (use == WeightUse::Vector || use == WeightUse::Table) return w;  // read as they are
  Tensor result;
  guarded("prepare_weight", ctx_->threads, [&] {
    // F16 has no place in the CPU's compute dtypes: widen it to F32 first (exactly).
    std::vector<float> widened;
    const void* src = w.data;
    DType src_dtype = w.dtype;
    if (w.dtype == DType::F16) {
      widened.resize(static_cast<std::size_t>(w.numel()));
      const auto* h = static_cast<const std::uint16_t*>(w.data);
      for (std::size_t i = 0; i < widened.size(); ++i) widened[i] = f16_to_f32(h[i]);
      src = widened.data();
      src_dtype = DType::F32;
    }
    const Tensor source{const_cast<void*>(src), src_dtype, w.shape, w.strides, w.device};
    const dnnl::memory::desc want =
        use == WeightUse::Linear ? cpu::linear_weight_layout(*ctx_, w.shape[0], w.shape[1]) : cpu::conv_weight_layout(*ctx_, w.shape);
    auto packed = std::make_unique<cpu::PackedWeight>();
    packed->memory = dnnl::memory(want, ctx_->engine);
    packed->shape = w.shape;
    packed->use = use;
    ctx_->reorder(cpu::weight_view(source, use), src, want, packed->memory.get_data_handle());
    result = ctx_->add_packed(std::move(packed), ctx_->compute);
  });
  return result;
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) {
  const LinearGeometry g = check_linear(op_support(), x, w, out, args);
  guarded("linear", ctx_->threads, [&] { cpu::linear(*ctx_, g, x, w, out, args); });
}

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) {
  const Conv2dGeometry g = check_conv2d(op_support(), x, w, out, args);
  guarded("conv2d", ctx_->threads, [&] { cpu::conv2d(*ctx_, g, x, w, out, args); });
}

void CpuBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                            const GroupNormArgs& args) {
  const GroupNormGeometry g = check_group_norm(op_support(), x, gamma, beta, out, args);
  guarded("group_norm", ctx_->threads, [&] {
    cpu::group_norm(*ctx_, g, in<float>(x), in<float>(gamma), in<float>(beta), out_ptr<float>(out), args);
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                            const LayerNormArgs& args) {
  const LayerNormGeometry g = check_layer_norm(op_support(), x, gamma, beta, out, args);
  guarded("layer_norm", ctx_->threads, [&] {
    cpu::layer_norm(*ctx_, g, in<float>(x), in<float>(gamma), in<float>(beta), out_ptr<float>(out), args);
  });
}

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                           const AttentionArgs& args) {
  const AttentionGeometry g = check_attention(op_support(), q, k, v, out, args);
  guarded("attention", ctx_->threads,
          [&] { cpu::attention(*ctx_, g, in<float>(q), in<float>(k), in<float>(v), out_ptr<float>(out)); });
}

void CpuBackend::geglu(const Tensor& x, const Tensor& out) {
  const GegluGeometry g = check_geglu(op_support(), x, out);
  guarded("geglu", ctx_->threads, [&] { cpu::geglu(*ctx_, g, in<float>(x), out_ptr<float>(out)); });
}

void CpuBackend::activation(const Tensor& x, const Tensor& out, Act act) {
  const std::int64_t n = check_activation(op_support(), x, out, act);
  guarded("activation", ctx_->threads, [&] { cpu::activation(*ctx_, n, in<float>(x), out_ptr<float>(out), act); });
}

void CpuBackend::add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) {
  const AddGeometry g = check_add(op_support(), a, b, out, args);
  guarded("add", ctx_->threads,
          [&] { cpu::add(*ctx_, g, in<float>(a), b ? in<float>(*b) : nullptr, out_ptr<float>(out), args); });
}

void CpuBackend::upsample_nearest(const Tensor& x, const Tensor& out) {
  const UpsampleGeometry g = check_upsample_nearest(op_support(), x, out);
  guarded("upsample_nearest", ctx_->threads,
          [&] { cpu::upsample_nearest(*ctx_, g, in<float>(x), out_ptr<float>(out)); });
}

void CpuBackend::concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) {
  const ConcatGeometry g = check_concat_channels(op_support(), a, b, out);
  guarded("concat_channels", ctx_->threads,
          [&] { cpu::concat_channels(*ctx_, g, in<float>(a), in<float>(b), out_ptr<float>(out)); });
}

void CpuBackend::timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) {
  const TimestepGeometry g = check_timestep_embedding(op_support(), t, out, args);
  guarded("timestep_embedding", ctx_->threads,
          [&] { cpu::timestep_embedding(*ctx_, g, in<float>(t), out_ptr<float>(out), args); });
}

void CpuBackend::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  const EmbeddingGeometry g = check_embedding(op_support(), ids, table, out);
  guarded("embedding", ctx_->threads,
          [&] { cpu::embedding(*ctx_, g, in<std::int32_t>(ids), in<float>(table), out_ptr<float>(out)); });
}

}  // namespace sdgen
