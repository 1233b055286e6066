// The normalisation kernels of kernels/cuda/norms.cuh (GroupNorm with and without SiLU, LayerNorm)
// against the reference backend (tests/support/reference_backend.hpp: the definition in double,
// rounded once to fp32, on the same fp16-rounded inputs), with the fp16 rule of fp16_rule.hpp
// against a naive fp16 computation written here, and the per-element bound of
// half_tensor_support.hpp, which is the sharp one for norms (the naive fp16 statistics are far
// off, see there).
//
// The absolute term of the per-element bound: the kernel computes x * scale + shift in fp32 from
// fp32 statistics, the reference (x - mean) * rstd * gamma + beta in double, so the two differ by
// the kernel's few fp32 roundings of the terms |x * scale| and |shift| (and of the mean's
// contribution, |mean * scale|), which a large mean makes large, plus the reference's one rounding
// (2^-24 of the output, inside the same terms); 2^-20 of their sum allows eight such roundings.
// The terms are computed here from double statistics of the inputs, not from either result. A
// statistic off by one part in 10^4 (let alone E[x^2] - E[x]^2 in fp32 with a mean of 100, off by
// percents) shows as an error of about 2^-13 relative in every large output and fails.
//
// Inputs are N(0, 1) (or N(100, 1) where a case tests cancellation), gamma N(1, 0.5^2) and beta
// N(0, 0.5^2) rounded to fp16. Each case says which launch path it takes: the 16-byte path when C
// is a multiple of 8 and the views are aligned, the 1-wide path otherwise (also forced by shifting
// views one half off alignment); how many row slices (blocks) each GroupNorm group is split over.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cuda/norms.cuh"
#include "tests/cuda_kernels/fp16_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::norms_test {

using half_tensors::check_each_element;
using half_tensors::f32_tensor;
using half_tensors::GuardedHalves;

float r16(double x) { return round_to_f16(float(x)); }

// N(mean, sigma^2) draws rounded to fp16.
std::vector<float> normal_f16(std::size_t n, std::uint64_t seed, float mean, float sigma) {
  std::vector<float> v = randn_f16(n, seed, sigma);
  for (float& x : v) x = round_to_f16(mean + x);
  return v;
}

float naive_silu(float y) { return r16(y / r16(1.0 + r16(std::exp(-double(y))))); }

// The fp16 statistics of `values` as a naive fp16 kernel would compute them: running sums in fp16.
struct NaiveStats {
  float mean, rstd;
};

template <class Values>
NaiveStats naive_stats(const Values& values, std::int64_t count, float eps) {
  float sum = 0.0f;
  values([&](float x) { sum = r16(double(sum) + x); });
  const float mean = r16(double(sum) / double(count));
  float sq = 0.0f;
  values([&](float x) {
    const float d = r16(double(x) - mean);
    sq = r16(double(sq) + r16(double(d) * d));
  });
  const float var = r16(double(sq) / double(count));
  return {mean, r16(1.0 / double(r16(std::sqrt(double(r16(double(var) + eps))))))};
}

float naive_affine(float x, NaiveStats s, float gamma, float beta) {
  return r16(double(r16(double(r16(double(r16(double(x) - s.mean)) * s.rstd)) * gamma)) + beta);
}

// A naive fp16 sum that overflows (a mean of 100 over more than 655 values) makes the naive
// output NaN: its error is unbounded, which max_abs_diff would skip over, so it is made infinite.
float unbounded_if_nan(float y) { return std::isnan(y) ? std::numeric_limits<float>::infinity() : y; }

// Double statistics of `values`, for the absolute term only.
struct ExactStats {
  double mean, rstd;
};

template <class Values>
ExactStats exact_stats(const Values& values, std::int64_t count, float eps) {
  double sum = 0.0;
  values([&](float x) { sum += x; });
  const double mean = sum / double(count);
  double sq = 0.0;
  values([&](float x) { sq += (x - mean) * (x - mean); });
  return {mean, 1.0 / std::sqrt(sq / double(count) + eps)};
}

double affine_term(float x, ExactStats s, float gamma, float beta) {
  const double scale = std::fabs(double(gamma)) * s.rstd;
  return 0x1p-25 + 0x1p-20 * (std::fabs(double(x)) * scale + std::fabs(s.mean) * scale + std::fabs(double(beta)));
}

// ---- GroupNorm

enum class Placement { OutOfPlace, InPlace };

struct GroupNormCase {
  std::int64_t batch, pixels, channels;
  int groups;
  Act act;
  Placement placement;
  std::size_t misalign;
  float mean;  // of the inputs
  const char* why;
};

void check_group_norm(ReferenceBackend& reference, const GroupNormCase& k) {
  CAPTURE(k.why);
  constexpr float kEps = 1e-5f;
  const std::int64_t n = k.batch * k.pixels * k.channels;
  const std::vector<float> x = normal_f16(std::size_t(n), 500 + std::uint64_t(n), k.mean, 1.0f);
  const std::vector<float> gamma = normal_f16(std::size_t(k.channels), 501, 1.0f, 0.5f);
  const std::vector<float> beta = normal_f16(std::size_t(k.channels), 502, 0.0f, 0.5f);
  const GroupNormGeometry geometry{.batch = k.batch, .pixels = k.pixels, .channels = k.channels, .groups = k.groups};

  GuardedHalves d_x(x, k.misalign), d_gamma(gamma), d_beta(beta);
  GuardedHalves d_out(k.placement == Placement::InPlace ? 0 : std::size_t(n), k.misalign);
  const GuardedHalves& target = k.placement == Placement::InPlace ? d_x : d_out;
  DeviceBuffer<float> workspace(std::size_t(cuda::group_norm_workspace_floats(geometry)));
  cuda::launch_group_norm({.x = d_x.input("x"),
                           .gamma = d_gamma.input("gamma"),
                           .beta = d_beta.input("beta"),
                           .out = target.view("out"),
                           .workspace = workspace.view("workspace"),
                           .geometry = geometry,
                           .eps = kEps,
                           .act = k.act});
  const std::vector<float> got = target.values();

  std::vector<float> x32 = x, gamma32 = gamma, beta32 = beta, ref(x.size());
  const Shape shape{k.batch, k.pixels, k.channels};
  reference.group_norm(f32_tensor(x32, shape), f32_tensor(gamma32, Shape{k.channels}),
                       f32_tensor(beta32, Shape{k.channels}), f32_tensor(ref, shape),
                       {.groups = k.groups, .eps = kEps, .silu = k.act == Act::Silu});

  std::vector<float> naive(x.size());
  std::vector<double> term(x.size());
  const std::int64_t cg = k.channels / k.groups;
  for (std::int64_t b = 0; b < k.batch; ++b)
    for (std::int64_t g = 0; g < k.groups; ++g) {
      auto index = [&](std::int64_t p, std::int64_t c) { return std::size_t((b * k.pixels + p) * k.channels + c); };
      auto group_values = [&](auto&& f) {  // in the obvious loop order: pixels, then channels
        for (std::int64_t p = 0; p < k.pixels; ++p)
          for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) f(x[index(p, c)]);
      };
      const NaiveStats ns = naive_stats(group_values, k.pixels * cg, kEps);
      const ExactStats es = exact_stats(group_values, k.pixels * cg, kEps);
      for (std::int64_t p = 0; p < k.pixels; ++p)
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) {
          const std::size_t i = index(p, c);
          const float y = naive_affine(x[i], ns, gamma[std::size_t(c)], beta[std::size_t(c)]);
          naive[i] = unbounded_if_nan(k.act == Act::Silu ? naive_silu(y) : y);
          term[i] = affine_term(x[i], es, gamma[std::size_t(c)], beta[std::size_t(c)]);
        }
    }

  check_fp16_rule(got, ref, naive, std::ldexp(half_tensors::max_abs(ref), -11), k.why);
  check_each_element(got, ref, [&](std::size_t i) { return term[i]; }, k.why);
}

// The UNet's first GroupNorm + SiLU at 512x512 with guidance (2.6 M elements): 10 channels per
// group, so vectors of 8 straddle groups; 6 row lanes x 40 column lanes, 171 slices per element.
TEST_CASE("group_norm at the UNet's real size", "[cuda][norms]") {
  ReferenceBackend reference;
  check_group_norm(reference, {2, 64 * 64, 320, 32, Act::Silu, Placement::OutOfPlace, 0, 0.0f,
                         "UNet [2, 64x64, 320], SiLU: vector path, 171 slices"});
}

TEST_CASE("group_norm: statistics split over many blocks, with and without SiLU", "[cuda][norms]") {
  const GroupNormCase cases[] = {
      {1, 16 * 16, 320, 32, Act::Silu, Placement::InPlace, 0, 0.0f, "[1, 16x16, 320] in place: vector path, 11 slices"},
      {1, 16 * 16, 320, 32, Act::None, Placement::OutOfPlace, 1, 0.0f,
       "[1, 16x16, 320] shifted by one half: scalar path, two column passes (256 + 64), 64 slices"},
      // The VAE's channel count at its full-resolution levels: 4 channels per group, two groups
      // per vector; on a 32x32 image instead of 512x512 (16 column x 16 row lanes, 16 slices).
      {1, 32 * 32, 128, 32, Act::Silu, Placement::OutOfPlace, 0, 0.0f, "VAE [1, 32x32, 128], SiLU: vector path"},
      // The UNet's 1280-channel level at its real 8x8 size: 160 column lanes, one row lane.
      {2, 8 * 8, 1280, 32, Act::Silu, Placement::InPlace, 0, 0.0f, "UNet [2, 8x8, 1280] in place: vector path"},
      {2, 50, 36, 4, Act::None, Placement::OutOfPlace, 0, 0.0f,
       "[2, 50, 36], 4 groups of 9: scalar path, 2 slices of 25 rows over 7 row lanes"},
      {1, 5, 16, 4, Act::Silu, Placement::OutOfPlace, 0, 0.0f, "[1, 5, 16]: one slice, most row lanes idle"},
      // |mean| 100 against a standard deviation of 1: E[x^2] - E[x]^2 in fp32 would be off by
      // percents; 1000 rows of 64 channels in 8 slices of 125.
      {1, 1000, 64, 8, Act::None, Placement::OutOfPlace, 0, 100.0f, "[1, 1000, 64], mean 100: vector path, 8 slices"},
  };
  ReferenceBackend reference;
  for (const GroupNormCase& k : cases) check_group_norm(reference, k);
}

// ---- LayerNorm

struct LayerNormCase {
  std::int64_t rows, cols;
  std::int64_t x_row_stride;  // >= cols: x is a column slice of a wider buffer when larger
  Placement placement;        // in place: out is x, with x's row stride; else contiguous
  std::size_t misalign;
  float mean;
  const char* why;
};

TEST_CASE("layer_norm: one warp per row over contiguous and strided rows", "[cuda][norms]") {
  constexpr float kEps = 1e-5f;
  const LayerNormCase cases[] = {
      {2 * 77, 768, 768, Placement::OutOfPlace, 0, 0.0f, "CLIP ViT-L [2, 77, 768]: vector path"},
      // The UNet's transformer norms at the 32x32 level of a 512x512 image, batch 2.
      {2 * 32 * 32, 640, 640, Placement::InPlace, 0, 0.0f, "UNet [2, 32x32, 640] in place: vector path"},
      {2 * 16 * 16, 1280, 1280, Placement::OutOfPlace, 0, 0.0f, "UNet [2, 16x16, 1280]: vector path"},
      {37, 100, 103, Placement::OutOfPlace, 0, 0.0f, "37 rows of 100 in rows of 103: scalar path, strided x"},
      {20, 64, 72, Placement::InPlace, 0, 0.0f, "20 rows of 64 in rows of 72, in place: vector path, strided"},
      {3, 32, 32, Placement::OutOfPlace, 0, 0.0f, "tiny model [3, 32]: vector path, 4 busy lanes"},
      {9, 320, 320, Placement::OutOfPlace, 1, 0.0f, "[9, 320] shifted by one half: scalar path, 10 values a lane"},
      {16, 1024, 1024, Placement::OutOfPlace, 0, 100.0f, "[16, 1024], mean 100: vector path"},
  };
  ReferenceBackend reference;
  for (const LayerNormCase& k : cases) {
    CAPTURE(k.why);
    const std::int64_t x_count = (k.rows - 1) * k.x_row_stride + k.cols;
    const std::vector<float> x = normal_f16(std::size_t(x_count), 600 + std::uint64_t(x_count), k.mean, 1.0f);
    const std::vector<float> gamma = normal_f16(std::size_t(k.cols), 601, 1.0f, 0.5f);
    const std::vector<float> beta = normal_f16(std::size_t(k.cols), 602, 0.0f, 0.5f);
    const bool in_place = k.placement == Placement::InPlace;
    const RowsView x_rows{.rows = k.rows, .cols = k.cols, .row_stride = k.x_row_stride};
    const RowsView out_rows = in_place ? x_rows : RowsView{.rows = k.rows, .cols = k.cols, .row_stride = k.cols};

    GuardedHalves d_x(x, k.misalign), d_gamma(gamma), d_beta(beta);
    GuardedHalves d_out(in_place ? 0 : std::size_t(k.rows * k.cols), k.misalign);
    const GuardedHalves& target = in_place ? d_x : d_out;
    cuda::launch_layer_norm({.x = d_x.input("x"),
                             .gamma = d_gamma.input("gamma"),
                             .beta = d_beta.input("beta"),
                             .out = target.view("out"),
                             .geometry = {.x = x_rows, .out = out_rows},
                             .eps = kEps});
    const std::vector<float> written = target.values();

    // The rows of the output; in place, the elements between x's rows must be untouched.
    std::vector<float> got(std::size_t(k.rows * k.cols));
    std::size_t gaps_changed = 0;
    for (std::int64_t r = 0; r < k.rows; ++r) {
      for (std::int64_t c = 0; c < k.cols; ++c)
        got[std::size_t(r * k.cols + c)] = written[std::size_t(r * out_rows.row_stride + c)];
      for (std::int64_t c = k.cols; in_place && r + 1 < k.rows && c < k.x_row_stride; ++c) {
        const std::size_t i = std::size_t(r * k.x_row_stride + c);
        gaps_changed += written[i] != x[i];
      }
    }
    CHECK(gaps_changed == 0);

    std::vector<float> x32 = x, gamma32 = gamma, beta32 = beta, ref(got.size());
    Tensor tx = f32_tensor(x32, Shape{k.rows, k.cols});
    tx.strides = Strides{k.x_row_stride, 1};
    reference.layer_norm(tx, f32_tensor(gamma32, Shape{k.cols}), f32_tensor(beta32, Shape{k.cols}),
                         f32_tensor(ref, Shape{k.rows, k.cols}), {.eps = kEps});

    std::vector<float> naive(got.size());
    std::vector<double> term(got.size());
    for (std::int64_t r = 0; r < k.rows; ++r) {
      auto row_values = [&](auto&& f) {
        for (std::int64_t c = 0; c < k.cols; ++c) f(x[std::size_t(r * k.x_row_stride + c)]);
      };
      const NaiveStats ns = naive_stats(row_values, k.cols, kEps);
      const ExactStats es = exact_stats(row_values, k.cols, kEps);
      for (std::int64_t c = 0; c < k.cols; ++c) {
        const float xv = x[std::size_t(r * k.x_row_stride + c)];
        naive[std::size_t(r * k.cols + c)] =
            unbounded_if_nan(naive_affine(xv, ns, gamma[std::size_t(c)], beta[std::size_t(c)]));
        term[std::size_t(r * k.cols + c)] = affine_term(xv, es, gamma[std::size_t(c)], beta[std::size_t(c)]);
      }
    }

    check_fp16_rule(got, ref, naive, std::ldexp(half_tensors::max_abs(ref), -11), k.why);
    check_each_element(got, ref, [&](std::size_t i) { return term[i]; }, k.why);
  }
}

}  // namespace sdgen::test::norms_test
