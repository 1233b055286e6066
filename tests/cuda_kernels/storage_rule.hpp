// The tolerance rule for the CUDA kernels, in either 16-bit storage format (fp16 or bf16), shared by
// every CUDA kernel test.
//
// A kernel that stores 16 bits and accumulates in fp32 cannot match an fp32 reference exactly, and
// a fixed tolerance would either hide real defects in small outputs or fail correct kernels on
// large ones. So each test also computes the same operation *naively in the storage format*: in the
// obvious loop order, every intermediate rounded to fp16 (or bf16), the way a kernel with no fp32
// accumulation would. The rule, per output tensor:
//
//     max |kernel - fp32 reference|  <=  2 * max |naive 16-bit - fp32 reference|  +  absolute_term
//
// i.e. the kernel may be at most twice as wrong as the worst honest 16-bit computation, plus a
// small absolute term the test states and justifies (typically one ulp of the output's magnitude,
// covering the final rounding of the output when the naive error happens to be tiny). The fp32
// reference is the reference backend (tests/support/reference_backend.hpp) run on the same rounded
// inputs, so input rounding is not counted as kernel error. NaN or Inf anywhere in the kernel's
// output fails, and so does an output element left unwritten (output buffers start as 0xff bytes,
// a NaN pattern in both formats).
//
// Format<T> says what a test needs of a format: its name, its mantissa width (half an ulp is
// 2^-(bits + 1) relative: 2^-11 for fp16, 2^-8 for bf16) and its bit conversions, which are
// lib/core/half.hpp's, bit-exact with the GPU's round-to-nearest-even. A test written for T runs
// for both: TEMPLATE_TEST_CASE(..., __half, __nv_bfloat16).
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/device_api.cuh"
#include "lib/core/half.hpp"

namespace sdgen::test {

template <class T>
struct Format;

template <>
struct Format<__half> {
  static constexpr const char* kName = "fp16";
  static constexpr int kMantissaBits = 10;
  static constexpr std::uint16_t kNan = 0x7e00;
  static constexpr double kMinNormal = 0x1p-14;
  static std::uint16_t bits(float x) { return f32_to_f16(x); }
  static float value(std::uint16_t b) { return f16_to_f32(b); }
};

template <>
struct Format<__nv_bfloat16> {
  static constexpr const char* kName = "bf16";
  static constexpr int kMantissaBits = 7;
  static constexpr std::uint16_t kNan = 0x7fc0;
  static constexpr double kMinNormal = 0x1p-126;
  static std::uint16_t bits(float x) { return f32_to_bf16(x); }
  static float value(std::uint16_t b) { return bf16_to_f32(b); }
};

// x rounded to T, as a float.
template <class T>
float round_to(float x) {
  return Format<T>::value(Format<T>::bits(x));
}

// Half an ulp of T at `magnitude`: the bound of one rounding to T, 2^-(mantissa bits + 1) relative.
template <class T>
double half_ulp(double magnitude) {
  return std::ldexp(magnitude, -(Format<T>::kMantissaBits + 1));
}

template <class T>
std::vector<std::uint16_t> to_bits(std::span<const float> x) {
  std::vector<std::uint16_t> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = Format<T>::bits(x[i]);
  return out;
}

template <class T>
std::vector<float> from_bits(std::span<const std::uint16_t> x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = Format<T>::value(x[i]);
  return out;
}

// N(0, sigma^2) draws already rounded to T, so the kernel and both references see the same
// inputs. Never all zeros.
template <class T>
std::vector<float> randn(std::size_t n, std::uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = round_to<T>(dist(rng));
  return v;
}

// Half of T's smallest subnormal step: the rounding bound of an output below T's normal range
// (2^-25 in fp16, 2^-134 in bf16), where the relative term of half_ulp vanishes.
template <class T>
double half_subnormal_step() {
  return half_ulp<T>(Format<T>::kMinNormal);
}

// Which formats run a test case. fp16 runs every case; the slowest cases in emulation are left out
// of bf16 (the same kernels, instantiated for another type: the smaller cases cover each path), and
// a few cases are bf16's own (values past fp16's range).
enum class Formats { Both, Fp16Only, Bf16Only };

template <class T>
bool runs_in(Formats f) {
  return f == Formats::Both || (f == Formats::Fp16Only) == std::is_same_v<T, __half>;
}

// The fp16 instances, under the names the fp16-only tests use.
inline float round_to_f16(float x) { return round_to<__half>(x); }
inline std::vector<std::uint16_t> to_f16_bits(std::span<const float> x) { return to_bits<__half>(x); }
inline std::vector<float> from_f16_bits(std::span<const std::uint16_t> x) { return from_bits<__half>(x); }
inline std::vector<float> randn_f16(std::size_t n, std::uint64_t seed, float sigma = 1.0f) {
  return randn<__half>(n, seed, sigma);
}

inline double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// Checks the rule above and reports the three numbers either way (visible with -s). `naive` is the
// naive computation in the kernel's storage format, named by `format` in the message.
inline void check_storage_rule(const char* format, std::span<const float> kernel, std::span<const float> reference32,
                               std::span<const float> naive, double absolute_term, const std::string& what) {
  REQUIRE(kernel.size() == reference32.size());
  REQUIRE(naive.size() == reference32.size());
  std::size_t bad = 0;
  for (float v : kernel) bad += std::isfinite(v) ? 0 : 1;
  INFO(what << " (" << format << "): " << bad << " non-finite outputs");
  REQUIRE(bad == 0);
  const double kernel_err = max_abs_diff(kernel, reference32);
  const double naive_err = max_abs_diff(naive, reference32);
  INFO(what << " (" << format << "): kernel max|err| " << kernel_err << ", naive " << format << " max|err| "
            << naive_err << ", absolute term " << absolute_term);
  CHECK(kernel_err <= 2.0 * naive_err + absolute_term);
}

template <class T>
void check_storage_rule(std::span<const float> kernel, std::span<const float> reference32, std::span<const float> naive,
                        double absolute_term, const std::string& what) {
  check_storage_rule(Format<T>::kName, kernel, reference32, naive, absolute_term, what);
}

inline void check_fp16_rule(std::span<const float> kernel, std::span<const float> reference32,
                            std::span<const float> naive16, double absolute_term, const std::string& what) {
  check_storage_rule<__half>(kernel, reference32, naive16, absolute_term, what);
}

}  // namespace sdgen::test
