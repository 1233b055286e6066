// CpuBackend against plain, obviously correct loops.
//
// Every op runs on seeded random inputs (never all zeros) with awkward shapes (channels not a
// multiple of 16, odd token counts, batch 1, stride-2 convolutions on odd sizes, strided q/k/v
// views, causal attention with Nq != Nk) and real Stable Diffusion shapes, checked at sampled
// positions where a full naive reference would be slow. The references accumulate in double.
//
// Tolerances are error bounds, not guesses (u = 2^-24, fp32's unit roundoff):
//  * dot products (linear, conv): any summation order of K fp32 products is within (K+1)·u·Σ|terms|
//    of the exact sum (the classic γ_K bound), Σ|terms| being the magnitude of the sum, not its
//    value. A wrong index or a missing row moves the result by a whole term or more.
//  * bf16 mode rounds both factors to 8 significant bits (relative 2^-9 each): 2^-8·Σ|terms| more.
//  * activations, norms, softmax: a handful of roundings (≤ 16u) relative to the magnitudes named
//    at each check, plus the documented error of the approximation (erf: 2.5e-7 absolute).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <string>

#include "kernels/cpu/cpu_backend.hpp"
#include "tests/ops/op_test_support.hpp"

using namespace sdgen;
using namespace sdgen::test;

namespace {

// Collects mismatches so a failing case reports its worst elements, not a million CHECKs.
class Mismatches {
 public:
  explicit Mismatches(std::string what) : what_(std::move(what)) {}
  void check(double got, double ref, double tol, const std::string& where) {
    ++checked_;
    const double err = std::fabs(got - ref);
    if (err <= tol) return;  // also false for NaN
    if (failures_++ < 5) report_ += cat("\n  ", where, ": got ", got, ", expected ", ref, " (tolerance ", tol, ")");
  }
  void finish() const {
    INFO(what_ << ": " << failures_ << " of " << checked_ << " elements out of tolerance" << report_);
    CHECK(checked_ > 0);
    CHECK(failures_ == 0);
  }

 private:
  std::string what_, report_;
  long checked_ = 0, failures_ = 0;
};

double act_ref(Act a, double x) {
  switch (a) {
    case Act::None: return x;
    case Act::Silu: return x / (1.0 + std::exp(-x));
    case Act::Gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Act::GeluTanh: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    case Act::QuickGelu: return x / (1.0 + std::exp(-1.702 * x));
  }
  return x;
}


// Rows to check: all of them when few, else a seeded sample that includes the first and last.
std::vector<std::int64_t> sample_rows(std::int64_t n, std::int64_t max_rows, std::uint64_t seed) {
  std::vector<std::int64_t> rows;
  if (n <= max_rows) {
    for (std::int64_t i = 0; i < n; ++i) rows.push_back(i);
    return rows;
  }
  std::mt19937_64 rng(seed);
  rows = {0, n - 1};
  while (static_cast<std::int64_t>(rows.size()) < max_rows) rows.push_back(static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n)));
  return rows;
}

bool have_bf16() { return __builtin_cpu_supports("avx512bf16"); }

// ---- how a weight reaches the op
enum class WeightForm { Strided, Prepared, PreparedFromF16, PreparedFromBf16, StridedBf16 };
const char* form_name(WeightForm f) {
  switch (f) {
    case WeightForm::Strided: return "strided f32";
    case WeightForm::Prepared: return "prepared from f32";
    case WeightForm::PreparedFromF16: return "prepared from f16";
    case WeightForm::PreparedFromBf16: return "prepared from bf16";
    case WeightForm::StridedBf16: return "strided bf16";
  }
  return "?";
}

// The weight to pass, and the values the backend really multiplies (rounded when stored in 16 bits).
struct WeightUnderTest {
  HostTensor values;  // what the reference uses
  HalfTensor half;    // storage for 16-bit forms
  Tensor w;
};
WeightUnderTest weight_in_form(CpuBackend& be, const HostTensor& w32, WeightForm form, WeightUse use) {
  WeightUnderTest r;
  r.values = w32;
  r.values.t.data = r.values.data.data();
  switch (form) {
    case WeightForm::Strided: r.w = r.values.t; break;
    case WeightForm::Prepared: r.w = be.prepare_weight(r.values.t, use); break;
    case WeightForm::PreparedFromF16:
      r.half = to_f16(w32);
      r.values = widened(r.half);
      r.w = be.prepare_weight(r.half.t, use);
      break;
    case WeightForm::PreparedFromBf16:
    case WeightForm::StridedBf16:
      r.half = to_bf16(w32);
      r.values = widened(r.half);
      r.w = form == WeightForm::StridedBf16 ? r.half.t : be.prepare_weight(r.half.t, use);
      break;
  }
  return r;
}

}  // namespace

// =====================================================================================================
TEST_CASE("linear matches a naive loop", "[ops][linear]") {
  struct Case {
    Shape x;                // [..., K]
    std::int64_t n;         // out features
    std::int64_t x_stride;  // row stride of x (0: contiguous)
    bool bias;
    Act act;
    bool residual;
    WeightForm form;
  };
  const Case cases[] = {
      {{1, 1, 3}, 5, 0, true, Act::None, false, WeightForm::Strided},          // tiny
      {{2, 77, 36}, 20, 0, true, Act::Gelu, false, WeightForm::Prepared},     // CLIP-like odd tokens
      {{1, 9, 40}, 24, 48, false, Act::Silu, true, WeightForm::Prepared},     // strided x rows
      {{3, 5, 17}, 33, 0, true, Act::GeluTanh, true, WeightForm::PreparedFromF16},
      {{2, 13, 64}, 8, 0, true, Act::QuickGelu, false, WeightForm::PreparedFromBf16},
      {{1, 31, 24}, 18, 0, false, Act::None, true, WeightForm::StridedBf16},
      {{2, 1280}, 1280, 0, true, Act::Silu, false, WeightForm::Prepared},     // UNet time embedding
      {{2, 4096, 320}, 1280, 0, true, Act::None, false, WeightForm::Prepared},  // GEGLU proj at 512x512 (half)
      {{1, 1024, 640}, 640, 0, true, Act::None, true, WeightForm::Prepared},  // to_out.0 + residual
  };
  CpuBackend be;
  std::uint64_t seed = 100;
  for (const Case& c : cases) {
    const std::int64_t k = c.x.back();
    const std::int64_t rows = c.x.numel() / k;
    HostTensor x = c.x_stride ? randn_rows(1, rows, k, c.x_stride, ++seed) : randn(c.x, ++seed);
    if (c.x_stride) x.t = Tensor{x.ptr(), DType::F32, c.x, [&] {
                                   Strides s = contiguous_strides(c.x);
                                   for (int i = 0; i + 1 < c.x.rank(); ++i) s[i] = s[i] / k * c.x_stride;
                                   return s;
                                 }(),
                                 {}};
    const HostTensor w32 = randn(Shape{c.n, k}, ++seed, 1.0f / std::sqrt(static_cast<float>(k)));
    const HostTensor bias = randn(Shape{c.n}, ++seed);
    Shape out_shape = c.x;
    out_shape[out_shape.rank() - 1] = c.n;
    const HostTensor residual = randn(out_shape, ++seed);
    HostTensor out = zeros(out_shape);
    WeightUnderTest w = weight_in_form(be, w32, c.form, WeightUse::Linear);
    be.linear(x.t, w.w, out.t, {.bias = c.bias ? &bias.t : nullptr, .act = c.act, .residual = c.residual ? &residual.t : nullptr});

    Mismatches mm(cat("linear x ", c.x.str(), " -> ", c.n, " (", act_name(c.act), ", ", form_name(c.form), ")"));
    for (std::int64_t r : sample_rows(rows, 64, seed)) {
      const float* xr = x.ptr() + r * (c.x_stride ? c.x_stride : k);
      for (std::int64_t n = 0; n < c.n; ++n) {
        double acc = c.bias ? bias.data[static_cast<std::size_t>(n)] : 0.0, mag = std::fabs(acc);
        for (std::int64_t i = 0; i < k; ++i) {
          const double term = static_cast<double>(xr[i]) * w.values.data[static_cast<std::size_t>(n * k + i)];
          acc += term;
          mag += std::fabs(term);
        }
        const double a = act_ref(c.act, acc);
        const double res = c.residual ? residual.data[static_cast<std::size_t>(r * c.n + n)] : 0.0;
        const double ref = a + res;
        const double tol = kActSlope * (static_cast<double>(k) + 2.0) * kU32 * mag + act_tol(c.act, acc, a) +
                           2.0 * kU32 * (std::fabs(a) + std::fabs(res));
        mm.check(out.data[static_cast<std::size_t>(r * c.n + n)], ref, tol, cat("row ", r, " col ", n));
      }
    }
    mm.finish();
  }
}

// =====================================================================================================
namespace {

struct ConvCase {
  Shape x;  // [B, H, W, Cin]
  std::int64_t cout, kernel;
  int stride, padding;
  bool bias, add_per_channel, residual;
  float output_scale;
  WeightForm form;
};

void run_conv_case(CpuBackend& be, const ConvCase& c, std::uint64_t seed, double input_rounding,
                   std::int64_t max_pixels) {
  const std::int64_t b = c.x[0], h = c.x[1], wd = c.x[2], cin = c.x[3], k = c.kernel;
  const std::int64_t ho = (h + 2 * c.padding - k) / c.stride + 1, wo = (wd + 2 * c.padding - k) / c.stride + 1;
  const HostTensor x = randn(c.x, ++seed);
  const HostTensor w32 = randn(Shape{c.cout, k, k, cin}, ++seed, 1.0f / std::sqrt(static_cast<float>(k * k * cin)));
  const HostTensor bias = randn(Shape{c.cout}, ++seed);
  const HostTensor add = randn(Shape{b, c.cout}, ++seed);
  const HostTensor residual = randn(Shape{b, ho, wo, c.cout}, ++seed);
  HostTensor out = zeros(Shape{b, ho, wo, c.cout});
  WeightUnderTest w = weight_in_form(be, w32, c.form, WeightUse::Conv2d);
  be.conv2d(x.t, w.w, out.t,
            {.stride = c.stride, .padding = c.padding, .bias = c.bias ? &bias.t : nullptr,
             .add_per_channel = c.add_per_channel ? &add.t : nullptr, .residual = c.residual ? &residual.t : nullptr,
             .output_scale = c.output_scale});

  Mismatches mm(cat("conv2d x ", c.x.str(), " w ", w32.t.shape.str(), " stride ", c.stride, " padding ", c.padding, " (",
                    form_name(c.form), ")"));
  const double terms = static_cast<double>(k * k * cin) + 4.0;
  for (std::int64_t pix : sample_rows(b * ho * wo, max_pixels, seed)) {
    const std::int64_t n = pix / (ho * wo), oy = pix / wo % ho, ox = pix % wo;
    for (std::int64_t co = 0; co < c.cout; ++co) {
      double acc = 0.0, mag = 0.0;
      for (std::int64_t ky = 0; ky < k; ++ky)
        for (std::int64_t kx = 0; kx < k; ++kx) {
          const std::int64_t iy = oy * c.stride - c.padding + ky, ix = ox * c.stride - c.padding + kx;
          if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;  // zero padding
          for (std::int64_t ci = 0; ci < cin; ++ci) {
            const double term = static_cast<double>(x.data[static_cast<std::size_t>(((n * h + iy) * wd + ix) * cin + ci)]) *
                                w.values.data[static_cast<std::size_t>(((co * k + ky) * k + kx) * cin + ci)];
            acc += term;
            mag += std::fabs(term);
          }
        }
      const double extras[] = {c.bias ? bias.data[static_cast<std::size_t>(co)] : 0.0,
                               c.add_per_channel ? add.data[static_cast<std::size_t>(n * c.cout + co)] : 0.0,
                               c.residual ? residual.data[static_cast<std::size_t>(pix * c.cout + co)] : 0.0};
      for (double e : extras) {
        acc += e;
        mag += std::fabs(e);
      }
      const double ref = acc * c.output_scale;
      const double tol = (terms * kU32 + 2.0 * input_rounding) * mag * std::fabs(c.output_scale) + 2.0 * kU32 * std::fabs(ref);
      mm.check(out.data[static_cast<std::size_t>(pix * c.cout + co)], ref, tol, cat("pixel ", pix, " channel ", co));
    }
  }
  mm.finish();
}

}  // namespace

TEST_CASE("conv2d matches a naive loop", "[ops][conv2d]") {
  const ConvCase cases[] = {
      {{1, 5, 7, 3}, 5, 3, 1, 1, true, false, false, 1.0f, WeightForm::Strided},           // odd everything
      {{2, 9, 11, 12}, 20, 3, 2, 1, true, false, false, 1.0f, WeightForm::Prepared},       // stride 2, odd sizes
      {{2, 8, 8, 36}, 24, 3, 1, 1, true, true, true, 1.0f, WeightForm::Prepared},          // ResNet conv + temb + skip
      {{3, 6, 5, 20}, 36, 1, 1, 0, true, false, true, 0.5f, WeightForm::PreparedFromF16},  // 1x1 shortcut, scale
      {{1, 7, 7, 8}, 4, 3, 2, 0, false, true, false, 1.0f, WeightForm::PreparedFromBf16},  // no padding, stride 2
      {{2, 4, 6, 16}, 8, 3, 1, 2, true, false, false, 2.0f, WeightForm::StridedBf16},      // padding 2
      {{1, 32, 32, 4}, 320, 3, 1, 1, true, false, false, 1.0f, WeightForm::Prepared},      // UNet conv_in (256x256)
      {{2, 64, 64, 320}, 320, 3, 1, 1, true, true, true, 1.0f, WeightForm::Prepared},     // ResNet conv2 at 512x512
      {{2, 64, 64, 320}, 320, 3, 2, 1, true, false, false, 1.0f, WeightForm::Prepared},   // Downsample2D
      {{1, 16, 16, 960}, 640, 1, 1, 0, true, false, false, 1.0f, WeightForm::Prepared},   // up-block shortcut
  };
  CpuBackend be;
  std::uint64_t seed = 200;
  for (const ConvCase& c : cases) run_conv_case(be, c, seed += 10, 0.0, 96);
}

// =====================================================================================================
TEST_CASE("group_norm matches a naive loop", "[ops][group_norm]") {
  struct Case {
    Shape x;
    int groups;
    bool silu;
    bool in_place;
  };
  const Case cases[] = {
      {{1, 3, 5, 36}, 4, false, false},   // 9 channels per group, C not a multiple of 16
      {{2, 7, 3, 36}, 12, true, false},   // 3 per group
      {{3, 11, 40}, 8, true, true},       // [B, N, C] form, in place
      {{1, 1, 1, 32}, 32, false, false},  // one element per group: variance 0
      {{2, 64, 64, 320}, 32, true, false},  // UNet at 512x512
      {{1, 32, 32, 640}, 32, false, true},
  };
  CpuBackend be;
  std::uint64_t seed = 300;
  for (const Case& c : cases) {
    // An offset mean (3) and per-channel spread, so that one-pass E[x^2] - E[x]^2 would lose digits.
    HostTensor x = randn(c.x, ++seed);
    const std::int64_t ch = c.x.back(), pixels = c.x.numel() / (c.x[0] * ch);
    for (std::size_t i = 0; i < x.data.size(); ++i) x.data[i] = 3.0f + x.data[i] * (1.0f + static_cast<float>(i % ch) / static_cast<float>(ch));
    const HostTensor original = x;
    const HostTensor gamma = randn(Shape{ch}, ++seed), beta = randn(Shape{ch}, ++seed);
    HostTensor separate = zeros(c.x);
    const Tensor& out = c.in_place ? x.t : separate.t;
    be.group_norm(x.t, gamma.t, beta.t, out, {.groups = c.groups, .eps = 1e-5f, .silu = c.silu});
    const float* got = static_cast<const float*>(out.data);

    Mismatches mm(cat("group_norm ", c.x.str(), " groups ", c.groups, c.silu ? " +silu" : "", c.in_place ? " in place" : ""));
    const std::int64_t cg = ch / c.groups;
    for (std::int64_t b = 0; b < c.x[0]; ++b)
      for (std::int64_t g = 0; g < c.groups; ++g) {
        double sum = 0.0, sq = 0.0;
        const auto idx = [&](std::int64_t p, std::int64_t i) { return static_cast<std::size_t>((b * pixels + p) * ch + g * cg + i); };
        for (std::int64_t p = 0; p < pixels; ++p)
          for (std::int64_t i = 0; i < cg; ++i) sum += original.data[idx(p, i)];
        const double mean = sum / static_cast<double>(pixels * cg);
        for (std::int64_t p = 0; p < pixels; ++p)
          for (std::int64_t i = 0; i < cg; ++i) sq += std::pow(original.data[idx(p, i)] - mean, 2);
        const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(pixels * cg) + 1e-5);
        for (std::int64_t p : sample_rows(pixels, 256, seed + static_cast<std::uint64_t>(b * 1000 + g)))
          for (std::int64_t i = 0; i < cg; ++i) {
            const std::int64_t cc = g * cg + i;
            const double xv = original.data[idx(p, i)];
            const double scale = rstd * gamma.data[static_cast<std::size_t>(cc)];
            const double shift = beta.data[static_cast<std::size_t>(cc)] - mean * scale;
            const double y = xv * scale + shift;
            const double ref = c.silu ? act_ref(Act::Silu, y) : y;
            // y = x * scale + shift in float, the form torch's kernel uses too: roundings of scale,
            // shift, the product and the sum, each relative to the larger of |x*scale| and |shift|.
            const double tol = 8.0 * kU32 * (std::fabs(xv * scale) + std::fabs(shift)) + act_tol(Act::Silu, y, ref);
            mm.check(got[idx(p, i)], ref, tol, cat("batch ", b, " pixel ", p, " channel ", cc));
          }
      }
    mm.finish();
  }
}

// =====================================================================================================
TEST_CASE("layer_norm matches a naive loop", "[ops][layer_norm]") {
  struct Case {
    std::int64_t b, n, c, row_stride;
    bool in_place;
  };
  const Case cases[] = {
      {1, 1, 5, 0, false}, {2, 77, 36, 0, false}, {1, 9, 40, 56, false}, {3, 13, 100, 0, true},
      {2, 77, 768, 0, false},    // CLIP ViT-L
      {2, 4096, 320, 0, false},  // UNet transformer at 512x512
  };
  CpuBackend be;
  std::uint64_t seed = 400;
  for (const Case& c : cases) {
    HostTensor x = c.row_stride ? randn_rows(c.b, c.n, c.c, c.row_stride, ++seed) : randn(Shape{c.b, c.n, c.c}, ++seed);
    for (float& v : x.data) v = 2.0f + 3.0f * v;
    const HostTensor original = x;
    const std::int64_t rs = c.row_stride ? c.row_stride : c.c;
    const HostTensor gamma = randn(Shape{c.c}, ++seed), beta = randn(Shape{c.c}, ++seed);
    HostTensor separate = zeros(Shape{c.b, c.n, c.c});
    const Tensor& out = c.in_place ? x.t : separate.t;
    const std::int64_t out_rs = c.in_place ? rs : c.c;
    be.layer_norm(x.t, gamma.t, beta.t, out, {.eps = 1e-5f});
    const float* got = static_cast<const float*>(out.data);

    Mismatches mm(cat("layer_norm [", c.b, ", ", c.n, ", ", c.c, "] row stride ", rs));
    for (std::int64_t r : sample_rows(c.b * c.n, 128, seed)) {
      const float* xr = original.ptr() + r * rs;
      double sum = 0.0, sum_abs = 0.0, sq = 0.0;
      for (std::int64_t i = 0; i < c.c; ++i) {
        sum += xr[i];
        sum_abs += std::fabs(xr[i]);
      }
      const double mean = sum / static_cast<double>(c.c);
      for (std::int64_t i = 0; i < c.c; ++i) sq += std::pow(xr[i] - mean, 2);
      const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(c.c) + 1e-5);
      // The mean and variance are summed in 16 float lanes of C/16 terms each: (C/16 + 20) u of
      // the mean magnitude; the normalisation adds a few roundings of each term.
      const double stats = (static_cast<double>(c.c) / 16.0 + 20.0) * kU32;
      for (std::int64_t i = 0; i < c.c; ++i) {
        const double g = std::fabs(gamma.data[static_cast<std::size_t>(i)]);
        const double ref = (xr[i] - mean) * rstd * gamma.data[static_cast<std::size_t>(i)] + beta.data[static_cast<std::size_t>(i)];
        const double tol = stats * (sum_abs / static_cast<double>(c.c) + std::fabs(xr[i] - mean)) * rstd * g +
                           8.0 * kU32 * (std::fabs(xr[i] - mean) * rstd * g + std::fabs(ref));
        mm.check(got[r * out_rs + i], ref, tol, cat("row ", r, " col ", i));
      }
    }
    mm.finish();
  }
}

// =====================================================================================================
namespace {

struct AttentionCase {
  std::int64_t b, nq, nk;
  int heads;
  std::int64_t head_dim;
  bool causal;
  float scale;      // 0: 1/sqrt(d)
  bool fused_qkv;   // q, k, v as column slices of one [B, N, 3C] buffer (needs nq == nk)
  std::int64_t kv_row_stride;  // otherwise: row stride of k and v (0: contiguous)
};

void run_attention_case(CpuBackend& be, const AttentionCase& c, std::uint64_t seed, double input_rounding,
                        std::int64_t max_rows) {
  const std::int64_t ch = c.heads * c.head_dim;
  HostTensor q, k, v, fused;
  if (c.fused_qkv) {
    fused = randn(Shape{c.b, c.nq, 3 * ch}, seed);
    const Strides s{c.nq * 3 * ch, 3 * ch, 1};
    q.t = Tensor{fused.ptr(), DType::F32, Shape{c.b, c.nq, ch}, s, {}};
    k.t = Tensor{fused.ptr() + ch, DType::F32, Shape{c.b, c.nk, ch}, s, {}};
    v.t = Tensor{fused.ptr() + 2 * ch, DType::F32, Shape{c.b, c.nk, ch}, s, {}};
  } else {
    q = randn(Shape{c.b, c.nq, ch}, seed);
    k = c.kv_row_stride ? randn_rows(c.b, c.nk, ch, c.kv_row_stride, seed + 1) : randn(Shape{c.b, c.nk, ch}, seed + 1);
    v = c.kv_row_stride ? randn_rows(c.b, c.nk, ch, c.kv_row_stride, seed + 2) : randn(Shape{c.b, c.nk, ch}, seed + 2);
  }
  HostTensor out = zeros(Shape{c.b, c.nq, ch});
  be.attention(q.t, k.t, v.t, out.t, {.heads = c.heads, .scale = c.scale, .causal = c.causal});

  const double scale = c.scale > 0.0f ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  Mismatches mm(cat("attention B ", c.b, " Nq ", c.nq, " Nk ", c.nk, " heads ", c.heads, " d ", c.head_dim,
                    c.causal ? " causal" : "", c.fused_qkv ? " fused qkv" : ""));
  const auto d = c.head_dim;
  std::vector<double> s(static_cast<std::size_t>(c.nk)), e(s.size()), p(s.size());
  for (std::int64_t b = 0; b < c.b; ++b)
    for (int h = 0; h < c.heads; ++h)
      for (std::int64_t i : sample_rows(c.nq, max_rows, seed + static_cast<std::uint64_t>(b * 100 + h))) {
        const std::int64_t visible = c.causal ? std::min(i + 1, c.nk) : c.nk;  // keys 0..i, torch's is_causal
        double m = -INFINITY;
        for (std::int64_t j = 0; j < visible; ++j) {
          double acc = 0.0, mag = 0.0;
          for (std::int64_t t = 0; t < d; ++t) {
            const double term = at(q.t, {b, i, h * d + t}) * at(k.t, {b, j, h * d + t});
            acc += term;
            mag += std::fabs(term);
          }
          s[static_cast<std::size_t>(j)] = acc * scale;
          e[static_cast<std::size_t>(j)] = mag * scale;
          m = std::max(m, acc * scale);
        }
        double l = 0.0, worst = 0.0;
        for (std::int64_t j = 0; j < visible; ++j) {
          const auto jj = static_cast<std::size_t>(j);
          p[jj] = std::exp(s[jj] - m);
          l += p[jj];
          // How far the computed exponent can be off: the score's dot product (inputs rounded to
          // the compute dtype, then d + 2 roundings of its magnitude), the max subtraction, and
          // exp's own few ulp.
          worst = std::max(worst, (2.0 * input_rounding + (static_cast<double>(d) + 2.0) * kU32) * e[jj] +
                                      2.0 * kU32 * std::fabs(s[jj] - m) + 8.0 * kU32);
        }
        const std::int64_t tiles = (c.nk + 511) / 512;
        for (std::int64_t t = 0; t < d; ++t) {
          double acc = 0.0, mag = 0.0;
          for (std::int64_t j = 0; j < visible; ++j) {
            const double vv = at(v.t, {b, j, h * d + t});
            acc += p[static_cast<std::size_t>(j)] * vv;
            mag += p[static_cast<std::size_t>(j)] * std::fabs(vv);
          }
          const double ref = acc / l, avg_abs = mag / l;
          // Relative errors of the weights (2·worst after normalising), the rounding of P and V to
          // the compute dtype, and the fp32 accumulation of Nk terms with a rescale per key tile.
          const double tol =
              (2.0 * worst + 3.0 * input_rounding + (static_cast<double>(visible) + 4.0 * static_cast<double>(tiles) + 8.0) * kU32) *
              avg_abs;
          mm.check(at(out.t, {b, i, h * d + t}), ref, tol, cat("batch ", b, " head ", h, " query ", i, " dim ", t));
        }
      }
  mm.finish();
}

}  // namespace

TEST_CASE("attention matches a naive loop", "[ops][attention]") {
  const AttentionCase cases[] = {
      {1, 1, 1, 1, 4, false, 0.0f, false, 0},       // one query, one key
      {2, 77, 77, 2, 8, true, 0.0f, true, 0},       // CLIP-like: causal self-attention, fused qkv view
      {1, 5, 9, 3, 16, true, 0.0f, false, 0},       // causal, Nq < Nk (top-left: query i sees keys 0..i)
      {2, 13, 6, 2, 4, true, 0.0f, false, 0},       // causal, Nq > Nk
      {3, 200, 77, 4, 40, false, 0.0f, false, 0},   // cross-attention: Nk = 77 text tokens
      {1, 130, 513, 1, 24, false, 0.3f, false, 56},  // key tiles with a tail, strided k/v rows, custom scale
      {2, 257, 257, 5, 12, true, 0.0f, true, 0},   // query tiles with a tail, causal, fused
      {1, 1030, 1030, 2, 64, false, 0.0f, true, 0},  // SD2-like head dim, several key tiles
      {2, 4096, 4096, 8, 40, false, 0.0f, false, 0},  // SD1 self-attention at 512x512 (sampled queries)
      {1, 1024, 77, 8, 80, false, 0.0f, false, 0},   // SD1 cross-attention at 32x32
      {1, 256, 256, 8, 160, false, 0.0f, true, 0},   // SD1 at 16x16
      {1, 1024, 1024, 1, 512, false, 0.0f, false, 0},  // VAE mid-block attention (one head of 512)
  };
  CpuBackend be;
  std::uint64_t seed = 500;
  for (const AttentionCase& c : cases) run_attention_case(be, c, seed += 10, 0.0, 24);
}

// =====================================================================================================
TEST_CASE("geglu multiplies the first half by gelu of the second", "[ops][geglu]") {
  struct Case {
    Shape x;
  };
  const Case cases[] = {{{1, 1, 2}}, {{2, 77, 34}}, {{1, 9, 2 * 41}}, {{2, 1024, 2 * 1280}}};
  CpuBackend be;
  std::uint64_t seed = 600;
  for (const Case& c : cases) {
    const HostTensor x = randn(c.x, ++seed, 2.0f);
    const std::int64_t f = c.x.back() / 2, rows = c.x.numel() / c.x.back();
    Shape os = c.x;
    os[os.rank() - 1] = f;
    HostTensor out = zeros(os);
    be.geglu(x.t, out.t);
    Mismatches mm(cat("geglu ", c.x.str()));
    for (std::int64_t r : sample_rows(rows, 256, seed))
      for (std::int64_t i = 0; i < f; ++i) {
        const double hidden = x.data[static_cast<std::size_t>(r * 2 * f + i)], gate = x.data[static_cast<std::size_t>(r * 2 * f + f + i)];
        const double g = act_ref(Act::Gelu, gate), ref = hidden * g;
        mm.check(out.data[static_cast<std::size_t>(r * f + i)], ref, std::fabs(hidden) * act_tol(Act::Gelu, gate, g) + kU32 * std::fabs(ref),
                 cat("row ", r, " col ", i));
      }
    mm.finish();
  }
}

TEST_CASE("activation matches torch's definitions, in place too", "[ops][activation]") {
  // Normal draws (sigma 4) plus the far tails where exp under/overflows.
  HostTensor x = randn(Shape{3, 1001}, 700, 4.0f);
  const float extremes[] = {0.0f, -0.0f, 1e-6f, -1e-6f, 20.0f, -20.0f, 60.0f, -60.0f, 100.0f, -100.0f, 1e4f, -1e4f};
  for (std::size_t i = 0; i < std::size(extremes); ++i) x.data[i * 7] = extremes[i];
  CpuBackend be;
  for (Act a : {Act::None, Act::Silu, Act::Gelu, Act::GeluTanh, Act::QuickGelu}) {
    for (bool in_place : {false, true}) {
      HostTensor buffer = in_place ? x : zeros(x.t.shape);
      be.activation(in_place ? buffer.t : x.t, buffer.t, a);
      Mismatches mm(cat("activation ", act_name(a), in_place ? " in place" : ""));
      for (std::size_t i = 0; i < x.data.size(); ++i) {
        const double ref = act_ref(a, x.data[i]);
        mm.check(buffer.data[i], ref, act_tol(a, x.data[i], ref), cat("x = ", x.data[i]));
      }
      mm.finish();
    }
  }
}

TEST_CASE("add scales, broadcasts and runs in place", "[ops][add]") {
  CpuBackend be;
  const HostTensor a = randn(Shape{2, 7, 5, 9}, 800);
  struct Case {
    Shape b;  // empty rank: no b
    float alpha, beta;
    bool in_place;
  };
  const Case cases[] = {{{2, 7, 5, 9}, 1.0f, 1.0f, false}, {{9}, 0.5f, -2.0f, false}, {{5, 9}, 1.0f, 3.0f, true},
                        {{}, 0.18215f, 0.0f, false}, {{2, 7, 5, 9}, -1.0f, 0.25f, true}};
  std::uint64_t seed = 810;
  for (const Case& c : cases) {
    const HostTensor b = c.b.rank() ? randn(c.b, ++seed) : HostTensor{};
    HostTensor out = c.in_place ? a : zeros(a.t.shape);
    const Tensor& first = c.in_place ? out.t : a.t;
    be.add(first, c.b.rank() ? &b.t : nullptr, out.t, {.alpha = c.alpha, .beta = c.beta});
    Mismatches mm(cat("add b ", c.b.str(), " alpha ", c.alpha, " beta ", c.beta));
    const std::int64_t period = c.b.rank() ? c.b.numel() : 1;
    for (std::size_t i = 0; i < a.data.size(); ++i) {
      const double av = a.data[i] * static_cast<double>(c.alpha);
      const double bv = c.b.rank() ? b.data[i % static_cast<std::size_t>(period)] * static_cast<double>(c.beta) : 0.0;
      mm.check(out.data[i], av + bv, 3.0 * kU32 * (std::fabs(av) + std::fabs(bv)), cat("element ", i));
    }
    mm.finish();
  }
}

TEST_CASE("upsample_nearest and concat_channels copy exactly", "[ops][upsample][concat]") {
  CpuBackend be;
  const HostTensor x = randn(Shape{2, 3, 5, 7}, 900);
  // 2x (the usual case) and the UNet's odd sizes: 3 -> 5 rows and 5 -> 9 columns are what a 40 or
  // 72 pixel side gives after rounding down on the way in; 5 -> 3 shrinks. The expected source is
  // torch's rule written out from its definition (floor of dst * in/out in F32, clamped), which
  // for 3 -> 5 picks rows 0, 0, 1, 1, 2: not the same as round(dst / 2) or ceil, so a wrong rule fails.
  struct Case {
    std::int64_t ho, wo;
  };
  for (const Case c : {Case{6, 10}, Case{5, 9}, Case{4, 3}, Case{1, 1}}) {
    HostTensor up = zeros(Shape{2, c.ho, c.wo, 7});
    be.upsample_nearest(x.t, up.t);
    const auto source = [](std::int64_t dst, std::int64_t in, std::int64_t out) {
      const float scale = static_cast<float>(in) / static_cast<float>(out);
      return std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(static_cast<float>(dst) * scale)), in - 1);
    };
    long wrong = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t y = 0; y < c.ho; ++y)
        for (std::int64_t xx = 0; xx < c.wo; ++xx)
          for (std::int64_t ch = 0; ch < 7; ++ch)
            wrong += at(up.t, {b, y, xx, ch}) != at(x.t, {b, source(y, 3, c.ho), source(xx, 5, c.wo), ch});
    INFO("out " << c.ho << " x " << c.wo);
    CHECK(wrong == 0);
  }
  {  // the rule itself, for 3 -> 5, spelled out
    HostTensor up = zeros(Shape{2, 5, 10, 7});
    be.upsample_nearest(x.t, up.t);
    const std::int64_t rows[] = {0, 0, 1, 1, 2};
    long wrong = 0;
    for (std::int64_t y = 0; y < 5; ++y) wrong += at(up.t, {1, y, 3, 2}) != at(x.t, {1, rows[y], 1, 2});
    CHECK(wrong == 0);
  }

  const HostTensor a = randn(Shape{2, 3, 4, 5}, 901), bb = randn(Shape{2, 3, 4, 11}, 902);
  HostTensor cat_out = zeros(Shape{2, 3, 4, 16});
  be.concat_channels(a.t, bb.t, cat_out.t);
  long wrong = 0;
  for (std::int64_t p = 0; p < 24; ++p)
    for (std::int64_t c = 0; c < 16; ++c)
      wrong += cat_out.data[static_cast<std::size_t>(p * 16 + c)] !=
               (c < 5 ? a.data[static_cast<std::size_t>(p * 5 + c)] : bb.data[static_cast<std::size_t>(p * 11 + c - 5)]);
  CHECK(wrong == 0);
}

TEST_CASE("timestep_embedding matches diffusers' formula", "[ops][timestep_embedding]") {
  CpuBackend be;
  std::vector<float> ts{0.0f, 1.0f, 999.0f, 500.5f, 0.25f};
  const Tensor t = Tensor::contiguous(ts.data(), DType::F32, Shape{5});
  struct Case {
    std::int64_t dim;
    TimestepEmbeddingArgs args;
  };
  const Case cases[] = {{320, {.flip_sin_to_cos = true, .freq_shift = 0.0f}},   // SD UNet
                        {32, {.flip_sin_to_cos = false, .freq_shift = 1.0f}},   // diffusers' defaults
                        {7, {.flip_sin_to_cos = true, .freq_shift = 0.0f, .max_period = 100.0f}}};  // odd dim: zero pad
  for (const Case& c : cases) {
    HostTensor out = zeros(Shape{5, c.dim});
    be.timestep_embedding(t, out.t, c.args);
    Mismatches mm(cat("timestep_embedding dim ", c.dim));
    const std::int64_t half = c.dim / 2;
    for (std::int64_t b = 0; b < 5; ++b) {
      for (std::int64_t i = 0; i < half; ++i) {
        const double exponent = -std::log(static_cast<double>(c.args.max_period)) * static_cast<double>(i) /
                                (static_cast<double>(half) - c.args.freq_shift);
        const double arg = ts[static_cast<std::size_t>(b)] * std::exp(exponent);
        // The float computation's exponent is good to 4 roundings, so its argument to
        // (4|exponent| + 3) u relative; sin and cos pass that on as an absolute error.
        const double tol = (4.0 * std::fabs(exponent) + 3.0) * kU32 * std::fabs(arg) + 2.0 * kU32;
        const double first = c.args.flip_sin_to_cos ? std::cos(arg) : std::sin(arg);
        const double second = c.args.flip_sin_to_cos ? std::sin(arg) : std::cos(arg);
        mm.check(out.data[static_cast<std::size_t>(b * c.dim + i)], first, tol, cat("t ", ts[static_cast<std::size_t>(b)], " col ", i));
        mm.check(out.data[static_cast<std::size_t>(b * c.dim + half + i)], second, tol, cat("t ", ts[static_cast<std::size_t>(b)], " col ", half + i));
      }
      if (c.dim % 2) mm.check(out.data[static_cast<std::size_t>(b * c.dim + c.dim - 1)], 0.0, 0.0, "pad column");
    }
    mm.finish();
  }
}

TEST_CASE("embedding gathers rows and refuses ids outside the table", "[ops][embedding]") {
  CpuBackend be;
  const HostTensor table = randn(Shape{10, 6}, 1000);
  std::vector<std::int32_t> ids{3, 0, 9, 3, 7, 1};
  const Tensor ids_t = Tensor::contiguous(ids.data(), DType::I32, Shape{2, 3});
  HostTensor out = zeros(Shape{2, 3, 6});
  be.embedding(ids_t, table.t, out.t);
  long wrong = 0;
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (std::size_t c = 0; c < 6; ++c) wrong += out.data[i * 6 + c] != table.data[static_cast<std::size_t>(ids[i]) * 6 + c];
  CHECK(wrong == 0);
  ids[4] = 10;
  CHECK_THROWS_WITH(be.embedding(ids_t, table.t, out.t), Catch::Contains("id 10 at position 4 is outside the table of 10 rows"));
  ids[4] = -1;
  CHECK_THROWS_WITH(be.embedding(ids_t, table.t, out.t), Catch::Contains("id -1"));
}

// =====================================================================================================
TEST_CASE("bf16 mode stays within bf16's rounding of fp32", "[ops][bf16]") {
  if (!have_bf16()) {
    WARN("this CPU has no AVX512-BF16: bf16 mode is refused here, nothing to test");
    return;
  }
  CpuBackend be({.threads = 0, .compute = DType::BF16});
  REQUIRE(be.compute() == DType::BF16);
  // Weights are prepared to BF16: their values are rounded, which the conv/linear references
  // below take from the bf16 copy; the inputs are rounded inside the op (2^-9 each).
  const ConvCase convs[] = {
      {{2, 9, 11, 12}, 20, 3, 2, 1, true, false, false, 1.0f, WeightForm::PreparedFromBf16},
      {{2, 8, 8, 36}, 24, 3, 1, 1, true, true, true, 1.0f, WeightForm::PreparedFromBf16},
      {{2, 64, 64, 320}, 320, 3, 1, 1, true, true, true, 1.0f, WeightForm::PreparedFromBf16},
      {{1, 7, 7, 8}, 4, 3, 2, 0, false, true, false, 1.0f, WeightForm::StridedBf16},
  };
  std::uint64_t seed = 1100;
  for (const ConvCase& c : convs) run_conv_case(be, c, seed += 10, kUBf16, 64);
  const AttentionCase attns[] = {
      {2, 77, 77, 2, 8, true, 0.0f, true, 0},
      {3, 200, 77, 4, 40, false, 0.0f, false, 0},
      {1, 130, 513, 1, 24, false, 0.3f, false, 56},
      {2, 4096, 4096, 8, 40, false, 0.0f, false, 0},
  };
  for (const AttentionCase& c : attns) run_attention_case(be, c, seed += 10, kUBf16, 16);

  // linear: prepared weights come back as packed BF16.
  const HostTensor x = randn(Shape{3, 45, 72}, ++seed), w32 = randn(Shape{40, 72}, ++seed, 0.12f), bias = randn(Shape{40}, ++seed);
  const HalfTensor w16 = to_bf16(w32);
  const Tensor w = be.prepare_weight(w32.t, WeightUse::Linear);
  CHECK(w.dtype == DType::BF16);
  CHECK(w.layout == Layout::Packed);
  HostTensor out = zeros(Shape{3, 45, 40});
  be.linear(x.t, w, out.t, {.bias = &bias.t, .act = Act::Silu});
  const HostTensor wv = widened(w16);
  Mismatches mm("bf16 linear [3, 45, 72] -> 40");
  for (std::int64_t r = 0; r < 135; ++r)
    for (std::int64_t n = 0; n < 40; ++n) {
      double acc = bias.data[static_cast<std::size_t>(n)], mag = std::fabs(acc);
      for (std::int64_t i = 0; i < 72; ++i) {
        const double term = static_cast<double>(x.data[static_cast<std::size_t>(r * 72 + i)]) * wv.data[static_cast<std::size_t>(n * 72 + i)];
        acc += term;
        mag += std::fabs(term);
      }
      const double ref = act_ref(Act::Silu, acc);
      mm.check(out.data[static_cast<std::size_t>(r * 40 + n)], ref,
               kActSlope * (kUBf16 + 74.0 * kU32) * mag + act_tol(Act::Silu, acc, ref), cat("row ", r, " col ", n));
    }
  mm.finish();
}

TEST_CASE("the CPU backend's options are checked", "[ops][options]") {
  CHECK_THROWS_AS(CpuBackend({.threads = -1}), UsageError);
  CHECK_THROWS_WITH(CpuBackend({.threads = 0, .compute = DType::F16}), Catch::Contains("F32 or BF16, not F16"));
  CpuBackend one({.threads = 1});
  CHECK(one.threads() == 1);
  CHECK(CpuBackend().threads() >= 1);
  // A single thread computes the same op correctly.
  const ConvCase c{{2, 9, 11, 12}, 20, 3, 2, 1, true, true, true, 1.0f, WeightForm::Prepared};
  run_conv_case(one, c, 1200, 0.0, 1000);
  run_attention_case(one, {2, 257, 257, 5, 12, true, 0.0f, true, 0}, 1210, 0.0, 300);
}

TEST_CASE("prepared weights are accounted and belong to their backend", "[ops][prepare]") {
  CpuBackend a, b;
  const HostTensor w = randn(Shape{64, 32}, 1300);
  const Tensor packed = a.prepare_weight(w.t, WeightUse::Linear);
  CHECK(packed.shape == w.t.shape);
  CHECK(a.stats().prepared_weight_bytes >= 64 * 32 * 4);
  CHECK(a.held_bytes() >= a.stats().prepared_weight_bytes);
  const HostTensor x = randn(Shape{3, 32}, 1301);
  HostTensor out = zeros(Shape{3, 64});
  CHECK_THROWS_WITH(b.linear(x.t, packed, out.t, {}), Catch::Contains("packed, but not by this backend"));
  const HostTensor conv_w = randn(Shape{8, 3, 3, 4}, 1302);
  CHECK_THROWS_WITH(a.prepare_weight(conv_w.t, WeightUse::Linear), Catch::Contains("expected rank 2"));
}
