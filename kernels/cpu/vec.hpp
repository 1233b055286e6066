// Sixteen-lane float vectors and the math the CPU kernels need on them (exp, erf, tanh, sigmoid,
// the activations, bf16 rounding).
//
// Why GCC/Clang vector extensions and not intrinsics or plain loops: plain loops with exp or erf
// in them do not auto-vectorise (GCC gives up on the calls and on the reductions, which it may not
// reorder without -ffast-math), and intrinsics tie the code to one ISA. A 16-lane extension vector
// becomes one zmm register when the kernels are built with -march=native on an AVX-512 machine
// (SDGEN_CPU_NATIVE, the default), and a pair of ymm or four xmm registers elsewhere; the source
// is the same. Measured in a prototype of attention.cpp's softmax on this machine, [2, 8 heads,
// 4096 x 4096]: 316 ms with std::exp (the loop stays scalar) against 46 ms with vexp.
//
// Accuracy: exp is Cody-Waite range reduction (x = n ln2 + r, |r| <= ln2/2) and a degree-6
// polynomial for e^r (Cephes' expf coefficients), within a few ulp of std::exp over [-87, 88];
// erf is Abramowitz & Stegun 7.1.26 (absolute error about 2.5e-7); tanh and sigmoid derive from
// exp. tests/ops checks each against the std:: functions in double.
#pragma once

#include <cstdint>
#include <cstring>

namespace sdgen::cpu {

inline constexpr int kLanes = 16;
typedef float f32x16 __attribute__((vector_size(64)));
typedef std::int32_t i32x16 __attribute__((vector_size(64)));
typedef std::uint32_t u32x16 __attribute__((vector_size(64)));

inline f32x16 splat(float v) { return f32x16{} + v; }

// Unaligned loads and stores (memcpy compiles to one vmovups).
inline f32x16 load(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
// The first n lanes (n < 16); the rest are zero.
inline f32x16 load_partial(const float* p, int n) {
  f32x16 v{};
  std::memcpy(&v, p, sizeof(float) * static_cast<unsigned>(n));
  return v;
}
inline void store_partial(float* p, f32x16 v, int n) { std::memcpy(p, &v, sizeof(float) * static_cast<unsigned>(n)); }

inline f32x16 vmax(f32x16 a, f32x16 b) { return a > b ? a : b; }
inline f32x16 vmin(f32x16 a, f32x16 b) { return a < b ? a : b; }
inline f32x16 vabs(f32x16 a) { return (f32x16)((u32x16)a & 0x7fffffffu); }

inline float hsum(f32x16 v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}
inline float hmax(f32x16 v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = m > v[i] ? m : v[i];
  return m;
}

// e^x. Inputs below -87.3 give 0 (torch's float exp underflows there too, to a denormal or 0);
// above 88.7, +inf; NaN stays NaN.
inline f32x16 vexp(f32x16 x) {
  const f32x16 hi = splat(88.7228f), lo = splat(-87.3365f);
  const i32x16 over = x > hi;  // all-ones lanes where true
  const i32x16 under = x < lo;
  f32x16 xc = vmin(vmax(x, lo), hi);
  // n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest in the default rounding mode).
  const f32x16 shifter = splat(12582912.0f);
  f32x16 n = (xc * 1.44269504088896341f + shifter) - shifter;
  // r = x - n ln2 in two parts, so that r keeps its low bits.
  f32x16 r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  f32x16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // Scale by 2^n through the exponent bits; n is in [-126, 128], so split 2^n = 2^(n/2) 2^(n - n/2)
  // to stay representable at both ends.
  const i32x16 ni = __builtin_convertvector(n, i32x16);
  const i32x16 n1 = ni >> 1, n2 = ni - n1;
  const f32x16 s1 = (f32x16)((n1 + 127) << 23), s2 = (f32x16)((n2 + 127) << 23);
  f32x16 y = p * s1 * s2;
  y = (f32x16)((i32x16)y & ~under);                          // below range: 0
  y = (f32x16)(((i32x16)y & ~over) | (over & 0x7f800000));   // above: inf
  return x != x ? x : y;                                      // NaN passes through
}

// e^x for x <= 0 (or NaN), the softmax case: no overflow to handle and 2^n stays normal down to
// the clamp, so it is the same polynomial with half the bookkeeping. Results below e^-87.3 are
// e^-87.3 (1.2e-38) instead of smaller: negligible next to the running sum, which is at least 1.
inline f32x16 vexp_nonpositive(f32x16 x) {
  const f32x16 lo = splat(-87.3365f);
  const f32x16 xc = x < lo ? lo : x;  // NaN compares false and passes through
  const f32x16 shifter = splat(12582912.0f);
  const f32x16 n = (xc * 1.44269504088896341f + shifter) - shifter;
  f32x16 r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  f32x16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * (f32x16)((__builtin_convertvector(n, i32x16) + 127) << 23);
}

inline f32x16 vsigmoid(f32x16 x) { return 1.0f / (1.0f + vexp(-x)); }

// tanh(x) = 1 - 2 / (e^{2x} + 1); exact limits at +-inf.
inline f32x16 vtanh(f32x16 x) { return 1.0f - 2.0f / (vexp(2.0f * x) + 1.0f); }

// erf(x) = 1 - t (a1 + t (a2 + ...)) e^{-x^2}, t = 1 / (1 + p |x|) (Abramowitz & Stegun 7.1.26:
// absolute error below 1.5e-7 in exact arithmetic, about 2.5e-7 in float), odd in x.
inline f32x16 verf(f32x16 x) {
  const f32x16 ax = vabs(x);
  const f32x16 t = 1.0f / (1.0f + 0.3275911f * ax);
  f32x16 poly = splat(1.061405429f);
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const f32x16 y = 1.0f - poly * t * vexp(-ax * ax);
  return (f32x16)(((u32x16)y & 0x7fffffffu) | ((u32x16)x & 0x80000000u));
}

// The activations of backend.hpp's Act, as torch defines them.
inline f32x16 vsilu(f32x16 x) { return x * vsigmoid(x); }
inline f32x16 vgelu(f32x16 x) { return 0.5f * x * (1.0f + verf(x * 0.70710678118654752f)); }
inline f32x16 vgelu_tanh(f32x16 x) {
  return 0.5f * x * (1.0f + vtanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}
inline f32x16 vquick_gelu(f32x16 x) { return x * vsigmoid(1.702f * x); }

// Round to bf16, nearest even (finite inputs; an infinity stays infinite), as the upper 16 bits.
inline u32x16 to_bf16_bits(f32x16 v) {
  const u32x16 b = (u32x16)v;
  return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}
typedef std::uint16_t u16x16 __attribute__((vector_size(32)));
inline void store_bf16(std::uint16_t* p, f32x16 v) {
  const u16x16 h = __builtin_convertvector(to_bf16_bits(v), u16x16);  // one narrowing instruction
  std::memcpy(p, &h, sizeof h);
}

}  // namespace sdgen::cpu
