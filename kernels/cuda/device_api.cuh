// The one header a custom kernel includes: checked memory views, the tensor-core and async-copy
// wrappers, and the launch. It has two implementations of the same interface:
//   - compiled by nvcc (the CUDA backend), every wrapper is the real instruction: GlobalPtr and
//     SharedPtr are a bare pointer, mma/ldmatrix/cp.async are inline PTX, launch is <<<...>>>;
//   - compiled by the host compiler with SDGEN_CUDA_EMULATION defined (the emulation tests), the
//     same kernel source runs on the CPU under kernels/cuda/emu/, which checks bounds, barriers,
//     warp lockstep and shared-memory races, and follows the PTX fragment layouts exactly.
// The build picks one: the target sdgen_cuda_emu defines SDGEN_CUDA_EMULATION for whatever links
// it. No kernel has a second, CPU-only copy of its logic. docs/gpu.md explains the mode.
//
// What a kernel writes differently from textbook CUDA, so that both builds can check it:
//   - global memory through GlobalPtr<T> parameters, indexed with []; the host makes them with
//     GlobalPtr(data, element_count, "name");
//   - shared memory through SDGEN_SHARED(T, name, count) and SDGEN_DYNAMIC_SHARED(T, name), which
//     give a SharedPtr<T>; `__shared__` itself does not compile in emulation. Read an element into
//     a named type (`float v = tile[i];`), not into `auto`;
//   - atomics on shared memory take the SharedPtr itself: atomicAdd(bins + b, 1u);
//   - the launch is sdgen::cuda::launch(SDGEN_KERNEL(my_kernel), {.grid = .., .block = ..}, args...).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// g = lane / 4 and t = lane % 4; each 32-bit register holds two 16-bit values (fp16 or bf16), the
// lower-indexed element in the low 16 bits (pack2):
//   A (16x16, row-major), a0..a7 in a[0..3]:  row = g + 8 for a2,a3,a6,a7, else g;
//                                             col = 2t + (i & 1), + 8 for a4..a7
//   B (16x8, "col"), b0..b3 in b[0..1]:       row (k) = 2t + (i & 1), + 8 for b2,b3;  col (n) = g
//   C/D (16x8 fp32), c0..c3:                  row = g, + 8 for c2,c3;  col = 2t + (i & 1)
// ldmatrix (x1/x2/x4): lane l supplies the address of row l % 8 of matrix l / 8 (16 bytes, 16-byte
// aligned); lane l receives, in register j, elements (l / 4, 2(l % 4)) and (l / 4, 2(l % 4) + 1) of
// matrix j, or with .trans elements (2(l % 4), l / 4) and (2(l % 4) + 1, l / 4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "lib/core/dtype.hpp"

#if defined(SDGEN_CUDA_EMULATION)
#include "kernels/cuda/emu/checked_memory.hpp"
#include "kernels/cuda/emu/emulated_cuda.hpp"
#elif defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "lib/core/error.hpp"
#else
#error "device_api.cuh is compiled by nvcc, or by the host compiler with SDGEN_CUDA_EMULATION"
#endif

namespace sdgen::cuda {

// ---- what both builds share

#if defined(SDGEN_CUDA_EMULATION)
using Stream = emu::Stream;
#else
using Stream = cudaStream_t;
#endif

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  std::size_t shared_bytes = 0;  // dynamic shared memory per block
  Stream stream = nullptr;
};

// A kernel and its name, for messages: make one with SDGEN_KERNEL(kernel) or
// SDGEN_KERNEL(kernel<Template, Args>).
template <class... P>
struct Kernel {
  void (*fn)(P...);
  const char* name;
};
template <class... P>
Kernel(void (*)(P...), const char*) -> Kernel<P...>;

// Keeps a template parameter out of deduction (std::type_identity is C++20; nvcc builds C++17).
template <class T>
struct Identity {
  using type = T;
};

// An argument becomes its kernel parameter by implicit conversion only, as with <<<...>>>.
template <class P, class A>
P pass_argument(A&& argument) {
  return std::forward<A>(argument);
}

// ---- the 16-bit storage formats
//
// Every kernel stores activations and weights in one of two 16-bit formats, chosen per backend
// (--dtype): __half (fp16: 10 mantissa bits, range 6e-8..65504) or __nv_bfloat16 (bf16: 7
// mantissa bits, fp32's range, so activations that overflow fp16 stay finite). Both compute in
// fp32; a kernel is a template on its storage type T and touches T only through these helpers,
// so the two instantiations differ in the conversions and the tensor-core instruction alone.
template <class T>
inline constexpr bool kIsStorage = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

__host__ __device__ __forceinline__ float to_float(__half h) { return __half2float(h); }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 h) { return __bfloat162float(h); }

// The DType of a storage type, and back: with_storage_type(F16 or BF16, f) calls f(T{}) with the
// type, so a runtime choice (the backend's --dtype) selects one instantiation.
template <class T>
inline constexpr DType kStorageDType = std::is_same_v<T, __half> ? DType::F16 : DType::BF16;

template <class F>
decltype(auto) with_storage_type(DType storage, F&& f) {
  if (storage == DType::F16) return f(__half{});
  if (storage == DType::BF16) return f(__nv_bfloat16{});
  throw BackendError(cat("CUDA kernels: ", dtype_name(storage), " is not a 16-bit storage format (F16 or BF16)"));
}

// f rounded to nearest even (overflowing to inf in fp16, as __float2half does).
template <class T>
__host__ __device__ __forceinline__ T from_float(float f) {
  static_assert(kIsStorage<T>, "from_float: T is __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(f);
  else
    return __float2bfloat16_rn(f);
}

__host__ __device__ __forceinline__ unsigned short storage_bits(__half h) { return __half_as_ushort(h); }
__host__ __device__ __forceinline__ unsigned short storage_bits(__nv_bfloat16 h) { return __bfloat16_as_ushort(h); }

template <class T>
__host__ __device__ __forceinline__ T storage_from_bits(unsigned short bits) {
  static_assert(kIsStorage<T>, "storage_from_bits: T is __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, __half>)
    return __ushort_as_half(bits);
  else
    return __ushort_as_bfloat16(bits);
}

// Two 16-bit values as one 32-bit register (an mma operand, half of a vector store): `lo` is the
// lower-indexed element, in the low 16 bits.
template <class T>
__host__ __device__ __forceinline__ std::uint32_t pack2(T lo, T hi) {
  return std::uint32_t(storage_bits(lo)) | (std::uint32_t(storage_bits(hi)) << 16);
}

// The elements of such a register, as floats.
template <class T>
__host__ __device__ __forceinline__ float low_float(std::uint32_t pair) {
  return to_float(storage_from_bits<T>(static_cast<unsigned short>(pair & 0xffffu)));
}
template <class T>
__host__ __device__ __forceinline__ float high_float(std::uint32_t pair) {
  return to_float(storage_from_bits<T>(static_cast<unsigned short>(pair >> 16)));
}

}  // namespace sdgen::cuda

#define SDGEN_KERNEL(...) \
  ::sdgen::cuda::Kernel { __VA_ARGS__, #__VA_ARGS__ }

#if defined(SDGEN_CUDA_EMULATION)
#include "kernels/cuda/emu/wrappers.hpp"
#else

namespace sdgen::cuda {

// ---- the GPU implementation: bare pointers and inline PTX

template <class T>
class GlobalPtr {
 public:
  GlobalPtr() = default;
  __host__ __device__ GlobalPtr(T* data, std::size_t /*count*/, const char* /*name*/) : p_(data) {}
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  __host__ __device__ GlobalPtr(const GlobalPtr<U>& other) : p_(other.raw()) {}

  __device__ __forceinline__ T& operator[](std::ptrdiff_t i) const { return p_[i]; }
  __device__ __forceinline__ T& operator*() const { return *p_; }
  __host__ __device__ __forceinline__ GlobalPtr operator+(std::ptrdiff_t n) const {
    return GlobalPtr(p_ + n, 0, nullptr);
  }
  __host__ __device__ __forceinline__ GlobalPtr operator-(std::ptrdiff_t n) const {
    return GlobalPtr(p_ - n, 0, nullptr);
  }
  __host__ __device__ __forceinline__ GlobalPtr slice(std::ptrdiff_t offset, std::ptrdiff_t /*count*/) const {
    return *this + offset;
  }
  template <class U>
  __host__ __device__ __forceinline__ GlobalPtr<U> reinterpret() const {
    return GlobalPtr<U>(reinterpret_cast<U*>(p_), 0, nullptr);
  }
  __host__ __device__ __forceinline__ T* raw() const { return p_; }

  friend __device__ __forceinline__ T atomicAdd(GlobalPtr p, T v) { return ::atomicAdd(p.p_, v); }
  friend __device__ __forceinline__ T atomicMax(GlobalPtr p, T v) { return ::atomicMax(p.p_, v); }
  friend __device__ __forceinline__ T atomicMin(GlobalPtr p, T v) { return ::atomicMin(p.p_, v); }
  friend __device__ __forceinline__ T atomicCAS(GlobalPtr p, T compare, T v) { return ::atomicCAS(p.p_, compare, v); }

 private:
  T* p_ = nullptr;
};

template <class T>
GlobalPtr(T*, std::size_t, const char*) -> GlobalPtr<T>;

template <class T>
class SharedPtr {
 public:
  SharedPtr() = default;
  __device__ explicit SharedPtr(T* p) : p_(p) {}
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  __device__ SharedPtr(const SharedPtr<U>& other) : p_(other.raw()) {}

  __device__ __forceinline__ T& operator[](std::ptrdiff_t i) const { return p_[i]; }
  __device__ __forceinline__ T& operator*() const { return *p_; }
  __device__ __forceinline__ SharedPtr operator+(std::ptrdiff_t n) const { return SharedPtr(p_ + n); }
  __device__ __forceinline__ SharedPtr operator-(std::ptrdiff_t n) const { return SharedPtr(p_ - n); }
  __device__ __forceinline__ SharedPtr slice(std::ptrdiff_t offset, std::ptrdiff_t /*count*/) const {
    return *this + offset;
  }
  template <class U>
  __device__ __forceinline__ SharedPtr<U> reinterpret() const {
    return SharedPtr<U>(reinterpret_cast<U*>(p_));
  }
  __device__ __forceinline__ T* raw() const { return p_; }

  friend __device__ __forceinline__ T atomicAdd(SharedPtr p, T v) { return ::atomicAdd(p.p_, v); }
  friend __device__ __forceinline__ T atomicMax(SharedPtr p, T v) { return ::atomicMax(p.p_, v); }
  friend __device__ __forceinline__ T atomicMin(SharedPtr p, T v) { return ::atomicMin(p.p_, v); }
  friend __device__ __forceinline__ T atomicCAS(SharedPtr p, T compare, T v) { return ::atomicCAS(p.p_, compare, v); }

 private:
  T* p_ = nullptr;
};

// D = A·B + D on the tensor cores, A and B in the storage format T, C and D fp32.
template <class T>
__device__ __forceinline__ void mma_m16n8k16_row_col(float (&acc)[4], const std::uint32_t (&a)[4],
                                                     const std::uint32_t (&b)[2]) {
  static_assert(kIsStorage<T>, "mma: T is __half or __nv_bfloat16");
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// The "memory" clobbers keep the compiler from moving ordinary shared-memory stores across the
// asm statements that read (ldmatrix) or complete (cp.async.wait_group) shared memory.
template <int N, class T>
__device__ __forceinline__ void ldmatrix(std::uint32_t (&r)[N], SharedPtr<T> row) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  static_assert(sizeof(T) == 2, "ldmatrix moves 16-bit elements");
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row.raw()));
  if constexpr (N == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(address) : "memory");
  } else if constexpr (N == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(address)
                 : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  }
}

template <int N, class T>
__device__ __forceinline__ void ldmatrix_trans(std::uint32_t (&r)[N], SharedPtr<T> row) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  static_assert(sizeof(T) == 2, "ldmatrix moves 16-bit elements");
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row.raw()));
  if constexpr (N == 1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(address) : "memory");
  } else if constexpr (N == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(address)
                 : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  }
}

// .cg: cache in L2 only, the form whose copy size is always 16 bytes; bytes past src_bytes are
// written as zeros (how a tile is padded at a ragged edge).
template <class T>
__device__ __forceinline__ void cp_async_16(SharedPtr<T> dst, typename Identity<GlobalPtr<const T>>::type src,
                                            int src_bytes = 16) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(dst.raw()));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(src.raw()), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <class... P, class... A>
void launch(const Kernel<P...>& kernel, const LaunchConfig& config, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  // Above 48 KiB of dynamic shared memory a kernel must opt in (up to 163 KiB on sm_80), once per
  // kernel and size: the first launch of a kernel is outside any graph capture (the denoising
  // loop runs its first call eagerly), so a captured launch never sets an attribute.
  constexpr std::size_t kDefaultSharedLimit = 48 * 1024;
  thread_local std::unordered_map<const void*, std::size_t> allowed;  // kernel -> bytes it may use
  std::size_t& allowed_bytes = allowed.try_emplace(reinterpret_cast<const void*>(kernel.fn), kDefaultSharedLimit).first->second;
  if (config.shared_bytes > allowed_bytes) {
    const cudaError_t err = cudaFuncSetAttribute(kernel.fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(config.shared_bytes));
    if (err != cudaSuccess)
      throw BackendError(cat("kernel ", kernel.name, ": cannot allow ", config.shared_bytes,
                             " bytes of dynamic shared memory: ", cudaGetErrorString(err)));
    allowed_bytes = config.shared_bytes;
  }
  kernel.fn<<<config.grid, config.block, config.shared_bytes, config.stream>>>(
      pass_argument<P>(std::forward<A>(args))...);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw BackendError(cat("launching kernel ", kernel.name, " failed: ", cudaGetErrorString(err)));
}

}  // namespace sdgen::cuda

#define SDGEN_SHARED(T, name, count)                      \
  __shared__ __align__(16) T name##_sdgen_storage[count]; \
  const ::sdgen::cuda::SharedPtr<T> name(name##_sdgen_storage)

#define SDGEN_DYNAMIC_SHARED(T, name)                                   \
  extern __shared__ __align__(16) unsigned char name##_sdgen_storage[]; \
  const ::sdgen::cuda::SharedPtr<T> name(reinterpret_cast<T*>(name##_sdgen_storage))

#endif
