// A test's device buffer, in whichever build the test is compiled: host memory for the CUDA
// emulator, cudaMalloc'd memory for a GPU. It lets the sample-kernel tests be written once and run
// in both (sample_kernels_test.cpp and sample_kernels_gpu.cu).
//
// Allocations are 256-byte aligned in both builds, as cudaMalloc's are, so an alignment defect
// (a misaligned cp.async or vector access) shows in emulation too. An output buffer made from a
// size alone starts filled with 0xff bytes (NaN for floats, -1 for integers), so an element a
// kernel forgot to write cannot pass for a correct one.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/cuda/device_api.cuh"
#include "lib/core/error.hpp"

namespace sdgen::test {

namespace device_memory {

#if defined(SDGEN_CUDA_EMULATION)
inline void* allocate(std::size_t bytes) {
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (p == nullptr) throw Error("test buffer allocation failed");
  return p;
}
inline void release(void* p) { std::free(p); }
inline void upload(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
inline void download(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
inline void fill(void* dst, int byte, std::size_t bytes) { std::memset(dst, byte, bytes); }
#else
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw BackendError(cat(what, " failed: ", cudaGetErrorString(err)));
}
inline void* allocate(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}
inline void release(void* p) { cudaFree(p); }
inline void upload(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}
// Waits for the kernels before it, so their errors surface here.
inline void download(void* dst, const void* src, std::size_t bytes) {
  check(cudaDeviceSynchronize(), "kernel execution");
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}
inline void fill(void* dst, int byte, std::size_t bytes) { check(cudaMemset(dst, byte, bytes), "cudaMemset"); }
#endif

}  // namespace device_memory

template <class T>
class DeviceBuffer {
 public:
  // `count` elements of 0xff bytes.
  explicit DeviceBuffer(std::size_t count) : count_(count), data_(allocate(count)) {
    device_memory::fill(data_.get(), 0xff, bytes());
  }
  // A copy of `host`, whose elements have T's size and representation (e.g. fp16 bit patterns
  // for __half).
  template <class H>
  explicit DeviceBuffer(const std::vector<H>& host) : count_(host.size()), data_(allocate(host.size())) {
    static_assert(sizeof(H) == sizeof(T) && std::is_trivially_copyable_v<H>);
    device_memory::upload(data_.get(), host.data(), bytes());
  }

  cuda::GlobalPtr<T> view(const char* name) const { return cuda::GlobalPtr<T>(data_.get(), count_, name); }

  template <class H = T>
  std::vector<H> to_host() const {
    static_assert(sizeof(H) == sizeof(T) && std::is_trivially_copyable_v<H>);
    std::vector<H> host(count_);
    device_memory::download(host.data(), data_.get(), bytes());
    return host;
  }

 private:
  struct Release {
    void operator()(T* p) const { device_memory::release(p); }
  };
  static T* allocate(std::size_t count) { return static_cast<T*>(device_memory::allocate(count * sizeof(T))); }
  std::size_t bytes() const { return count_ * sizeof(T); }

  std::size_t count_;
  std::unique_ptr<T, Release> data_;
};

}  // namespace sdgen::test
