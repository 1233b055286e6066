// Test helpers for the op tests: owning host buffers with Tensor views (contiguous or strided),
// seeded random fills, and element access through strides, so that the naive references index
// tensors exactly as the op contract describes them.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "lib/core/half.hpp"
#include "kernels/backend.hpp"
#include "kernels/op_checks.hpp"
#include "lib/core/tensor.hpp"

namespace sdgen::test {

// fp32 unit roundoff (round to nearest): every fp32 operation is exact to within this relative
// error; bf16 keeps 8 significant bits, so rounding to it costs up to 2^-9.
inline constexpr double kU32 = 0x1p-24;
inline constexpr double kUBf16 = 0x1p-9;

// A tensor that owns its memory. `t` views it (possibly with gaps between rows); a copy views its
// own copy of the memory at the same offset.
struct HostTensor {
  std::vector<float> data;
  Tensor t;

  HostTensor() = default;
  HostTensor(const HostTensor& o) : data(o.data), t(o.t) { repoint(o); }
  HostTensor& operator=(const HostTensor& o) {
    data = o.data;
    t = o.t;
    repoint(o);
    return *this;
  }
  HostTensor(HostTensor&&) = default;  // a moved vector keeps its buffer, so t stays valid
  HostTensor& operator=(HostTensor&&) = default;

  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }

 private:
  void repoint(const HostTensor& o) {
    const auto* p = static_cast<const float*>(o.t.data);
    if (p >= o.data.data() && p < o.data.data() + o.data.size()) t.data = data.data() + (p - o.data.data());
  }
};

// Contiguous F32 tensor filled with N(0, sigma^2) draws.
inline HostTensor randn(const Shape& shape, std::uint64_t seed, float sigma = 1.0f) {
  HostTensor h;
  h.data.resize(static_cast<std::size_t>(shape.numel()));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  for (float& v : h.data) v = dist(rng);
  h.t = Tensor::contiguous(h.data.data(), DType::F32, shape);
  return h;
}

inline HostTensor zeros(const Shape& shape) {
  HostTensor h;
  h.data.assign(static_cast<std::size_t>(shape.numel()), 0.0f);
  h.t = Tensor::contiguous(h.data.data(), DType::F32, shape);
  return h;
}

// A [B, N, C] view with row stride `row_stride` >= C (and batch stride N * row_stride) over random
// memory: the gaps hold random numbers too, so reading them shows up as a wrong answer.
inline HostTensor randn_rows(std::int64_t b, std::int64_t n, std::int64_t c, std::int64_t row_stride,
                             std::uint64_t seed, float sigma = 1.0f) {
  HostTensor h = randn(Shape{b * n * row_stride}, seed, sigma);
  h.t = Tensor{h.data.data(), DType::F32, Shape{b, n, c}, Strides{n * row_stride, row_stride, 1}, {}};
  return h;
}

// Element of a strided F32 tensor by full index.
inline double at(const Tensor& t, std::initializer_list<std::int64_t> idx) {
  std::int64_t off = 0;
  int i = 0;
  for (auto v : idx) off += v * t.strides[i++];
  return static_cast<double>(static_cast<const float*>(t.data)[off]);
}

// Copies of a contiguous F32 tensor's values in BF16 / F16 (for weights stored that way).
struct HalfTensor {
  std::vector<std::uint16_t> data;
  Tensor t;
};
inline HalfTensor to_bf16(const HostTensor& h) {
  HalfTensor r;
  for (float v : h.data) r.data.push_back(f32_to_bf16(v));
  r.t = Tensor::contiguous(r.data.data(), DType::BF16, h.t.shape);
  return r;
}
inline HalfTensor to_f16(const HostTensor& h) {
  HalfTensor r;
  for (float v : h.data) r.data.push_back(f32_to_f16(v));
  r.t = Tensor::contiguous(r.data.data(), DType::F16, h.t.shape);
  return r;
}
// The values a BF16 / F16 copy holds, back in F32 (what the backend actually multiplies).
inline HostTensor widened(const HalfTensor& h) {
  HostTensor r;
  for (auto v : h.data) r.data.push_back(h.t.dtype == DType::BF16 ? bf16_to_f32(v) : f16_to_f32(v));
  r.t = Tensor::contiguous(r.data.data(), DType::F32, h.t.shape);
  return r;
}

inline double round_bf16(double v) { return bf16_to_f32(f32_to_bf16(static_cast<float>(v))); }

// Error of evaluating an activation in float at x, beyond the error already in x: a few roundings
// relative to the result (growing with |x| through exp's argument), erf's 2.5e-7 absolute for the
// GELUs, and the flush of results below 1e-30. (cpu_ops_test checks the CPU backend against libm
// with it.)
inline double act_tol(Act a, double x, double ref) {
  double tol = (16.0 + 4.0 * std::fabs(x)) * kU32 * std::fabs(ref) + 1e-30;
  if (a == Act::Gelu || a == Act::GeluTanh) tol += 2e-7 * std::fabs(x);
  return tol;
}

// |act'| is at most 1.13 for every activation here: error in the argument passes through scaled
// by at most that.
inline constexpr double kActSlope = 1.13;

}  // namespace sdgen::test
