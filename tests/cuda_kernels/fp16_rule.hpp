// The tolerance rule for fp16 kernels, shared by every CUDA kernel test.
//
// A kernel that stores fp16 and accumulates in fp32 cannot match an fp32 reference exactly, and a
// fixed tolerance would either hide real defects in small outputs or fail correct kernels on large
// ones. So each test also computes the same operation *naively in fp16*: in the obvious loop order,
// every intermediate rounded to fp16 (lib/core/half.hpp), the way an fp16 kernel with no fp32
// accumulation would. The rule, per output tensor:
//
//     max |kernel - fp32 reference|  <=  2 * max |naive fp16 - fp32 reference|  +  absolute_term
//
// i.e. the kernel may be at most twice as wrong as the worst honest fp16 computation, plus a small
// absolute term the test states and justifies (typically one fp16 ulp of the output's magnitude,
// covering the final rounding of the output to fp16 when the naive error happens to be tiny).
// The fp32 reference is the reference backend (tests/support/reference_backend.hpp) run on the
// same fp16-rounded inputs, so input rounding is not counted as kernel error. NaN or Inf anywhere
// in the kernel's output fails, and so does an output element left unwritten (output buffers
// start as 0xff bytes, a NaN pattern).
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lib/core/half.hpp"

namespace sdgen::test {

inline float round_to_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

inline std::vector<std::uint16_t> to_f16_bits(std::span<const float> x) {
  std::vector<std::uint16_t> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = f32_to_f16(x[i]);
  return out;
}

inline std::vector<float> from_f16_bits(std::span<const std::uint16_t> x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = f16_to_f32(x[i]);
  return out;
}

// N(0, sigma^2) draws already rounded to fp16, so the kernel and both references see the same
// inputs. Never all zeros.
inline std::vector<float> randn_f16(std::size_t n, std::uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = round_to_f16(dist(rng));
  return v;
}

inline double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// Checks the rule above and reports the three numbers either way (visible with -s).
inline void check_fp16_rule(std::span<const float> kernel, std::span<const float> reference32,
                            std::span<const float> naive16, double absolute_term, const std::string& what) {
  REQUIRE(kernel.size() == reference32.size());
  REQUIRE(naive16.size() == reference32.size());
  std::size_t bad = 0;
  for (float v : kernel) bad += std::isfinite(v) ? 0 : 1;
  INFO(what << ": " << bad << " non-finite outputs");
  REQUIRE(bad == 0);
  const double kernel_err = max_abs_diff(kernel, reference32);
  const double naive_err = max_abs_diff(naive16, reference32);
  INFO(what << ": kernel max|err| " << kernel_err << ", naive fp16 max|err| " << naive_err << ", absolute term "
            << absolute_term);
  CHECK(kernel_err <= 2.0 * naive_err + absolute_term);
}

}  // namespace sdgen::test
