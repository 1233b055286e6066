// Linear and conv2d cases for the GEMM layer of the CUDA backend (kernels/cuda/gemm_plan.hpp,
// gemm_steps.cuh, gemm.cu), shared by the two tests that run whole ops: gemm_emulated_test.cpp (the
// plan's kernels in emulation, a host loop in cuBLASLt's place) and gemm_gpu_test.cu (LtGemm on a
// GPU). A case runs in a storage format T (__half or __nv_bfloat16, every operand and the output in
// it): it builds random inputs rounded to T in device buffers between poisoned guard bands, hands
// the op to the test's runner, and checks the output against the reference backend (fp32, on the
// same rounded values) and a naive computation in T written here.
//
// Two checks per output, with h_T = half an ulp of T relative: 2^-11 in fp16, 2^-8 in bf16:
//  * the project's storage rule (storage_rule.hpp) against the naive computation in T (every
//    product and partial sum rounded to T), with h_T of the largest output as absolute term (the
//    final rounding). For a dot product over hundreds of terms the naive error is large (in bf16
//    larger still), so this rule is loose here;
//  * the sharp one, per element (half_tensor_support.hpp): |out - ref| <= h_T |ref| (the final
//    rounding to T) plus an absolute term made of what the GEMM path may add, computed from the
//    inputs (never from either result), with u = 2^-24 (fp32's, the accumulator's: the same in
//    both formats):
//      - fp32 accumulation of the K products and the bias, C and scale terms: at most (K + 3) u A
//        for a round-to-nearest accumulator, A = sum |x_k w_k| + |bias| + |add| + |residual| (times
//        |s|); allowed twice over, 2 (K + 3) u A, for tensor cores whose accumulator may truncate;
//      - a conv's bias s * (bias + add), which the plan rounds to T in scratch (cuBLASLt's bias has
//        D's type): h_T |s (bias + add)| (allowed in every conv case);
//      - with an activation: one more rounding of the pre-activation z to T (the GEMM's output,
//        which the pass after it reads), h_T |z|, or cuBLASLt's GELU, whose tanh may be the
//        hardware's approximation, relative error 2^-11 whatever the format: the larger of the two,
//        max(h_T, 2^-11) |z|; and the activation's fp32 evaluation, 1e-6 (1 + |z|) (as
//        elementwise_test.cpp);
//      - the errors before the activation pass through it: they are multiplied by its largest
//        slope, 1.13 for GELU (1.1 for SiLU, 1.14 for quick-GELU), allowed as 1.2;
//      - one subnormal step of T (2^-24 in fp16, 2^-133 in bf16: twice h_T of the smallest normal,
//        for the GEMM's rounding and the pass's) for outputs too small for the relative terms.
//    A wrong tap, offset, stride, bias or scale makes errors of the order of the values themselves;
//    so does reading bf16 operands as fp16, or storing the result in the other format.
// Besides: no NaN or Inf, the guard bands and the padding columns of out untouched (a linear's out
// and residual may be column slices of wider rows, whose other columns hold poison or big values
// that must not be read), and the weights scaled by 1/sqrt(K) so every output is of order 1.
//
// Which formats run a case (Formats): fp16 keeps every case of the tests; bf16 runs the ones that
// cover each path once (the emulated runs are slow, and run again under ASan in CI).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/cuda/gemm_plan.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::gemm_support {

using half_tensors::Guarded;

// The optional operands of a case.
enum Operands : unsigned { kNone = 0, kBias = 1, kAdd = 2, kResidual = 4 };
inline constexpr double kUnit = 0x1p-24;    // fp32's unit roundoff: the accumulator's
inline constexpr double kTanhApprox = 0x1p-11;  // cuBLASLt's GELU tanh, relative
inline constexpr double kActSlope = 1.2;

template <class T>
float round_t(double v) {
  return round_to<T>(float(v));
}

// rows x cols draws N(0, sigma^2) rounded to T in rows of `stride`; the columns past cols hold
// values of a few thousand, which would show in any output that read them.
template <class T>
std::vector<float> padded_rows(std::int64_t rows, std::int64_t cols, std::int64_t stride, std::uint64_t seed,
                               float sigma = 1.0f) {
  std::vector<float> v = randn<T>(std::size_t(rows * stride), seed, sigma);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = cols; c < stride; ++c) v[std::size_t(r * stride + c)] = round_t<T>(3000.0 + double(c));
  return v;
}

inline Tensor rows_tensor(std::vector<float>& data, std::int64_t rows, std::int64_t cols, std::int64_t stride) {
  return Tensor{data.data(), DType::F32, Shape{rows, cols}, Strides{stride, 1}};
}

template <class T>
const void* address(const Guarded<T>& t) {
  return t.view("operand").raw();
}
template <class T>
void* writable_address(const Guarded<T>& t) {
  return t.view("out").raw();
}

// The per-element absolute term described at the top.
struct ErrorTerms {
  double k = 0;            // products accumulated
  double scale = 1;        // |s|
  double abs_sum = 0;      // A: sum |x w| + |bias| + |add| + |residual|
  double scaled_bias = 0;  // a conv's |s (bias + add)|
  double z = 0;            // the pre-activation value
  bool activation = false;

  template <class T>
  double absolute() const {
    double before = 2.0 * (k + 3.0) * kUnit * scale * abs_sum + half_ulp<T>(scaled_bias);
    double term = 2.0 * half_ulp<T>(Format<T>::kMinNormal);
    if (activation) {
      before += std::max(half_ulp<T>(std::fabs(z)), kTanhApprox * std::fabs(z));
      term += 1e-6 * (1.0 + std::fabs(z));
      before *= kActSlope;
    }
    return term + before;
  }
};

// Rows of `stride` in `all`: the view's elements, and a count of padding elements not left as the
// poison (NaN) they started as.
struct RowsResult {
  std::vector<float> values;
  std::size_t padding_touched = 0;
};

inline RowsResult split_rows(const std::vector<float>& all, std::int64_t rows, std::int64_t cols, std::int64_t stride) {
  RowsResult r;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t c = 0; c < stride; ++c) {
      const float v = all[std::size_t(i * stride + c)];
      if (c < cols)
        r.values.push_back(v);
      else
        r.padding_touched += std::isnan(v) ? 0 : 1;
    }
  return r;
}

template <class T>
void check_outputs(const RowsResult& got, const std::vector<float>& ref, const std::vector<float>& naive,
                          const std::vector<ErrorTerms>& terms, const std::string& what) {
  INFO(what << ": padding columns of out overwritten: " << got.padding_touched);
  CHECK(got.padding_touched == 0);
  check_storage_rule<T>(got.values, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
  half_tensors::check_each_element<T>(
      got.values, ref, [&](std::size_t i) { return terms[i].template absolute<T>(); }, what);
}

// ---- linear

struct LinearCase {
  std::int64_t rows, k, n;
  std::int64_t x_pad, out_pad, residual_pad;  // elements past each row's columns (column slices)
  unsigned operands;
  Act act;
  std::size_t misalign;  // every tensor this many elements past a 16-byte boundary
  const char* why;
  Formats formats = Formats::Both;
};

// Runs the case in T unless it is not one of its formats. run(op) must compute the op on T data
// (and have finished when Guarded<T>::values() returns).
template <class T, class Run>
void check_linear_case(const LinearCase& c, Run&& run) {
  if (!runs_in<T>(c.formats)) return;
  INFO(Format<T>::kName << ": " << c.why);
  const bool has_bias = (c.operands & kBias) != 0;
  const bool has_residual = (c.operands & kResidual) != 0;
  const std::int64_t xs = c.k + c.x_pad, os = c.n + c.out_pad, rs = c.n + c.residual_pad;
  const std::uint64_t seed = std::uint64_t(c.rows * 1000003 + c.k * 101 + c.n);
  std::vector<float> x = padded_rows<T>(c.rows, c.k, xs, seed);
  std::vector<float> w = randn<T>(std::size_t(c.n * c.k), seed + 1, float(1.0 / std::sqrt(double(c.k))));
  std::vector<float> bias = randn<T>(std::size_t(c.n), seed + 2);
  std::vector<float> residual = padded_rows<T>(c.rows, c.n, rs, seed + 3);

  Guarded<T> d_x(x, c.misalign), d_w(w, c.misalign), d_bias(bias, c.misalign), d_residual(residual, c.misalign);
  Guarded<T> d_out(std::size_t(c.rows * os), c.misalign);
  const cuda::GemmLinear op{
      .geometry = {.x = {c.rows, c.k, xs},
                   .out = {c.rows, c.n, os},
                   .residual = has_residual ? RowsView{c.rows, c.n, rs} : RowsView{},
                   .n = c.n,
                   .k = c.k},
      .x = address(d_x),
      .w = address(d_w),
      .bias = has_bias ? address(d_bias) : nullptr,
      .residual = has_residual ? address(d_residual) : nullptr,
      .out = writable_address(d_out),
      .act = c.act};
  run(op);
  const RowsResult got = split_rows(d_out.values(), c.rows, c.n, os);

  std::vector<float> ref(std::size_t(c.rows * c.n));
  Tensor t_bias = Tensor::contiguous(bias.data(), DType::F32, Shape{c.n});
  Tensor t_residual = rows_tensor(residual, c.rows, c.n, rs);
  ReferenceBackend().linear(rows_tensor(x, c.rows, c.k, xs), Tensor::contiguous(w.data(), DType::F32, Shape{c.n, c.k}),
                            Tensor::contiguous(ref.data(), DType::F32, Shape{c.rows, c.n}),
                            {.bias = has_bias ? &t_bias : nullptr, .act = c.act,
                             .residual = has_residual ? &t_residual : nullptr});

  std::vector<float> naive(ref.size());
  std::vector<ErrorTerms> terms(ref.size());
  for (std::int64_t r = 0; r < c.rows; ++r)
    for (std::int64_t j = 0; j < c.n; ++j) {
      double z = 0.0, abs_sum = 0.0;
      float acc = 0.0f;  // in T
      for (std::int64_t i = 0; i < c.k; ++i) {
        const double p = double(x[std::size_t(r * xs + i)]) * double(w[std::size_t(j * c.k + i)]);
        z += p;
        abs_sum += std::fabs(p);
        acc = round_t<T>(double(acc) + round_t<T>(p));
      }
      const double b = has_bias ? double(bias[std::size_t(j)]) : 0.0;
      const double res = has_residual ? double(residual[std::size_t(r * rs + j)]) : 0.0;
      z += b;
      abs_sum += std::fabs(b) + std::fabs(res);
      const float act_t = round_t<T>(reference_act(c.act, double(round_t<T>(double(acc) + b))));
      const std::size_t o = std::size_t(r * c.n + j);
      naive[o] = round_t<T>(double(act_t) + res);
      terms[o] = ErrorTerms{.k = double(c.k), .abs_sum = abs_sum, .z = z, .activation = c.act != Act::None};
    }
  check_outputs<T>(got, ref, naive, terms, c.why);
}

// ---- conv2d

struct ConvCase {
  std::int64_t batch, h, w, cin, cout, kh, kw;
  int stride, padding;
  unsigned operands;
  float output_scale;
  std::size_t scratch_bytes;  // what LtGemm (or the emulated run) gets: small ones force chunks
  std::size_t misalign;
  const char* why;
  Formats formats = Formats::Both;
};

// Runs the case in T unless it is not one of its formats. run(op, scratch_bytes) must compute the
// op on T data with a scratch of that size.
template <class T, class Run>
void check_conv_case(const ConvCase& c, Run&& run) {
  if (!runs_in<T>(c.formats)) return;
  INFO(Format<T>::kName << ": " << c.why);
  const bool has_bias = (c.operands & kBias) != 0;
  const bool has_add = (c.operands & kAdd) != 0;
  const bool has_residual = (c.operands & kResidual) != 0;
  Conv2dGeometry g{.batch = c.batch, .h = c.h, .w = c.w, .cin = c.cin, .cout = c.cout, .kh = c.kh, .kw = c.kw,
                   .stride = c.stride, .padding = c.padding};
  g.ho = (c.h + 2 * c.padding - c.kh) / c.stride + 1;
  g.wo = (c.w + 2 * c.padding - c.kw) / c.stride + 1;
  const std::int64_t k = c.kh * c.kw * c.cin;
  const std::int64_t out_count = c.batch * g.ho * g.wo * c.cout;
  const std::uint64_t seed = std::uint64_t(c.batch * 7 + c.h * 1009 + c.cin * 31 + c.cout * 17 + c.kh);
  std::vector<float> x = randn<T>(std::size_t(c.batch * c.h * c.w * c.cin), seed);
  std::vector<float> w = randn<T>(std::size_t(c.cout * k), seed + 1, float(1.0 / std::sqrt(double(k))));
  std::vector<float> bias = randn<T>(std::size_t(c.cout), seed + 2);
  std::vector<float> add = randn<T>(std::size_t(c.batch * c.cout), seed + 3);
  std::vector<float> residual = randn<T>(std::size_t(out_count), seed + 4);

  Guarded<T> d_x(x, c.misalign), d_w(w, c.misalign), d_bias(bias, c.misalign), d_add(add, c.misalign);
  Guarded<T> d_residual(residual, c.misalign), d_out(std::size_t(out_count), c.misalign);
  const cuda::GemmConv2d op{.geometry = g,
                            .x = address(d_x),
                            .w = address(d_w),
                            .bias = has_bias ? address(d_bias) : nullptr,
                            .add_per_channel = has_add ? address(d_add) : nullptr,
                            .residual = has_residual ? address(d_residual) : nullptr,
                            .out = writable_address(d_out),
                            .output_scale = c.output_scale};
  run(op, c.scratch_bytes);
  const RowsResult got = split_rows(d_out.values(), out_count / c.cout, c.cout, c.cout);

  std::vector<float> ref(static_cast<std::size_t>(out_count));
  Tensor t_bias = Tensor::contiguous(bias.data(), DType::F32, Shape{c.cout});
  Tensor t_add = Tensor::contiguous(add.data(), DType::F32, Shape{c.batch, c.cout});
  Tensor t_residual = Tensor::contiguous(residual.data(), DType::F32, Shape{c.batch, g.ho, g.wo, c.cout});
  ReferenceBackend().conv2d(Tensor::contiguous(x.data(), DType::F32, Shape{c.batch, c.h, c.w, c.cin}),
                            Tensor::contiguous(w.data(), DType::F32, Shape{c.cout, c.kh, c.kw, c.cin}),
                            Tensor::contiguous(ref.data(), DType::F32, Shape{c.batch, g.ho, g.wo, c.cout}),
                            {.stride = c.stride,
                             .padding = c.padding,
                             .bias = has_bias ? &t_bias : nullptr,
                             .add_per_channel = has_add ? &t_add : nullptr,
                             .residual = has_residual ? &t_residual : nullptr,
                             .output_scale = c.output_scale});

  std::vector<float> naive(ref.size());
  std::vector<ErrorTerms> terms(ref.size());
  const double s = c.output_scale;
  for (std::int64_t b = 0; b < c.batch; ++b)
    for (std::int64_t yo = 0; yo < g.ho; ++yo)
      for (std::int64_t xo = 0; xo < g.wo; ++xo)
        for (std::int64_t co = 0; co < c.cout; ++co) {
          double abs_sum = 0.0;
          float acc = 0.0f;  // in T
          for (std::int64_t ky = 0; ky < c.kh; ++ky)
            for (std::int64_t kx = 0; kx < c.kw; ++kx) {
              const std::int64_t yi = yo * c.stride - c.padding + ky, xi = xo * c.stride - c.padding + kx;
              if (yi < 0 || yi >= c.h || xi < 0 || xi >= c.w) continue;
              for (std::int64_t ci = 0; ci < c.cin; ++ci) {
                const double p = double(x[std::size_t(((b * c.h + yi) * c.w + xi) * c.cin + ci)]) *
                                 double(w[std::size_t(((co * c.kh + ky) * c.kw + kx) * c.cin + ci)]);
                abs_sum += std::fabs(p);
                acc = round_t<T>(double(acc) + round_t<T>(p));
              }
            }
          const std::size_t o = std::size_t(((b * g.ho + yo) * g.wo + xo) * c.cout + co);
          const double bias_terms = (has_bias ? double(bias[std::size_t(co)]) : 0.0) +
                                    (has_add ? double(add[std::size_t(b * c.cout + co)]) : 0.0);
          const double res = has_residual ? double(residual[o]) : 0.0;
          abs_sum += std::fabs(bias_terms) + std::fabs(res);
          naive[o] = round_t<T>(double(round_t<T>(double(round_t<T>(double(acc) + bias_terms)) + res)) * s);
          terms[o] = ErrorTerms{.k = double(k), .scale = std::fabs(s), .abs_sum = abs_sum,
                                .scaled_bias = std::fabs(s * bias_terms)};
        }
  check_outputs<T>(got, ref, naive, terms, c.why);
}

}  // namespace sdgen::test::gemm_support
