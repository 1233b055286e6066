// The CUDA backend: the op set on one GPU, 16-bit activations and weights, fp32 accumulation. The
// 16-bit format is the backend's template parameter T: __half (fp16, the default) or __nv_bfloat16
// (bf16, --dtype bf16: fp32's range, for models whose activations overflow fp16), chosen once when
// the backend is made; every kernel and cuBLASLt call is instantiated for both.
//
// Each op validates its arguments with the shared checks (kernels/op_checks, so ShapeBackend plans
// exactly what this backend accepts) and enqueues work on the backend's one stream; nothing waits
// for the GPU except download() and synchronize(). The work itself is in the kernels of this
// folder, each tested in emulation in CI (tests/cuda_kernels), and in cuBLASLt (gemm.hpp):
//   linear                 cuBLASLt, bias fused in the epilogue, residual as C (gemm_plan.hpp)
//   conv2d                 the implicit-GEMM tensor-core kernel where it applies (input channels
//                          a multiple of 8, aligned tensors), else im2col + cuBLASLt
//   attention              flash_attention.cuh (mma.sync, online softmax, causal for CLIP)
//   group/layer norm       norms.cuh (fp32 statistics; group norm split across blocks for the VAE)
//   geglu, activation, add elementwise.cuh
//   upsample, concat, timestep and token embedding, convert: layout.cuh
//   the denoising loop     step_update.cuh: the UNet's inputs, then guidance + the scheduler
//                          update in one kernel, from a device table of every call's coefficients
//                          uploaded once per generation; one call captured as a CUDA graph and
//                          replayed for the others (CudaDenoisingLoop)
//
// Memory. Weights are converted to T on the host and uploaded once, in prepare_weight. Every
// device allocation (weights, activations, workspaces) goes through DeviceMemory, which counts
// it against --max-vram and the card's free memory, so running out is a DeviceMemoryError with
// the numbers, never a CUDA error code. Activations come from the pipeline's arenas, one
// cudaMalloc per stage. cuBLASLt's workspace is allocated with the backend; the ops' scratch (group
// norm's statistics, the implicit convolution's split-K partials, im2col rows) is sized by the
// planning pass of each stage (shape_only() measures it) and reserved before the stage's arena, so
// the stage allocates nothing, holds no more than it needs, and --max-vram advice counts it.
#include <algorithm>
#include <cstring>
#include <list>
#include <vector>

#include "kernels/cuda/conv2d_implicit.cuh"
#include "kernels/cuda/device_api.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/gemm.hpp"
#include "kernels/cuda/layout.cuh"
#include "kernels/cuda/norms.cuh"
#include "kernels/cuda/runtime_api.hpp"
#include "kernels/cuda/step_update.cuh"
#include "kernels/cuda_backend.hpp"
#include "kernels/device_info.hpp"
#include "kernels/op_checks.hpp"
#include "kernels/shape_backend.hpp"
#include "lib/core/half.hpp"

namespace sdgen {

namespace {

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw BackendError(cat("cuda: ", what, " failed: ", cudaGetErrorString(err)));
}

std::string megabytes(std::size_t bytes) { return cat((bytes + (1u << 20) - 1) >> 20, " MiB"); }

// The scratch a conv2d of this geometry runs on: the implicit kernel's split-K partials, or, for a
// geometry the kernel cannot take, the im2col rows and scaled bias of the cuBLASLt path. (A view
// misaligned for the kernel is not foreseen here: its conv takes the cuBLASLt path and grows the
// scratch when it runs.)
std::size_t conv2d_scratch_bytes(const Conv2dGeometry& g, int multiprocessors) {
  if (cuda::conv2d_implicit_geometry_supported(g))
    return static_cast<std::size_t>(cuda::conv2d_implicit_workspace_floats(g, multiprocessors)) * sizeof(float);
  return cuda::conv2d_gemm_scratch_bytes(g);
}

// Every device allocation of the backend, counted against the cap. Also the Allocator the pipeline
// builds its activation arenas on (one block per acquire).
class DeviceMemory final : public Allocator {
 public:
  DeviceMemory(int device, std::optional<std::size_t> limit) : device_(device), limit_(limit) {}
  ~DeviceMemory() override {
    for (const auto& block : blocks_.held()) cudaFree(block.data);
  }

  // Bytes a library allocated itself (cuBLASLt's workspace), counted as if allocated here.
  void count_external(std::size_t bytes, const char* what) {
    check_cap(bytes, what);
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
  }

  // What an allocation of `bytes` takes: a multiple of 256 bytes, as cudaMalloc aligns.
  static std::size_t allocation_bytes(std::size_t bytes) { return (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256; }

  void* allocate(std::size_t bytes, const char* what) {
    const std::size_t rounded = allocation_bytes(bytes);
    check_cap(rounded, what);
    void* p = nullptr;
    if (const cudaError_t err = cudaMalloc(&p, rounded); err != cudaSuccess) {
      cudaGetLastError();
      if (err != cudaErrorMemoryAllocation)
        throw BackendError(cat("cuda: allocating ", megabytes(rounded), " for ", what, " failed: ", cudaGetErrorString(err)));
      std::size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      throw DeviceMemoryError(cat("out of device memory: ", megabytes(rounded), " more for ", what, ", but the GPU has ",
                                  megabytes(free), " free of ", megabytes(total), " (", megabytes(in_use_),
                                  " held by sdgen)"),
                              rounded, free);
    }
    in_use_ += rounded;
    peak_ = std::max(peak_, in_use_);
    return p;
  }
  void free(void* p, std::size_t bytes) noexcept {
    cudaFree(p);
    in_use_ -= allocation_bytes(bytes);
  }

  Block acquire(std::size_t bytes) override {
    void* p = allocate(bytes, "an activation buffer");
    return {p, blocks_.add(p, bytes)};
  }
  void release(std::size_t token) noexcept override {
    const auto block = blocks_.remove(token);
    free(block.data, block.bytes);
  }
  Device device() const override { return {DeviceKind::Cuda, device_}; }
  std::size_t footprint(std::size_t bytes) const override { return allocation_bytes(bytes); }

  void check_cap(std::size_t bytes, const char* what) const {
    if (limit_ && in_use_ + bytes > *limit_)
      throw DeviceMemoryError(cat("out of device memory: ", megabytes(bytes), " more for ", what, ", but ",
                                  megabytes(in_use_), " of the ", megabytes(*limit_), " allowed by --max-vram are in use"),
                              bytes, *limit_ > in_use_ ? *limit_ - in_use_ : 0);
  }
  std::size_t peak() const { return peak_; }

 private:
  int device_;
  std::optional<std::size_t> limit_;
  BlockTable blocks_;
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
};

// One owned device allocation (weights, tables, workspaces).
class DeviceBlock {
 public:
  DeviceBlock(DeviceMemory& memory, std::size_t bytes, const char* what)
      : memory_(&memory), data_(memory.allocate(bytes, what)), bytes_(bytes) {}
  ~DeviceBlock() {
    if (data_) memory_->free(data_, bytes_);
  }
  DeviceBlock(DeviceBlock&& o) noexcept
      : memory_(o.memory_), data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBlock& operator=(DeviceBlock&&) = delete;
  DeviceBlock(const DeviceBlock&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  DeviceMemory* memory_;
  void* data_;
  std::size_t bytes_;
};

// The ops' scratch: reserved before each stage at what its planning pass measured; an op that
// asks for more grows it (never inside a captured step, whose first, eager call met every shape).
class Workspace {
 public:
  Workspace(DeviceMemory& memory, const char* what) : memory_(memory), what_(what) {}
  void* get(std::size_t bytes) {
    if (!block_ || block_->bytes() < bytes) {
      block_.reset();
      block_.emplace(memory_, bytes, what_);
    }
    return block_->data();
  }
  // Exactly `bytes` from now on; the old block is freed before a new one is allocated.
  void reserve(std::size_t bytes) {
    if (this->bytes() == bytes) return;
    block_.reset();
    if (bytes > 0) block_.emplace(memory_, bytes, what_);
  }
  std::size_t bytes() const { return block_ ? block_->bytes() : 0; }

 private:
  DeviceMemory& memory_;
  const char* what_;
  std::optional<DeviceBlock> block_;
};

template <class T>
cuda::GlobalPtr<T> device_view(const Tensor& t, const char* name) {
  return cuda::GlobalPtr<T>(static_cast<T*>(t.data), static_cast<std::size_t>(t.numel()), name);
}

template <class T>
cuda::GlobalPtr<const T> optional_view(const Tensor* t, const char* name) {
  if (t == nullptr) return {};
  return cuda::GlobalPtr<const T>(static_cast<const T*>(t->data), static_cast<std::size_t>(t->numel()), name);
}

// The extent of a strided view, in elements from its first one: what a kernel may touch.
std::size_t strided_extent(const Tensor& t) {
  std::int64_t last = 0;
  for (int i = 0; i < t.rank(); ++i) last += (t.shape[i] - 1) * t.strides[i];
  return static_cast<std::size_t>(last + 1);
}

template <class T>
cuda::GlobalPtr<T> strided_view(const Tensor& t, const char* name) {
  return cuda::GlobalPtr<T>(static_cast<T*>(t.data), strided_extent(t), name);
}

// The host-side conversions to and from T's bits (lib/core/half.hpp: round to nearest even, as
// torch's .half() and .bfloat16() do).
template <class T>
std::uint16_t storage_bits_of(float f) {
  return cuda::kStorageDType<T> == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
}
template <class T>
float storage_value_of(std::uint16_t bits) {
  return cuda::kStorageDType<T> == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits);
}

template <class T>
class CudaDenoisingLoop;

template <class T>
class CudaBackend final : public Backend {
 public:
  static constexpr DType kStorage = cuda::kStorageDType<T>;

  explicit CudaBackend(const CudaBackendOptions& options)
      : device_(options.device), graphs_(options.graphs), memory_(options.device, options.memory_limit) {
    check_cuda(cudaSetDevice(device_), "selecting the device");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
    check_cuda(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_),
               "reading the multiprocessor count");
    // cuBLASLt's workspace, counted against the cap like everything else.
    const cuda::LtGemmOptions gemm_options{.storage = kStorage};
    memory_.check_cap(gemm_options.cublaslt_workspace_bytes, "cuBLASLt's workspace");
    gemm_ = std::make_unique<cuda::LtGemm>(gemm_options);
    memory_.count_external(gemm_->workspace_bytes(), "cuBLASLt's workspace");
    embedding_error_.emplace(memory_, sizeof(int), "the embedding check");
  }
  ~CudaBackend() override {
    if (step_graph_) cudaGraphExecDestroy(step_graph_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  static OpSupport support() { return OpSupport{DeviceKind::Cuda, kStorage, kStorage, DTypeSet{kStorage}}; }

  std::string_view name() const override { return "cuda"; }
  // The planning twin measures the scratch of this backend's convolutions and group norms, so
  // the pipeline reserves it before a stage (reserve_scratch) and counts it in its advice.
  std::unique_ptr<Backend> shape_only() const override {
    const int multiprocessors = multiprocessors_;
    return std::make_unique<ShapeBackend>(
        support(), ScratchModel{.conv2d =
                                    [multiprocessors](const Conv2dGeometry& g) {
                                      // The implicit-GEMM path's split-K partials, or the im2col
                                      // rows and scaled bias of the cuBLASLt path (for tensors
                                      // the kernel cannot take: see conv2d).
                                      return conv2d_scratch_bytes(g, multiprocessors);
                                    },
                                .group_norm =
                                    [](const GroupNormGeometry& g) {
                                      return static_cast<std::size_t>(cuda::group_norm_workspace_floats(g)) *
                                             sizeof(float);
                                    }});
  }
  void reserve_scratch(std::size_t bytes) override { scratch_.reserve(bytes); }
  // CudaDenoisingLoop's table of every call's coefficients and its call index.
  std::size_t denoising_loop_bytes(std::size_t calls) const override {
    return DeviceMemory::allocation_bytes(std::max<std::size_t>(calls * sizeof(StepCoefficients), 1)) +
           DeviceMemory::allocation_bytes(sizeof(int));
  }
  Allocator& allocator() override { return memory_; }
  DType activation_dtype() const override { return kStorage; }
  std::size_t held_bytes() const override {
    return weight_bytes_ + gemm_->workspace_bytes() + DeviceMemory::allocation_bytes(embedding_error_->bytes());
  }
  std::size_t peak_device_bytes() const override { return memory_.peak(); }
  std::size_t peak_device_used_bytes() const override { return peak_used_; }

  // Every parameter becomes a device copy in T, whatever it was stored as: copied when it already
  // is T, else converted on the host with round-to-nearest-even (lib/core/half.hpp), as torch's
  // .half() / .bfloat16() do (fp16 <-> bf16 through fp32, which holds both exactly).
  Tensor prepare_weight(const Tensor& w, WeightUse use) override {
    check_weight(OpSupport{DeviceKind::Cpu, DType::F32, DType::F32, DTypeSet{DType::F32, DType::F16, DType::BF16}},
                 "prepare_weight", w, use);
    const auto n = static_cast<std::size_t>(w.numel());
    std::vector<std::uint16_t> halves(n);
    if (w.dtype == kStorage) {
      std::memcpy(halves.data(), w.data, n * 2);
    } else if (w.dtype == DType::F16 || w.dtype == DType::BF16) {
      const auto* b = w.ptr<const std::uint16_t>();
      for (std::size_t i = 0; i < n; ++i)
        halves[i] = storage_bits_of<T>(w.dtype == DType::F16 ? f16_to_f32(b[i]) : bf16_to_f32(b[i]));
    } else {
      const auto* f = w.ptr<const float>();
      for (std::size_t i = 0; i < n; ++i) halves[i] = storage_bits_of<T>(f[i]);
    }
    DeviceBlock& block = weights_.emplace_back(memory_, n * 2, "the model's weights");
    check_cuda(cudaMemcpy(block.data(), halves.data(), n * 2, cudaMemcpyHostToDevice), "uploading a weight");
    weight_bytes_ += DeviceMemory::allocation_bytes(n * 2);
    return Tensor::contiguous(block.data(), kStorage, w.shape, Device{DeviceKind::Cuda, device_});
  }

  void upload(const Tensor& host, const Tensor& dst) override {
    const auto n = static_cast<std::size_t>(check_transfer(support(), "upload", host, dst));
    if (dst.dtype == kStorage && host.dtype == DType::F32) {
      std::vector<std::uint16_t> halves(n);
      const auto* f = host.ptr<const float>();
      for (std::size_t i = 0; i < n; ++i) halves[i] = storage_bits_of<T>(f[i]);
      check_cuda(cudaMemcpyAsync(dst.data, halves.data(), n * 2, cudaMemcpyHostToDevice, stream_), "upload");
      check_cuda(cudaStreamSynchronize(stream_), "upload");  // `halves` dies here
    } else {
      check_cuda(cudaMemcpyAsync(dst.data, host.data, host.nbytes(), cudaMemcpyHostToDevice, stream_), "upload");
      check_cuda(cudaStreamSynchronize(stream_), "upload");
    }
  }

  void download(const Tensor& src, const Tensor& host) override {
    const auto n = static_cast<std::size_t>(check_transfer(support(), "download", host, src));
    if (src.dtype == kStorage && host.dtype == DType::F32) {
      std::vector<std::uint16_t> halves(n);
      check_cuda(cudaMemcpyAsync(halves.data(), src.data, n * 2, cudaMemcpyDeviceToHost, stream_), "download");
      check_cuda(cudaStreamSynchronize(stream_), "the work before a download");
      sample_device_memory();
      auto* f = host.ptr<float>();
      for (std::size_t i = 0; i < n; ++i) f[i] = storage_value_of<T>(halves[i]);
    } else {
      check_cuda(cudaMemcpyAsync(host.data, src.data, host.nbytes(), cudaMemcpyDeviceToHost, stream_), "download");
      check_cuda(cudaStreamSynchronize(stream_), "the work before a download");
      sample_device_memory();
    }
  }

  void synchronize() override {
    check_cuda(cudaStreamSynchronize(stream_), "the queued work");
    sample_device_memory();
  }

  void convert(const Tensor& x, const Tensor& out, const ConvertArgs& args) override {
    const std::int64_t n = check_convert(support(), x, out);
    if (x.dtype == DType::F32 && out.dtype == kStorage) {
      if (args.shift != 0.0f)
        throw BackendError("convert: the CUDA backend does not shift (a VAE shift_factor); SD 1.x and 2.x have none");
      cuda::convert_f32_to_storage<T>({.in = device_view<const float>(x, "x"), .out = device_view<T>(out, "out"),
                                       .n = n, .scale = args.scale, .stream = stream_});
    } else if (x.dtype == kStorage && out.dtype == DType::F32 && args.scale == 1.0f && args.shift == 0.0f) {
      cuda::convert_storage_to_f32<T>({.in = device_view<const T>(x, "x"), .out = device_view<float>(out, "out"),
                                       .n = n, .stream = stream_});
    } else {
      throw BackendError(cat("convert: ", dtype_name(x.dtype), " to ", dtype_name(out.dtype),
                             " with a scale or shift is not a conversion the CUDA backend has"));
    }
  }

  std::unique_ptr<DenoisingLoop> begin_denoising(std::span<const StepCoefficients> steps) override;

  void linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) override {
    const LinearGeometry g = check_linear(support(), x, w, out, args);
    gemm_->linear({.geometry = g,
                   .x = x.data,
                   .w = w.data,
                   .bias = args.bias ? args.bias->data : nullptr,
                   .residual = args.residual ? args.residual->data : nullptr,
                   .out = out.data,
                   .act = args.act},
                  stream_);
  }

  void conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) override {
    const Conv2dGeometry g = check_conv2d(support(), x, w, out, args);
    cuda::Conv2dImplicitLaunch<T> l{.x = device_view<const T>(x, "x"),
                                 .w = device_view<const T>(w, "w"),
                                 .out = device_view<T>(out, "out"),
                                 .bias = optional_view<T>(args.bias, "bias"),
                                 .add_per_channel = optional_view<T>(args.add_per_channel, "add_per_channel"),
                                 .residual = optional_view<T>(args.residual, "residual"),
                                 .output_scale = args.output_scale,
                                 .geometry = g,
                                 .multiprocessors = multiprocessors_,
                                 .stream = stream_};
    if (cuda::conv2d_implicit_supported(l)) {
      const auto floats = static_cast<std::size_t>(cuda::conv2d_implicit_workspace_floats(g, multiprocessors_));
      l.workspace = cuda::GlobalPtr<float>(static_cast<float*>(scratch_.get(floats * sizeof(float))), floats,
                                           "conv workspace");
      cuda::conv2d_implicit(l);
      return;
    }
    const std::size_t scratch_bytes = cuda::conv2d_gemm_scratch_bytes(g);
    gemm_->conv2d({.geometry = g,
                   .x = x.data,
                   .w = w.data,
                   .bias = args.bias ? args.bias->data : nullptr,
                   .add_per_channel = args.add_per_channel ? args.add_per_channel->data : nullptr,
                   .residual = args.residual ? args.residual->data : nullptr,
                   .out = out.data,
                   .output_scale = args.output_scale},
                  {.data = scratch_.get(scratch_bytes), .bytes = scratch_bytes}, stream_);
  }

  void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const GroupNormArgs& args) override {
    const GroupNormGeometry g = check_group_norm(support(), x, gamma, beta, out, args);
    const auto floats = static_cast<std::size_t>(cuda::group_norm_workspace_floats(g));
    cuda::launch_group_norm<T>({.x = device_view<const T>(x, "x"),
                             .gamma = device_view<const T>(gamma, "gamma"),
                             .beta = device_view<const T>(beta, "beta"),
                             .out = device_view<T>(out, "out"),
                             .workspace = cuda::GlobalPtr<float>(
                                 static_cast<float*>(scratch_.get(floats * sizeof(float))), floats, "workspace"),
                             .geometry = g,
                             .eps = args.eps,
                             .act = args.silu ? Act::Silu : Act::None,
                             .stream = stream_});
  }

  void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const LayerNormArgs& args) override {
    const LayerNormGeometry g = check_layer_norm(support(), x, gamma, beta, out, args);
    cuda::launch_layer_norm<T>({.x = strided_view<const T>(x, "x"),
                             .gamma = device_view<const T>(gamma, "gamma"),
                             .beta = device_view<const T>(beta, "beta"),
                             .out = strided_view<T>(out, "out"),
                             .geometry = g,
                             .eps = args.eps,
                             .stream = stream_});
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 const AttentionArgs& args) override {
    const AttentionGeometry g = check_attention(support(), q, k, v, out, args);
    cuda::flash_attention<T>({.q = strided_view<const T>(q, "q"),
                           .k = strided_view<const T>(k, "k"),
                           .v = strided_view<const T>(v, "v"),
                           .out = strided_view<T>(out, "out"),
                           .geometry = g,
                           .stream = stream_});
  }

  void geglu(const Tensor& x, const Tensor& out) override {
    const GegluGeometry g = check_geglu(support(), x, out);
    cuda::launch_geglu<T>({.x = strided_view<const T>(x, "x"), .out = strided_view<T>(out, "out"), .geometry = g,
                        .stream = stream_});
  }

  void activation(const Tensor& x, const Tensor& out, Act act) override {
    const std::int64_t n = check_activation(support(), x, out, act);
    cuda::launch_activation<T>({.x = device_view<const T>(x, "x"), .out = device_view<T>(out, "out"), .n = n,
                             .act = act, .stream = stream_});
  }

  void add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) override {
    const AddGeometry g = check_add(support(), a, b, out, args);
    cuda::launch_add<T>({.a = device_view<const T>(a, "a"),
                      .b = optional_view<T>(b, "b"),
                      .out = device_view<T>(out, "out"),
                      .geometry = g,
                      .alpha = args.alpha,
                      .beta = args.beta,
                      .stream = stream_});
  }

  void upsample_nearest(const Tensor& x, const Tensor& out) override {
    const UpsampleGeometry g = check_upsample_nearest(support(), x, out);
    cuda::upsample_nearest<T>({.x = device_view<const T>(x, "x"),
                            .out = device_view<T>(out, "out"),
                            .batch = g.batch,
                            .h = g.h,
                            .w = g.w,
                            .c = g.c,
                            .ho = g.ho,
                            .wo = g.wo,
                            .stream = stream_});
  }

  void concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) override {
    const ConcatGeometry g = check_concat_channels(support(), a, b, out);
    cuda::concat_channels<T>({.a = device_view<const T>(a, "a"),
                           .b = device_view<const T>(b, "b"),
                           .out = device_view<T>(out, "out"),
                           .pixels = g.pixels,
                           .ca = g.ca,
                           .cb = g.cb,
                           .stream = stream_});
  }

  void timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) override {
    const TimestepGeometry g = check_timestep_embedding(support(), t, out, args);
    cuda::timestep_embedding<T>({.t = device_view<const float>(t, "t"),
                              .out = device_view<T>(out, "out"),
                              .batch = g.batch,
                              .dim = g.dim,
                              .args = args,
                              .stream = stream_});
  }

  // A bad id cannot throw from a kernel: it flags, and the flag is read back here (once per text
  // encoding, outside the denoising loop).
  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override {
    const EmbeddingGeometry g = check_embedding(support(), ids, table, out);
    check_cuda(cudaMemsetAsync(embedding_error_->data(), 0, sizeof(int), stream_), "clearing the embedding check");
    cuda::embedding<T>({.ids = device_view<const std::int32_t>(ids, "ids"),
                     .table = device_view<const T>(table, "table"),
                     .out = device_view<T>(out, "out"),
                     .error = cuda::GlobalPtr<int>(static_cast<int*>(embedding_error_->data()), 1, "error"),
                     .tokens = g.tokens,
                     .vocab = g.vocab,
                     .c = g.dim,
                     .stream = stream_});
    int error = 0;
    check_cuda(cudaMemcpyAsync(&error, embedding_error_->data(), sizeof(int), cudaMemcpyDeviceToHost, stream_),
               "reading the embedding check");
    synchronize();
    if (error != 0)
      throw Error(cat("embedding: the id at position ", error - 1, " is outside the table of ", g.vocab, " rows"));
  }

 private:
  friend class CudaDenoisingLoop<T>;
  // The driver's count of memory in use, whose peak --profile reports beside the allocator's.
  void sample_device_memory() {
    std::size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) peak_used_ = std::max(peak_used_, total - free);
    cudaGetLastError();
  }

  int device_;
  CudaGraphs graphs_;
  DeviceMemory memory_;
  cudaStream_t stream_ = nullptr;
  int multiprocessors_ = 0;
  std::unique_ptr<cuda::LtGemm> gemm_;
  std::list<DeviceBlock> weights_;
  std::size_t weight_bytes_ = 0;
  // The ops' scratch: the implicit convolution's split-K partials, group norm's statistics.
  Workspace scratch_{memory_, "the ops' scratch (split-K partials, group statistics)"};
  std::optional<DeviceBlock> embedding_error_;  // the embedding kernel's out-of-range flag
  std::size_t peak_used_ = 0;
  // The last denoising step instantiated as a graph, kept across generations: the next loop's
  // captured step updates it in place (cudaGraphExecUpdate) when its nodes match, which costs a
  // fraction of instantiating a graph of hundreds of nodes anew.
  cudaGraphExec_t step_graph_ = nullptr;
  const void* step_graph_owner_ = nullptr;  // the loop whose step it holds now, if that loop lives
};

// The loop of one generation on the GPU. Its table of every call's coefficients and the current
// call (the step index) live in device memory, uploaded once here; model_input and the step
// kernels read the entry at the index, and advance_step moves it on. So every call enqueues the
// same launches with the same arguments, and the loop records them once as a CUDA graph:
//   call 0  runs eagerly: the first call is where the workspaces grow to their final size and
//           cuBLASLt picks its algorithms, and neither may happen inside a capture (cudaMalloc
//           is not capturable);
//   call 1  is captured (cudaStreamCaptureModeGlobal, so any call that would break a graph fails
//           the capture instead of silently running once), then launched: taken into the
//           backend's instance of the previous generation's step when the two graphs have the
//           same nodes (the same request shape: only pointers and arguments differ), else
//           instantiated anew in its place;
//   later   calls launch the instance: one launch per step instead of hundreds.
// Only the loop whose step the instance holds launches it, so a stale one (pointing at a previous
// generation's arena) never runs; a loop whose step another loop's capture replaced captures again.
// With CudaGraphs::Off every call runs as call 0 does (for finding a fault on a GPU).
// The pipeline's contract (DenoisingLoop::run) keeps the captured work valid: the same arena
// memory, rewound before each call; the noise uploaded into a fixed buffer before run().
template <class T>
class CudaDenoisingLoop final : public DenoisingLoop {
 public:
  CudaDenoisingLoop(CudaBackend<T>& backend, std::span<const StepCoefficients> steps)
      : b_(backend),
        steps_(steps),
        table_(backend.memory_, std::max<std::size_t>(steps.size_bytes(), 1), "the scheduler's coefficients"),
        index_(backend.memory_, sizeof(int), "the step index") {
    check_cuda(cudaMemcpyAsync(table_.data(), steps.data(), steps.size_bytes(), cudaMemcpyHostToDevice, b_.stream_),
               "uploading the scheduler's coefficients");
    check_cuda(cudaMemsetAsync(index_.data(), 0, sizeof(int), b_.stream_), "resetting the step index");
    b_.synchronize();
  }
  ~CudaDenoisingLoop() override {
    if (b_.step_graph_owner_ == this) b_.step_graph_owner_ = nullptr;
  }
  CudaDenoisingLoop(const CudaDenoisingLoop&) = delete;
  CudaDenoisingLoop& operator=(const CudaDenoisingLoop&) = delete;

  int call() const override { return call_; }

  void run(const std::function<void()>& step) override {
    if (b_.step_graph_owner_ == this) {
      check_cuda(cudaGraphLaunch(b_.step_graph_, b_.stream_), "launching the captured denoising step");
      ++call_;
      return;
    }
    if (call_ == 0 || b_.graphs_ == CudaGraphs::Off) {
      step();
      return;
    }
    check_cuda(cudaStreamBeginCapture(b_.stream_, cudaStreamCaptureModeGlobal), "starting the step's capture");
    try {
      step();
    } catch (...) {
      cudaGraph_t abandoned = nullptr;
      cudaStreamEndCapture(b_.stream_, &abandoned);
      if (abandoned) cudaGraphDestroy(abandoned);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamEndCapture(b_.stream_, &graph),
               "capturing the denoising step (an op in it synchronized, allocated or copied from the host)");
    const cudaError_t taken = adopt(graph);
    cudaGraphDestroy(graph);
    check_cuda(taken, "instantiating the captured denoising step");
    b_.step_graph_owner_ = this;
    check_cuda(cudaGraphLaunch(b_.step_graph_, b_.stream_), "launching the captured denoising step");
  }

  void model_input(const Tensor& latents, const Tensor& unet_in, const Tensor& t) override {
    const std::int64_t n = check_model_input(CudaBackend<T>::support(), steps_, call_, latents, unet_in, t);
    cuda::model_input<T>({.steps = table(),
                       .step_count = static_cast<int>(steps_.size()),
                       .step_index = index(),
                       .latents = device_view<const float>(latents, "latents"),
                       .unet_in = device_view<T>(unet_in, "unet_in"),
                       .t = device_view<float>(t, "t"),
                       .elements = n,
                       .copies = unet_in.numel() / n,
                       .rows = t.shape[0],
                       .stream = b_.stream_});
  }

  void scheduler_step(const StepTensors& t) override {
    const std::int64_t n = check_scheduler_step(CudaBackend<T>::support(), steps_, call_, t);
    cuda::StepUpdateLaunch<T> l{.steps = table(),
                             .step_count = static_cast<int>(steps_.size()),
                             .step_index = index(),
                             .model_output = device_view<const T>(t.model_output, "model_output"),
                             .sample = device_view<float>(t.sample, "sample"),
                             .noise = optional_view<float>(t.noise, "noise"),
                             .elements = n,
                             .stream = b_.stream_};
    for (int slot = 0; slot < kStepHistorySlots; ++slot)
      if (const Tensor* h = t.history[static_cast<std::size_t>(slot)]) l.history[slot] = device_view<float>(*h, "history");
    cuda::step_update(l);
    cuda::advance_step(cuda::GlobalPtr<int>(static_cast<int*>(index_.data()), 1, "step_index"), b_.stream_);
    ++call_;
  }

 private:
  // Makes b_.step_graph_ run `graph`: an update of the previous instance when the nodes match,
  // else (the failed update's error cleared) a new instance in its place.
  cudaError_t adopt(cudaGraph_t graph) {
    b_.step_graph_owner_ = nullptr;
    if (b_.step_graph_) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(b_.step_graph_, graph, &info) == cudaSuccess) return cudaSuccess;
      cudaGetLastError();
      cudaGraphExecDestroy(std::exchange(b_.step_graph_, nullptr));
    }
    return cudaGraphInstantiate(&b_.step_graph_, graph, 0);
  }

  cuda::GlobalPtr<const StepCoefficients> table() const {
    return {static_cast<const StepCoefficients*>(table_.data()), steps_.size(), "steps"};
  }
  cuda::GlobalPtr<const int> index() const { return {static_cast<const int*>(index_.data()), 1, "step_index"}; }

  CudaBackend<T>& b_;
  std::span<const StepCoefficients> steps_;
  DeviceBlock table_;
  DeviceBlock index_;
  int call_ = 0;
};

template <class T>
std::unique_ptr<DenoisingLoop> CudaBackend<T>::begin_denoising(std::span<const StepCoefficients> steps) {
  return std::make_unique<CudaDenoisingLoop<T>>(*this, steps);
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options) {
  const GpuQuery query = query_gpus();
  if (query.gpus.empty()) throw UsageError(cat("--device cuda: ", query.why_none));
  if (options.device < 0 || options.device >= static_cast<int>(query.gpus.size()))
    throw UsageError(cat("--device cuda: there is no GPU ", options.device, " (", query.gpus.size(), " found)"));
  return cuda::with_storage_type(options.storage, [&](auto t) -> std::unique_ptr<Backend> {
    return std::make_unique<CudaBackend<decltype(t)>>(options);
  });
}

}  // namespace sdgen
