// ReferenceBackend (tests/support) against CpuBackend, every op, on random inputs with awkward
// shapes: channels not a multiple of 16, odd token counts, batch 1, stride-2 convolutions on odd
// sizes, rows with gaps, q/k/v as column slices of one fused buffer, causal attention with
// Nq != Nk, in-place calls. CpuBackend is itself checked against naive double loops in
// cpu_ops_test.cpp, so agreement here ties the reference to both; a few hand-computed values at
// the end tie it to the definitions directly.
//
// Tolerances. The reference evaluates each definition in double and rounds once, so it is within
// u|ref| of the exact value (u = 2^-24) up to double's own error (2^-53 per operation: below
// anything fp32 can show). The tolerance is therefore CpuBackend's documented error bound (the one
// cpu_ops_test.cpp states and derives for each op, repeated at each check below) plus u|ref|:
//  * dot products (linear, conv2d, attention's scores and P V): any fp32 summation order of K
//    products is within (K+1) u of their magnitude sum_k |x_k w_k|. The magnitude is the same op
//    run by the reference on |x| and |w| (every term then positive, so the sum of magnitudes is
//    exact to double precision): a reference that misread an index would disagree with the CPU
//    by a whole term, thousands of times this tolerance.
//  * activations: CpuBackend's exp/erf/tanh are polynomial approximations: (16 + 4|x|) u of the
//    result, plus 2e-7 |x| for the GELUs (Abramowitz-Stegun erf, 2.5e-7 absolute).
//  * norms: statistics in double (group norm) or 16 float lanes (layer norm), then x * scale +
//    shift in fp32: a few roundings of |x * scale| and |shift|.
//  * data movement (upsample, concat, embedding) must agree bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "tests/ops/op_test_support.hpp"
#include "tests/support/reference_backend.hpp"

using namespace sdgen;
using namespace sdgen::test;

namespace {

// ---- tensors in logical (row-major) order, whatever their strides

template <class F>
void for_each_index(const Shape& shape, F&& f) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(shape.rank()), 0);
  for (std::int64_t n = 0; n < shape.numel(); ++n) {
    f(idx);
    for (int d = shape.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<std::size_t>(d)] < shape[d]) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
}

std::vector<float> values(const Tensor& t) {
  std::vector<float> v;
  v.reserve(static_cast<std::size_t>(t.numel()));
  for_each_index(t.shape, [&](const std::vector<std::int64_t>& idx) {
    std::int64_t off = 0;
    for (int d = 0; d < t.rank(); ++d) off += idx[static_cast<std::size_t>(d)] * t.strides[d];
    v.push_back(static_cast<const float*>(t.data)[off]);
  });
  return v;
}

// A contiguous copy of |t|: the operand that turns an op's sum into its magnitude sum.
HostTensor abs_of(const Tensor& t) {
  HostTensor h;
  h.data = values(t);
  for (float& v : h.data) v = std::fabs(v);
  h.t = Tensor::contiguous(h.data.data(), DType::F32, t.shape);
  return h;
}

// A [..., K] view over rows `row_stride` apart (the gaps hold random numbers: reading them shows).
HostTensor rows_with_gaps(const Shape& shape, std::int64_t row_stride, std::uint64_t seed) {
  const std::int64_t k = shape.back(), rows = shape.numel() / k;
  HostTensor h = randn(Shape{rows * row_stride}, seed);
  Strides s = contiguous_strides(shape);
  for (int i = 0; i + 1 < shape.rank(); ++i) s[i] = s[i] / k * row_stride;
  h.t = Tensor{h.ptr(), DType::F32, shape, s, {}};
  return h;
}

// Compares two outputs elementwise, |cpu - ref| <= tol(i), and reports the worst few.
void compare(const Tensor& cpu, const Tensor& ref, const std::function<double(std::size_t)>& tol,
             const std::string& what) {
  const std::vector<float> a = values(cpu), b = values(ref);
  REQUIRE(a.size() == b.size());
  long failures = 0;
  std::string report;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double t = tol(i);
    if (std::fabs(double(a[i]) - double(b[i])) <= t) continue;  // also false for NaN
    if (failures++ < 5) report += cat("\n  element ", i, ": cpu ", a[i], ", reference ", b[i], " (tolerance ", t, ")");
  }
  INFO(what << ": " << failures << " of " << a.size() << " elements out of tolerance" << report);
  CHECK(!a.empty());
  CHECK(failures == 0);
}

void compare_exact(const Tensor& cpu, const Tensor& ref, const std::string& what) {
  const auto exact = [](std::size_t) { return 0.0; };
  compare(cpu, ref, exact, what);
}


}  // namespace

// =====================================================================================================
TEST_CASE("reference linear agrees with CpuBackend", "[ops][reference][linear]") {
  struct Case {
    Shape x;                // [..., K]
    std::int64_t n;         // out features
    std::int64_t x_stride;  // row stride of x (0: contiguous)
    bool bias;
    Act act;
    bool residual;
  };
  const Case cases[] = {
      {{1, 1, 3}, 5, 0, true, Act::None, false},       // tiny
      {{2, 77, 36}, 20, 0, true, Act::Gelu, false},    // CLIP-like odd token count
      {{1, 9, 40}, 24, 48, false, Act::Silu, true},    // rows with gaps
      {{3, 5, 17}, 33, 0, true, Act::GeluTanh, true},  // nothing a multiple of 16
      {{2, 13, 64}, 8, 0, true, Act::QuickGelu, false},
      {{2, 1280}, 1280, 0, true, Act::Silu, false},    // the UNet's time embedding
      {{1, 300, 320}, 640, 0, true, Act::None, true},  // a projection with its residual
  };
  CpuBackend cpu;
  ReferenceBackend ref;
  std::uint64_t seed = 2000;
  for (const Case& c : cases) {
    const std::int64_t k = c.x.back();
    const HostTensor x = c.x_stride ? rows_with_gaps(c.x, c.x_stride, ++seed) : randn(c.x, ++seed);
    const HostTensor w = randn(Shape{c.n, k}, ++seed, 1.0f / std::sqrt(static_cast<float>(k)));
    const HostTensor bias = randn(Shape{c.n}, ++seed);
    Shape os = c.x;
    os[os.rank() - 1] = c.n;
    const HostTensor residual = randn(os, ++seed);
    HostTensor got = zeros(os), want = zeros(os), z = zeros(os), mag = zeros(os);
    const LinearArgs args{
        .bias = c.bias ? &bias.t : nullptr, .act = c.act, .residual = c.residual ? &residual.t : nullptr};
    cpu.linear(x.t, cpu.prepare_weight(w.t, WeightUse::Linear), got.t, args);
    ref.linear(x.t, ref.prepare_weight(w.t, WeightUse::Linear), want.t, args);
    // The pre-activation and the magnitude sum sum_k |x w| + |bias|, for the tolerance.
    ref.linear(x.t, w.t, z.t, {.bias = args.bias});
    const HostTensor ax = abs_of(x.t), aw = abs_of(w.t), ab = abs_of(bias.t);
    ref.linear(ax.t, aw.t, mag.t, {.bias = c.bias ? &ab.t : nullptr});

    const auto tol = [&](std::size_t i) {
      const double zi = z.data[i], a = reference_act(c.act, zi), res = c.residual ? residual.data[i] : 0.0;
      return kActSlope * (static_cast<double>(k) + 2.0) * kU32 * mag.data[i] + act_tol(c.act, zi, a) +
             2.0 * kU32 * (std::fabs(a) + std::fabs(res)) + kU32 * std::fabs(a + res);
    };
    compare(got.t, want.t, tol, cat("linear x ", c.x.str(), " -> ", c.n, " (", act_name(c.act), ")"));
  }
}

// =====================================================================================================
TEST_CASE("reference conv2d agrees with CpuBackend", "[ops][reference][conv2d]") {
  struct Case {
    Shape x;  // [B, H, W, Cin]
    std::int64_t cout, kernel;
    int stride, padding;
    bool bias, add_per_channel, residual;
    float output_scale;
  };
  const Case cases[] = {
      {{1, 5, 7, 3}, 5, 3, 1, 1, true, false, false, 1.0f},      // odd everything
      {{2, 9, 11, 12}, 20, 3, 2, 1, true, false, false, 1.0f},   // stride 2 on odd sizes
      {{2, 8, 8, 36}, 24, 3, 1, 1, true, true, true, 1.0f},      // ResNet conv + time embedding + skip
      {{3, 6, 5, 20}, 36, 1, 1, 0, true, false, true, 0.5f},     // 1x1 shortcut with output scale
      {{1, 7, 7, 8}, 4, 3, 2, 0, false, true, false, 1.0f},      // no padding, stride 2
      {{2, 4, 6, 16}, 8, 3, 1, 2, true, false, false, 2.0f},     // padding 2: taps wholly outside
      {{1, 17, 13, 40}, 24, 3, 2, 1, true, false, false, 1.0f},  // Downsample2D on an odd image
      {{1, 16, 16, 64}, 64, 3, 1, 1, true, true, true, 1.0f},    // a UNet-like block, K = 576
  };
  CpuBackend cpu;
  ReferenceBackend ref;
  std::uint64_t seed = 2100;
  for (const Case& c : cases) {
    const std::int64_t b = c.x[0], k = c.kernel;
    const std::int64_t ho = (c.x[1] + 2 * c.padding - k) / c.stride + 1,
                       wo = (c.x[2] + 2 * c.padding - k) / c.stride + 1;
    const Shape os{b, ho, wo, c.cout};
    const HostTensor x = randn(c.x, ++seed);
    const HostTensor w =
        randn(Shape{c.cout, k, k, c.x[3]}, ++seed, 1.0f / std::sqrt(static_cast<float>(k * k * c.x[3])));
    const HostTensor bias = randn(Shape{c.cout}, ++seed), add = randn(Shape{b, c.cout}, ++seed),
                     residual = randn(os, ++seed);
    HostTensor got = zeros(os), want = zeros(os), mag = zeros(os);
    const Conv2dArgs args{.stride = c.stride,
                          .padding = c.padding,
                          .bias = c.bias ? &bias.t : nullptr,
                          .add_per_channel = c.add_per_channel ? &add.t : nullptr,
                          .residual = c.residual ? &residual.t : nullptr,
                          .output_scale = c.output_scale};
    cpu.conv2d(x.t, cpu.prepare_weight(w.t, WeightUse::Conv2d), got.t, args);
    ref.conv2d(x.t, ref.prepare_weight(w.t, WeightUse::Conv2d), want.t, args);
    const HostTensor ax = abs_of(x.t), aw = abs_of(w.t), ab = abs_of(bias.t), aa = abs_of(add.t),
                     ar = abs_of(residual.t);
    ref.conv2d(ax.t, aw.t, mag.t,
               {.stride = c.stride,
                .padding = c.padding,
                .bias = args.bias ? &ab.t : nullptr,
                .add_per_channel = args.add_per_channel ? &aa.t : nullptr,
                .residual = args.residual ? &ar.t : nullptr});
    // KH*KW*Cin products and three extras summed in fp32 ((terms + 1) u of the magnitude), then
    // the scale (one rounding); the reference's own rounding.
    const double terms = static_cast<double>(k * k * c.x[3]) + 3.0;
    const auto tol = [&](std::size_t i) {
      return (terms + 2.0) * kU32 * mag.data[i] * std::fabs(c.output_scale) + 2.0 * kU32 * std::fabs(want.data[i]);
    };
    compare(got.t, want.t, tol,
            cat("conv2d x ", c.x.str(), " w ", w.t.shape.str(), " stride ", c.stride, " padding ", c.padding));
  }
}

// =====================================================================================================
namespace {

// Mean and 1/sqrt(var + eps) in double, for the norms' tolerances.
struct Stats {
  double mean, rstd;
};
Stats stats_of(const std::vector<double>& v, float eps) {
  double sum = 0.0, sq = 0.0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, 1.0 / std::sqrt(sq / static_cast<double>(v.size()) + static_cast<double>(eps))};
}

}  // namespace

TEST_CASE("reference group_norm agrees with CpuBackend", "[ops][reference][group_norm]") {
  struct Case {
    Shape x;
    int groups;
    bool silu;
    bool in_place;
  };
  const Case cases[] = {
      {{1, 3, 5, 36}, 4, false, false},   // 9 channels per group, C not a multiple of 16
      {{2, 7, 3, 36}, 12, true, false},   // 3 per group
      {{3, 11, 40}, 8, true, true},       // [B, N, C], in place
      {{1, 1, 1, 32}, 32, false, false},  // one element per group: variance 0, output beta
      {{2, 16, 16, 320}, 32, true, false}, {{1, 9, 9, 96}, 32, false, true},
  };
  CpuBackend cpu;
  ReferenceBackend ref;
  std::uint64_t seed = 2200;
  for (const Case& c : cases) {
    // Mean 3 and a per-channel spread: a one-pass E[x^2] - E[x]^2 would lose digits.
    HostTensor x = randn(c.x, ++seed);
    const std::int64_t ch = c.x.back(), pixels = c.x.numel() / (c.x[0] * ch), cg = ch / c.groups;
    for (std::size_t i = 0; i < x.data.size(); ++i)
      x.data[i] =
          3.0f + x.data[i] * (1.0f + static_cast<float>(static_cast<std::int64_t>(i) % ch) / static_cast<float>(ch));
    const HostTensor gamma = randn(Shape{ch}, ++seed), beta = randn(Shape{ch}, ++seed);
    const GroupNormArgs args{.groups = c.groups, .eps = 1e-5f, .silu = c.silu};
    HostTensor got = c.in_place ? x : zeros(c.x), want = c.in_place ? x : zeros(c.x);
    cpu.group_norm(c.in_place ? got.t : x.t, gamma.t, beta.t, got.t, args);
    ref.group_norm(c.in_place ? want.t : x.t, gamma.t, beta.t, want.t, args);

    // y = x * scale + shift in fp32 (scale = rstd gamma, shift = beta - mean scale): roundings of
    // scale, shift, the product and the sum, each relative to |x scale| + |shift|; then SiLU.
    std::vector<double> tol(x.data.size());
    for (std::int64_t b = 0; b < c.x[0]; ++b)
      for (std::int64_t g = 0; g < c.groups; ++g) {
        const auto index = [&](std::int64_t p, std::int64_t i) {
          return static_cast<std::size_t>((b * pixels + p) * ch + g * cg + i);
        };
        std::vector<double> group;
        for (std::int64_t p = 0; p < pixels; ++p)
          for (std::int64_t i = 0; i < cg; ++i) group.push_back(x.data[index(p, i)]);
        const Stats s = stats_of(group, args.eps);
        for (std::int64_t p = 0; p < pixels; ++p)
          for (std::int64_t i = 0; i < cg; ++i) {
            const std::size_t e = index(p, i);
            const double scale = s.rstd * gamma.data[static_cast<std::size_t>(g * cg + i)];
            const double shift = beta.data[static_cast<std::size_t>(g * cg + i)] - s.mean * scale;
            const double y = x.data[e] * scale + shift, out = c.silu ? reference_act(Act::Silu, y) : y;
            tol[e] = 8.0 * kU32 * (std::fabs(x.data[e] * scale) + std::fabs(shift)) +
                     (c.silu ? act_tol(Act::Silu, y, out) : 0.0) + kU32 * std::fabs(out);
          }
      }
    compare(
        got.t, want.t, [&](std::size_t i) { return tol[i]; },
        cat("group_norm ", c.x.str(), " groups ", c.groups, c.silu ? " +silu" : "", c.in_place ? " in place" : ""));
  }
}

TEST_CASE("reference layer_norm agrees with CpuBackend", "[ops][reference][layer_norm]") {
  struct Case {
    Shape x;
    std::int64_t row_stride;  // 0: contiguous
    bool in_place;
  };
  const Case cases[] = {
      {{1, 1, 5}, 0, false},   {{2, 77, 36}, 0, false},  {{1, 9, 40}, 56, false},  // rows with gaps
      {{3, 13, 100}, 0, true}, {{2, 77, 768}, 0, false},                           // CLIP ViT-L
      {{2, 5, 24}, 40, true},                                                      // in place over gapped rows
  };
  CpuBackend cpu;
  ReferenceBackend ref;
  std::uint64_t seed = 2300;
  for (const Case& c : cases) {
    HostTensor x = c.row_stride ? rows_with_gaps(c.x, c.row_stride, ++seed) : randn(c.x, ++seed);
    for (float& v : x.data) v = 2.0f + 3.0f * v;
    const std::int64_t cols = c.x.back(), rows = c.x.numel() / cols;
    const HostTensor gamma = randn(Shape{cols}, ++seed), beta = randn(Shape{cols}, ++seed);
    const std::vector<float> in = values(x.t);
    HostTensor got = c.in_place ? x : zeros(c.x), want = c.in_place ? x : zeros(c.x);
    cpu.layer_norm(c.in_place ? got.t : x.t, gamma.t, beta.t, got.t, {.eps = 1e-5f});
    ref.layer_norm(c.in_place ? want.t : x.t, gamma.t, beta.t, want.t, {.eps = 1e-5f});

    // CpuBackend sums the statistics in 16 float lanes of C/16 terms: (C/16 + 20) u of the mean
    // magnitude; the normalisation adds a few roundings of each term (cpu_ops_test.cpp).
    std::vector<double> tol(in.size());
    const double stats_error = (static_cast<double>(cols) / 16.0 + 20.0) * kU32;
    for (std::int64_t r = 0; r < rows; ++r) {
      std::vector<double> row(in.begin() + r * cols, in.begin() + (r + 1) * cols);
      const Stats s = stats_of(row, 1e-5f);
      double mean_abs = 0.0;
      for (double v : row) mean_abs += std::fabs(v) / static_cast<double>(cols);
      for (std::int64_t i = 0; i < cols; ++i) {
        const double g = std::fabs(gamma.data[static_cast<std::size_t>(i)]),
                     d = std::fabs(row[static_cast<std::size_t>(i)] - s.mean);
        const double out =
            (row[static_cast<std::size_t>(i)] - s.mean) * s.rstd * gamma.data[static_cast<std::size_t>(i)] +
            beta.data[static_cast<std::size_t>(i)];
        tol[static_cast<std::size_t>(r * cols + i)] = stats_error * (mean_abs + d) * s.rstd * g +
                                                      8.0 * kU32 * (d * s.rstd * g + std::fabs(out)) +
                                                      kU32 * std::fabs(out);
      }
    }
    compare(
        got.t, want.t, [&](std::size_t i) { return tol[i]; },
        cat("layer_norm ", c.x.str(), " row stride ", c.row_stride, c.in_place ? " in place" : ""));
  }
}

// =====================================================================================================
TEST_CASE("reference attention agrees with CpuBackend", "[ops][reference][attention]") {
  struct Case {
    std::int64_t b, nq, nk;
    int heads;
    std::int64_t d;
    bool causal;
    float scale;                 // 0: 1/sqrt(d)
    bool fused_qkv;              // q, k, v column slices of one [B, N, 3C] buffer (nq == nk)
    std::int64_t kv_row_stride;  // otherwise k and v rows this far apart (0: contiguous)
  };
  const Case cases[] = {
      {1, 1, 1, 1, 4, false, 0.0f, false, 0},        // one query, one key
      {2, 77, 77, 2, 8, true, 0.0f, true, 0},        // CLIP: causal self-attention on a fused qkv
      {1, 5, 9, 3, 16, true, 0.0f, false, 0},        // causal, Nq < Nk: query i sees keys 0..i
      {2, 13, 6, 2, 4, true, 0.0f, false, 0},        // causal, Nq > Nk
      {3, 200, 77, 4, 40, false, 0.0f, false, 0},    // cross-attention on 77 text tokens
      {1, 130, 513, 1, 24, false, 0.3f, false, 56},  // a key tile and a tail, gapped k/v rows, own scale
      {2, 257, 257, 5, 12, true, 0.0f, true, 0},     // causal, fused, odd everything
      {1, 600, 600, 2, 64, false, 0.0f, false, 0},   // two key tiles, SD2's head width
  };
  CpuBackend cpu;
  ReferenceBackend ref;
  std::uint64_t seed = 2400;
  for (const Case& c : cases) {
    seed += 10;
    const std::int64_t ch = c.heads * c.d;
    HostTensor q, k, v, fused;
    if (c.fused_qkv) {
      fused = randn(Shape{c.b, c.nq, 3 * ch}, seed);
      const Strides s{c.nq * 3 * ch, 3 * ch, 1};
      q.t = Tensor{fused.ptr(), DType::F32, Shape{c.b, c.nq, ch}, s, {}};
      k.t = Tensor{fused.ptr() + ch, DType::F32, Shape{c.b, c.nk, ch}, s, {}};
      v.t = Tensor{fused.ptr() + 2 * ch, DType::F32, Shape{c.b, c.nk, ch}, s, {}};
    } else {
      q = randn(Shape{c.b, c.nq, ch}, seed);
      k = c.kv_row_stride ? randn_rows(c.b, c.nk, ch, c.kv_row_stride, seed + 1)
                          : randn(Shape{c.b, c.nk, ch}, seed + 1);
      v = c.kv_row_stride ? randn_rows(c.b, c.nk, ch, c.kv_row_stride, seed + 2)
                          : randn(Shape{c.b, c.nk, ch}, seed + 2);
    }
    const AttentionArgs args{.heads = c.heads, .scale = c.scale, .causal = c.causal};
    HostTensor got = zeros(Shape{c.b, c.nq, ch}), want = zeros(Shape{c.b, c.nq, ch}),
               avg_abs = zeros(Shape{c.b, c.nq, ch});
    cpu.attention(q.t, k.t, v.t, got.t, args);
    ref.attention(q.t, k.t, v.t, want.t, args);
    // sum_j p_j |v_j| / sum_j p_j: the same weights applied to |v|.
    const HostTensor av = abs_of(v.t);
    ref.attention(q.t, k.t, av.t, avg_abs.t, args);

    // CpuBackend's bound (cpu_ops_test.cpp): each exponent is off by at most
    // worst = (d + 2) u E + 2 u |s - max| + 8 u, where E bounds the score magnitudes
    // scale sum_t |q_t k_t| and |s - max| <= 2E; the output by (2 worst + (Nk + 4 tiles + 8) u)
    // times sum p|v| / sum p.
    const double scale = c.scale > 0.0f ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.d));
    const double tiles = static_cast<double>((c.nk + 511) / 512);
    std::vector<double> tol(static_cast<std::size_t>(c.b * c.nq * ch));
    for (std::int64_t b = 0; b < c.b; ++b)
      for (int h = 0; h < c.heads; ++h)
        for (std::int64_t i = 0; i < c.nq; ++i) {
          const std::int64_t visible = c.causal ? std::min(i + 1, c.nk) : c.nk;
          double e = 0.0;
          for (std::int64_t j = 0; j < visible; ++j) {
            double m = 0.0;
            for (std::int64_t t = 0; t < c.d; ++t)
              m += std::fabs(at(q.t, {b, i, h * c.d + t}) * at(k.t, {b, j, h * c.d + t}));
            e = std::max(e, m * scale);
          }
          const double worst = (static_cast<double>(c.d) + 2.0) * kU32 * e + 4.0 * kU32 * e + 8.0 * kU32;
          for (std::int64_t t = 0; t < c.d; ++t) {
            const auto o = static_cast<std::size_t>((b * c.nq + i) * ch + h * c.d + t);
            tol[o] = (2.0 * worst + (static_cast<double>(visible) + 4.0 * tiles + 8.0) * kU32) * avg_abs.data[o] +
                     kU32 * std::fabs(want.data[o]);
          }
        }
    compare(
        got.t, want.t, [&](std::size_t i) { return tol[i]; },
        cat("attention B ", c.b, " Nq ", c.nq, " Nk ", c.nk, " heads ", c.heads, " d ", c.d, c.causal ? " causal" : "",
            c.fused_qkv ? " fused" : ""));
  }
}

// =====================================================================================================
TEST_CASE("reference geglu and activation agree with CpuBackend", "[ops][reference][geglu][activation]") {
  CpuBackend cpu;
  ReferenceBackend ref;
  struct GegluCase {
    Shape x;
    std::int64_t row_stride;  // 0: contiguous
  };
  std::uint64_t seed = 2500;
  for (const GegluCase& c : {GegluCase{{1, 1, 2}, 0}, GegluCase{{2, 77, 34}, 0}, GegluCase{{1, 9, 82}, 90},
                             GegluCase{{2, 64, 2 * 1280}, 0}}) {
    HostTensor x = c.row_stride ? rows_with_gaps(c.x, c.row_stride, ++seed) : randn(c.x, ++seed);
    for (float& v : x.data) v *= 2.0f;
    const std::int64_t f = c.x.back() / 2;
    Shape os = c.x;
    os[os.rank() - 1] = f;
    HostTensor got = zeros(os), want = zeros(os);
    cpu.geglu(x.t, got.t);
    ref.geglu(x.t, want.t);
    const std::vector<float> in = values(x.t);
    const auto tol = [&](std::size_t i) {
      const std::size_t r = i / static_cast<std::size_t>(f), col = i % static_cast<std::size_t>(f);
      const double hidden = in[r * 2 * static_cast<std::size_t>(f) + col],
                   gate = in[r * 2 * static_cast<std::size_t>(f) + static_cast<std::size_t>(f) + col];
      const double g = reference_act(Act::Gelu, gate);
      // gelu's error scaled by |hidden|, the product's rounding, the reference's.
      return std::fabs(hidden) * act_tol(Act::Gelu, gate, g) + 2.0 * kU32 * std::fabs(hidden * g);
    };
    compare(got.t, want.t, tol, cat("geglu ", c.x.str(), " row stride ", c.row_stride));
  }

  // Normal draws (sigma 4) and the tails where exp under- or overflows.
  HostTensor x = randn(Shape{3, 1001}, 2510, 4.0f);
  const float extremes[] = {0.0f, -0.0f, 1e-6f, -1e-6f, 20.0f, -20.0f, 60.0f, -60.0f, 100.0f, -100.0f, 1e4f, -1e4f};
  for (std::size_t i = 0; i < std::size(extremes); ++i) x.data[i * 7] = extremes[i];
  for (Act a : {Act::None, Act::Silu, Act::Gelu, Act::GeluTanh, Act::QuickGelu})
    for (bool in_place : {false, true}) {
      HostTensor got = in_place ? x : zeros(x.t.shape), want = in_place ? x : zeros(x.t.shape);
      cpu.activation(in_place ? got.t : x.t, got.t, a);
      ref.activation(in_place ? want.t : x.t, want.t, a);
      const auto tol = [&](std::size_t i) {
        const double y = reference_act(a, x.data[i]);
        return act_tol(a, x.data[i], y) + kU32 * std::fabs(y);
      };
      compare(got.t, want.t, tol, cat("activation ", act_name(a), in_place ? " in place" : ""));
    }
}

TEST_CASE("reference add agrees with CpuBackend, broadcast and in place", "[ops][reference][add]") {
  CpuBackend cpu;
  ReferenceBackend ref;
  const HostTensor a = randn(Shape{2, 7, 5, 9}, 2600);
  struct Case {
    Shape b;  // rank 0: no b
    float alpha, beta;
    enum class Target { Fresh, A, B } target;
  };
  using T = Case::Target;
  const Case cases[] = {{{2, 7, 5, 9}, 1.0f, 1.0f, T::Fresh}, {{9}, 0.5f, -2.0f, T::Fresh},
                        {{5, 9}, 1.0f, 3.0f, T::A},           {{}, 0.18215f, 0.0f, T::Fresh},
                        {{2, 7, 5, 9}, -1.0f, 0.25f, T::B},   {{7, 5, 9}, 7.5f, -6.5f, T::A}};
  std::uint64_t seed = 2610;
  for (const Case& c : cases) {
    const HostTensor b = c.b.rank() ? randn(c.b, ++seed) : HostTensor{};
    const auto run = [&](Backend& be) {
      HostTensor first = a, second = b, fresh = zeros(a.t.shape);
      const Tensor& out = c.target == T::A ? first.t : c.target == T::B ? second.t : fresh.t;
      be.add(first.t, c.b.rank() ? &second.t : nullptr, out, {.alpha = c.alpha, .beta = c.beta});
      return c.target == T::A ? first : c.target == T::B ? second : fresh;
    };
    const HostTensor got = run(cpu), want = run(ref);
    const std::size_t period = c.b.rank() ? static_cast<std::size_t>(c.b.numel()) : 1;
    // a alpha, b beta and their sum: three fp32 roundings of |a alpha| + |b beta|; the reference's one.
    const auto tol = [&](std::size_t i) {
      const double av = a.data[i] * static_cast<double>(c.alpha),
                   bv = c.b.rank() ? b.data[i % period] * static_cast<double>(c.beta) : 0.0;
      return 3.0 * kU32 * (std::fabs(av) + std::fabs(bv)) + kU32 * std::fabs(av + bv);
    };
    compare(got.t, want.t, tol, cat("add b ", c.b.str(), " alpha ", c.alpha, " beta ", c.beta));
  }
}

TEST_CASE("reference upsample, concat and embedding copy what CpuBackend copies",
          "[ops][reference][upsample][concat][embedding]") {
  CpuBackend cpu;
  ReferenceBackend ref;
  // 2x, the UNet's odd sizes (3 -> 5, 5 -> 9), shrinking, and a single pixel.
  const HostTensor x = randn(Shape{2, 3, 5, 7}, 2700);
  for (const auto& [ho, wo] : {std::pair{6, 10}, std::pair{5, 9}, std::pair{4, 3}, std::pair{1, 1}}) {
    HostTensor got = zeros(Shape{2, ho, wo, 7}), want = zeros(Shape{2, ho, wo, 7});
    cpu.upsample_nearest(x.t, got.t);
    ref.upsample_nearest(x.t, want.t);
    compare_exact(got.t, want.t, cat("upsample_nearest to ", ho, " x ", wo));
  }
  const HostTensor big = randn(Shape{1, 33, 33, 5}, 2701);  // a 520-px image's 33 -> 65
  HostTensor got65 = zeros(Shape{1, 65, 65, 5}), want65 = zeros(Shape{1, 65, 65, 5});
  cpu.upsample_nearest(big.t, got65.t);
  ref.upsample_nearest(big.t, want65.t);
  compare_exact(got65.t, want65.t, "upsample_nearest 33 -> 65");

  for (const auto& [sa, sb] :
       {std::pair{Shape{2, 3, 4, 5}, Shape{2, 3, 4, 11}}, std::pair{Shape{1, 77, 7}, Shape{1, 77, 9}}}) {
    const HostTensor a = randn(sa, 2710), b = randn(sb, 2711);
    Shape os = sa;
    os[os.rank() - 1] = sa.back() + sb.back();
    HostTensor got = zeros(os), want = zeros(os);
    cpu.concat_channels(a.t, b.t, got.t);
    ref.concat_channels(a.t, b.t, want.t);
    compare_exact(got.t, want.t, cat("concat_channels ", sa.str(), " ++ ", sb.str()));
  }

  const HostTensor table = randn(Shape{50, 13}, 2720);
  std::vector<std::int32_t> ids{3, 0, 49, 3, 7, 1, 22, 48, 11};
  const Tensor ids_t = Tensor::contiguous(ids.data(), DType::I32, Shape{3, 3});
  HostTensor got = zeros(Shape{3, 3, 13}), want = zeros(Shape{3, 3, 13});
  cpu.embedding(ids_t, table.t, got.t);
  ref.embedding(ids_t, table.t, want.t);
  compare_exact(got.t, want.t, "embedding");
  ids[5] = 50;
  CHECK_THROWS_WITH(ref.embedding(ids_t, table.t, want.t),
                    Catch::Contains("id 50 at position 5 is outside the table of 50 rows"));
  ids[5] = -1;
  CHECK_THROWS_WITH(ref.embedding(ids_t, table.t, want.t), Catch::Contains("id -1"));
}

TEST_CASE("reference timestep_embedding agrees with CpuBackend", "[ops][reference][timestep_embedding]") {
  CpuBackend cpu;
  ReferenceBackend ref;
  std::vector<float> ts{0.0f, 1.0f, 999.0f, 500.5f, 0.25f};
  const Tensor t = Tensor::contiguous(ts.data(), DType::F32, Shape{5});
  struct Case {
    std::int64_t dim;
    TimestepEmbeddingArgs args;
  };
  const Case cases[] = {{320, {.flip_sin_to_cos = true, .freq_shift = 0.0f}},  // SD's UNet
                        {32, {.flip_sin_to_cos = false, .freq_shift = 1.0f}},  // diffusers' defaults
                        {7, {.flip_sin_to_cos = true, .freq_shift = 0.0f, .max_period = 100.0f}}};  // odd dim
  for (const Case& c : cases) {
    HostTensor got = zeros(Shape{5, c.dim}), want = zeros(Shape{5, c.dim});
    cpu.timestep_embedding(t, got.t, c.args);
    ref.timestep_embedding(t, want.t, c.args);
    // Both follow torch's F32 order for the exponent; the CPU's expf and the reference's rounded
    // exp may differ by one ulp in the frequency (2u), which with the product's rounding moves the
    // argument by up to 4u |arg|; sin and cos pass that on, and each side rounds its output (u).
    const std::int64_t half = c.dim / 2;
    const auto tol = [&](std::size_t i) {
      const auto b = static_cast<std::int64_t>(i) / c.dim, col = static_cast<std::int64_t>(i) % c.dim;
      if (col >= 2 * half) return 0.0;  // the pad column is exactly zero
      const double exponent = -std::log(static_cast<double>(c.args.max_period)) * static_cast<double>(col % half) /
                              (static_cast<double>(half) - c.args.freq_shift);
      return 4.0 * kU32 * std::fabs(ts[static_cast<std::size_t>(b)] * std::exp(exponent)) + 2.0 * kU32;
    };
    compare(got.t, want.t, tol, cat("timestep_embedding dim ", c.dim));
  }
}

// =====================================================================================================
TEST_CASE("the reference follows the definitions on hand-computed cases", "[ops][reference][definitions]") {
  ReferenceBackend ref;
  SECTION("group_norm of 1, 2, 3, 4: mean 2.5, variance 1.25 (population), eps 0 in effect") {
    std::vector<float> xs{1.0f, 2.0f, 3.0f, 4.0f}, g{2.0f, 2.0f, 2.0f, 2.0f}, b{1.0f, 1.0f, 1.0f, 1.0f}, out(4);
    ref.group_norm(Tensor::contiguous(xs.data(), DType::F32, Shape{1, 1, 4}),
                   Tensor::contiguous(g.data(), DType::F32, Shape{4}),
                   Tensor::contiguous(b.data(), DType::F32, Shape{4}),
                   Tensor::contiguous(out.data(), DType::F32, Shape{1, 1, 4}), {.groups = 1, .eps = 1e-30f});
    for (int i = 0; i < 4; ++i)
      CHECK(out[static_cast<std::size_t>(i)] == Approx(2.0 * (i + 1 - 2.5) / std::sqrt(1.25) + 1.0).epsilon(1e-6));
  }
  SECTION("attention over one key returns its value; over equal keys, the mean of the values") {
    std::vector<float> q{0.3f, -1.0f}, k{0.5f, 0.5f, 0.5f, 0.5f}, v{1.0f, 2.0f, 5.0f, -4.0f}, out(2);
    ref.attention(Tensor::contiguous(q.data(), DType::F32, Shape{1, 1, 2}),
                  Tensor::contiguous(k.data(), DType::F32, Shape{1, 1, 2}),
                  Tensor::contiguous(v.data(), DType::F32, Shape{1, 1, 2}),
                  Tensor::contiguous(out.data(), DType::F32, Shape{1, 1, 2}), {});
    CHECK(out == std::vector<float>{1.0f, 2.0f});
    ref.attention(Tensor::contiguous(q.data(), DType::F32, Shape{1, 1, 2}),
                  Tensor::contiguous(k.data(), DType::F32, Shape{1, 2, 2}),
                  Tensor::contiguous(v.data(), DType::F32, Shape{1, 2, 2}),
                  Tensor::contiguous(out.data(), DType::F32, Shape{1, 1, 2}), {});
    CHECK(out == std::vector<float>{3.0f, -1.0f});
  }
  SECTION("a 1x1 identity convolution with stride 2 picks every other pixel; padding reads zeros") {
    std::vector<float> xs(5 * 5), w{1.0f}, out(3 * 3);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(i);
    ref.conv2d(Tensor::contiguous(xs.data(), DType::F32, Shape{1, 5, 5, 1}),
               Tensor::contiguous(w.data(), DType::F32, Shape{1, 1, 1, 1}),
               Tensor::contiguous(out.data(), DType::F32, Shape{1, 3, 3, 1}), {.stride = 2});
    CHECK(out == std::vector<float>{0, 2, 4, 10, 12, 14, 20, 22, 24});
    std::vector<float> ones(3 * 3, 1.0f), sums(5 * 5);
    ref.conv2d(Tensor::contiguous(xs.data(), DType::F32, Shape{1, 5, 5, 1}),
               Tensor::contiguous(ones.data(), DType::F32, Shape{1, 3, 3, 1}),
               Tensor::contiguous(sums.data(), DType::F32, Shape{1, 5, 5, 1}), {.padding = 1});
    CHECK(sums[0] == 0.0f + 1.0f + 5.0f + 6.0f);  // the corner sees four pixels
    CHECK(sums[12] == 9.0f * 12.0f);              // the centre, nine around 12
  }
  SECTION("timestep 0 gives cos 1 and sin 0; the pad column of an odd dim is zero") {
    std::vector<float> t{0.0f}, out(5, 7.0f);
    ref.timestep_embedding(Tensor::contiguous(t.data(), DType::F32, Shape{1}),
                           Tensor::contiguous(out.data(), DType::F32, Shape{1, 5}), {});
    CHECK(out == std::vector<float>{1.0f, 1.0f, 0.0f, 0.0f, 0.0f});
  }
}

TEST_CASE("the reference validates with the shared checks and keeps weights as they are", "[ops][reference][checks]") {
  ReferenceBackend ref;
  CpuBackend cpu;
  HostTensor x = randn(Shape{2, 3, 6}, 2800), w = randn(Shape{4, 5}, 2801), out = zeros(Shape{2, 3, 4});
  const auto message = [&](Backend& be) {
    try {
      be.linear(x.t, w.t, out.t, {});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(ref) == message(cpu));
  CHECK_THAT(message(ref), Catch::Contains("linear: x is [2, 3, 6] but w is [4, 5]"));

  const Tensor kept = ref.prepare_weight(w.t, WeightUse::Linear);
  CHECK(kept.data == w.t.data);
  CHECK(kept.layout == Layout::Strided);
  CHECK(ref.held_bytes() == 0);
  CHECK_THROWS_WITH(ref.prepare_weight(w.t, WeightUse::Conv2d), Catch::Contains("expected rank 4"));

  // F32 weights only: a BF16 weight is refused by the reference and by its shape-only twin alike.
  const HalfTensor w16 = to_bf16(randn(Shape{4, 6}, 2802));
  const std::unique_ptr<Backend> shape = ref.shape_only();
  CHECK(shape->name() == "shape");
  CHECK_THROWS_WITH(ref.linear(x.t, w16.t, out.t, {}), Catch::Contains("w is BF16 [4, 6]; expected one of F32"));
  CHECK_THROWS_WITH(shape->linear(x.t, w16.t, out.t, {}), Catch::Contains("w is BF16 [4, 6]; expected one of F32"));
  const HostTensor w6 = randn(Shape{4, 6}, 2803);
  CHECK_NOTHROW(shape->linear(x.t, w6.t, out.t, {}));
}
