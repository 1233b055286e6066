// CUDA's built-in value types, as the emulation build spells them.
//
// Kernel sources name `dim3`, `uint3`, `__half`, `__half2` and `__nv_bfloat16` exactly as they do
// under nvcc, so the emulator has to provide types of those names in the global namespace, where
// CUDA puts them. They are plain structs: `__half` stores the IEEE binary16 bits and
// `__nv_bfloat16` the top 16 bits of an fp32, both converting through lib/core/half.hpp, which is
// bit-exact with the GPU's round-to-nearest-even conversions, so a 16-bit value read by an
// emulated kernel equals the one the GPU would read. Only the conversions and bit casts that
// kernels use are here; 16-bit arithmetic is not (our kernels compute in fp32 and store 16 bits).
//
// Only included by the emulation build (kernels/cuda/device_api.cuh chooses); never next to
// <cuda_runtime.h>, whose types these would collide with.
#pragma once

#include <bit>
#include <cstdint>

#include "lib/core/half.hpp"

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

// As in CUDA, unset dimensions are 1, and an integer converts implicitly: `.grid = 4`.
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// CUDA's __half converts implicitly from and to float (unless a build defines
// __CUDA_NO_HALF_CONVERSIONS__, which sdgen does not); the emulated one behaves the same.
struct __half {
  std::uint16_t bits = 0;
  __half() = default;
  __half(float f) : bits(sdgen::f32_to_f16(f)) {}
  operator float() const { return sdgen::f16_to_f32(bits); }
};

// CUDA's 16-byte vector, 16-byte aligned as on the GPU: kernels move 8 fp16 or 4 fp32 values per
// load or store with it, and GlobalPtr::reinterpret<uint4>() then checks the alignment.
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

// CUDA's bf16 (cuda_bf16.h), converting implicitly like __half.
struct __nv_bfloat16 {
  std::uint16_t bits = 0;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : bits(sdgen::f32_to_bf16(f)) {}
  operator float() const { return sdgen::bf16_to_f32(bits); }
};

struct __half2 {
  __half x, y;  // x is the low 16 bits of the 32-bit register, as on the GPU
};

inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline __half2 __halves2half2(__half lo, __half hi) { return __half2{lo, hi}; }
inline __half2 __floats2half2_rn(float lo, float hi) { return __half2{__half(lo), __half(hi)}; }
inline float __low2float(__half2 h) { return float(h.x); }
inline float __high2float(__half2 h) { return float(h.y); }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline __half __ushort_as_half(unsigned short u) {
  __half h;
  h.bits = u;
  return h;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
  __nv_bfloat16 h;
  h.bits = u;
  return h;
}
inline __half __float2half_rn(float f) { return __half(f); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
