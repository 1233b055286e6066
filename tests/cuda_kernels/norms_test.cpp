// The normalisation kernels of kernels/cuda/norms.cuh (GroupNorm with and without SiLU, LayerNorm)
// against the reference backend (tests/support/reference_backend.hpp: the definition in double,
// rounded once to fp32, on the same inputs rounded to the storage format), in both storage formats
// T (fp16 and bf16): the rule of storage_rule.hpp against a naive computation in T written here
// (running sums and every intermediate rounded to T), and the per-element bound of
// half_tensor_support.hpp, half an ulp of T (2^-11 relative in fp16, 2^-8 in bf16) plus the
// absolute term below. The per-element bound is the sharp one for norms (the naive statistics are
// far off in either format, see there).
//
// The absolute term of the per-element bound: the kernel computes x * scale + shift in fp32 from
// fp32 statistics, the reference (x - mean) * rstd * gamma + beta in double, so the two differ by
// the kernel's few fp32 roundings of the terms |x * scale| and |shift| (and of the mean's
// contribution, |mean * scale|), which a large mean makes large, plus the reference's one rounding
// (2^-24 of the output, inside the same terms); 2^-20 of their sum allows eight such roundings.
// These are fp32's, the same in both formats; half of T's subnormal step (2^-25 in fp16, 2^-134 in
// bf16) covers outputs too small for the relative term. The terms are computed here from double
// statistics of the inputs, not from either result. What the bound catches: a statistic off by a
// relative eps moves every output y by about eps |y|, and an output lying within that distance of
// a rounding midpoint, near the bottom of its binade (where half an ulp of T is nearly all of the
// bound), then rounds beyond it. Simulated on N(0, 1) inputs: in fp16 eps = 10^-4 fails about 1.5%
// of the outputs (dozens in every case); bf16's spacing is 8 times coarser, and eps = 10^-4 fails
// about one output in 10^4, 3 * 10^-4 a few in 10^3, 10^-3 about 3% (so bf16 holds an rstd to a
// few parts in 10^4, fp16 to a few in 10^5). A large mean amplifies a relative error of the mean
// itself: at a mean of 100, 10^-4 moves outputs of size 1 by 0.01, beyond half an ulp at 1 in
// both formats, and fails nearly every output; E[x^2] - E[x]^2 in fp32, off by percents, fails
// everywhere.
//
// Inputs are N(0, 1) (or N(100, 1) where a case tests cancellation), gamma N(1, 0.5^2) and beta
// N(0, 0.5^2), rounded to T (at 100, bf16's spacing is 0.5: the inputs take a few values, which
// the reference sees the same). Each case says which launch path it takes: the 16-byte path when C
// is a multiple of 8 and the views are aligned, the 1-wide path otherwise (also forced by shifting
// views one element off alignment); how many row slices (blocks) each GroupNorm group is split
// over. fp16 runs every case; bf16 runs every instantiation and path (vector and scalar, GroupNorm
// split over blocks with and without SiLU, in place, LayerNorm strided, both cancellation cases)
// on every shape but the three largest (the UNet's first GroupNorm and two of its LayerNorms),
// since each CUDA thread is a fiber in emulation.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/norms.cuh"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::norms_test {

using half_tensors::check_each_element;
using half_tensors::f32_tensor;
using half_tensors::Guarded;
// N(mean, sigma^2) draws rounded to T.
template <class T>
std::vector<float> normal(std::size_t n, std::uint64_t seed, float mean, float sigma) {
  std::vector<float> v = randn<T>(n, seed, sigma);
  for (float& x : v) x = round_to<T>(mean + x);
  return v;
}

template <class T>
float naive_silu(float y) {
  return round_to<T>(y / round_to<T>(1.0 + round_to<T>(std::exp(-double(y)))));
}

// The statistics of `values` as a naive kernel in T would compute them: running sums in T.
struct NaiveStats {
  float mean, rstd;
};

template <class T, class Values>
NaiveStats naive_stats(const Values& values, std::int64_t count, float eps) {
  float sum = 0.0f;
  values([&](float x) { sum = round_to<T>(double(sum) + x); });
  const float mean = round_to<T>(double(sum) / double(count));
  float sq = 0.0f;
  values([&](float x) {
    const float d = round_to<T>(double(x) - mean);
    sq = round_to<T>(double(sq) + round_to<T>(double(d) * d));
  });
  const float var = round_to<T>(double(sq) / double(count));
  return {mean, round_to<T>(1.0 / double(round_to<T>(std::sqrt(double(round_to<T>(double(var) + eps))))))};
}

template <class T>
float naive_affine(float x, NaiveStats s, float gamma, float beta) {
  return round_to<T>(double(round_to<T>(double(round_to<T>(double(round_to<T>(double(x) - s.mean)) * s.rstd)) * gamma)) + beta);
}

// A naive fp16 sum that overflows (a mean of 100 over more than 655 values) makes the naive
// output NaN: its error is unbounded, which max_abs_diff would skip over, so it is made infinite.
// (A bf16 sum does not overflow; it stops growing once its spacing exceeds twice the terms.)
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

template <class T>
double affine_term(float x, ExactStats s, float gamma, float beta) {
  const double scale = std::fabs(double(gamma)) * s.rstd;
  const double half_subnormal_step = half_ulp<T>(Format<T>::kMinNormal);
  return half_subnormal_step +
         0x1p-20 * (std::fabs(double(x)) * scale + std::fabs(s.mean) * scale + std::fabs(double(beta)));
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
  Formats formats;
  const char* why;
};

template <class T>
void check_group_norm(ReferenceBackend& reference, const GroupNormCase& k) {
  const std::string what = std::string(k.why) + ", " + Format<T>::kName;
  CAPTURE(what);
  constexpr float kEps = 1e-5f;
  const std::int64_t n = k.batch * k.pixels * k.channels;
  const std::vector<float> x = normal<T>(std::size_t(n), 500 + std::uint64_t(n), k.mean, 1.0f);
  const std::vector<float> gamma = normal<T>(std::size_t(k.channels), 501, 1.0f, 0.5f);
  const std::vector<float> beta = normal<T>(std::size_t(k.channels), 502, 0.0f, 0.5f);
  const GroupNormGeometry geometry{.batch = k.batch, .pixels = k.pixels, .channels = k.channels, .groups = k.groups};

  Guarded<T> d_x(x, k.misalign), d_gamma(gamma), d_beta(beta);
  Guarded<T> d_out(k.placement == Placement::InPlace ? 0 : std::size_t(n), k.misalign);
  const Guarded<T>& target = k.placement == Placement::InPlace ? d_x : d_out;
  DeviceBuffer<float> workspace(std::size_t(cuda::group_norm_workspace_floats(geometry)));
  cuda::launch_group_norm<T>({.x = d_x.input("x"),
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
      const NaiveStats ns = naive_stats<T>(group_values, k.pixels * cg, kEps);
      const ExactStats es = exact_stats(group_values, k.pixels * cg, kEps);
      for (std::int64_t p = 0; p < k.pixels; ++p)
        for (std::int64_t c = g * cg; c < (g + 1) * cg; ++c) {
          const std::size_t i = index(p, c);
          const float y = naive_affine<T>(x[i], ns, gamma[std::size_t(c)], beta[std::size_t(c)]);
          naive[i] = unbounded_if_nan(k.act == Act::Silu ? naive_silu<T>(y) : y);
          term[i] = affine_term<T>(x[i], es, gamma[std::size_t(c)], beta[std::size_t(c)]);
        }
    }

  check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
  check_each_element<T>(got, ref, [&](std::size_t i) { return term[i]; }, what);
}

// The UNet's first GroupNorm + SiLU at 512x512 with guidance (2.6 M elements): 10 channels per
// group, so vectors of 8 straddle groups; 6 row lanes x 40 column lanes, 171 slices per element.
// fp16 only (the longest case of the file); bf16 takes the same vector path with SiLU and groups
// straddling vectors on smaller shapes below.
TEST_CASE("group_norm at the UNet's real size", "[cuda][norms]") {
  ReferenceBackend reference;
  check_group_norm<__half>(reference, {2, 64 * 64, 320, 32, Act::Silu, Placement::OutOfPlace, 0, 0.0f,
                                       Formats::Fp16Only, "UNet [2, 64x64, 320], SiLU: vector path, 171 slices"});
}

TEMPLATE_TEST_CASE("group_norm: statistics split over many blocks, with and without SiLU", "[cuda][norms]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  const GroupNormCase cases[] = {
      {1, 16 * 16, 320, 32, Act::Silu, Placement::InPlace, 0, 0.0f, Formats::Both,
       "[1, 16x16, 320] in place: vector path, 11 slices"},
      {1, 16 * 16, 320, 32, Act::None, Placement::OutOfPlace, 1, 0.0f, Formats::Both,
       "[1, 16x16, 320] shifted by one element: scalar path, two column passes (256 + 64), 64 slices"},
      // The VAE's channel count at its full-resolution levels: 4 channels per group, two groups
      // per vector; on a 32x32 image instead of 512x512 (16 column x 16 row lanes, 16 slices).
      {1, 32 * 32, 128, 32, Act::Silu, Placement::OutOfPlace, 0, 0.0f, Formats::Both,
       "VAE [1, 32x32, 128], SiLU: vector path"},
      // The UNet's 1280-channel level at its real 8x8 size: 160 column lanes, one row lane.
      {2, 8 * 8, 1280, 32, Act::Silu, Placement::InPlace, 0, 0.0f, Formats::Both,
       "UNet [2, 8x8, 1280] in place: vector path"},
      {2, 50, 36, 4, Act::None, Placement::OutOfPlace, 0, 0.0f, Formats::Both,
       "[2, 50, 36], 4 groups of 9: scalar path, 2 slices of 25 rows over 7 row lanes"},
      {1, 5, 16, 4, Act::Silu, Placement::OutOfPlace, 0, 0.0f, Formats::Both,
       "[1, 5, 16]: one slice, most row lanes idle"},
      // |mean| 100 against a standard deviation of 1: E[x^2] - E[x]^2 in fp32 would be off by
      // percents; 1000 rows of 64 channels in 8 slices of 125.
      {1, 1000, 64, 8, Act::None, Placement::OutOfPlace, 0, 100.0f, Formats::Both,
       "[1, 1000, 64], mean 100: vector path, 8 slices"},
  };
  ReferenceBackend reference;
  for (const GroupNormCase& k : cases)
    if (runs_in<T>(k.formats)) check_group_norm<T>(reference, k);
}

// ---- LayerNorm

struct LayerNormCase {
  std::int64_t rows, cols;
  std::int64_t x_row_stride;  // >= cols: x is a column slice of a wider buffer when larger
  Placement placement;        // in place: out is x, with x's row stride; else contiguous
  std::size_t misalign;
  float mean;
  Formats formats;
  const char* why;
};

TEMPLATE_TEST_CASE("layer_norm: one warp per row over contiguous and strided rows", "[cuda][norms]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  constexpr float kEps = 1e-5f;
  const LayerNormCase cases[] = {
      {2 * 77, 768, 768, Placement::OutOfPlace, 0, 0.0f, Formats::Both, "CLIP ViT-L [2, 77, 768]: vector path"},
      // The UNet's transformer norms at the 32x32 level of a 512x512 image, batch 2.
      {2 * 32 * 32, 640, 640, Placement::InPlace, 0, 0.0f, Formats::Fp16Only,
       "UNet [2, 32x32, 640] in place: vector path"},
      {2 * 16 * 16, 1280, 1280, Placement::OutOfPlace, 0, 0.0f, Formats::Fp16Only,
       "UNet [2, 16x16, 1280]: vector path"},
      {37, 100, 103, Placement::OutOfPlace, 0, 0.0f, Formats::Both,
       "37 rows of 100 in rows of 103: scalar path, strided x"},
      {20, 64, 72, Placement::InPlace, 0, 0.0f, Formats::Both,
       "20 rows of 64 in rows of 72, in place: vector path, strided"},
      {3, 32, 32, Placement::OutOfPlace, 0, 0.0f, Formats::Both, "tiny model [3, 32]: vector path, 4 busy lanes"},
      {9, 320, 320, Placement::OutOfPlace, 1, 0.0f, Formats::Both,
       "[9, 320] shifted by one element: scalar path, 10 values a lane"},
      {16, 1024, 1024, Placement::OutOfPlace, 0, 100.0f, Formats::Both, "[16, 1024], mean 100: vector path"},
  };
  ReferenceBackend reference;
  for (const LayerNormCase& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::int64_t x_count = (k.rows - 1) * k.x_row_stride + k.cols;
    const std::vector<float> x = normal<T>(std::size_t(x_count), 600 + std::uint64_t(x_count), k.mean, 1.0f);
    const std::vector<float> gamma = normal<T>(std::size_t(k.cols), 601, 1.0f, 0.5f);
    const std::vector<float> beta = normal<T>(std::size_t(k.cols), 602, 0.0f, 0.5f);
    const bool in_place = k.placement == Placement::InPlace;
    const RowsView x_rows{.rows = k.rows, .cols = k.cols, .row_stride = k.x_row_stride};
    const RowsView out_rows = in_place ? x_rows : RowsView{.rows = k.rows, .cols = k.cols, .row_stride = k.cols};

    Guarded<T> d_x(x, k.misalign), d_gamma(gamma), d_beta(beta);
    Guarded<T> d_out(in_place ? 0 : std::size_t(k.rows * k.cols), k.misalign);
    const Guarded<T>& target = in_place ? d_x : d_out;
    cuda::launch_layer_norm<T>({.x = d_x.input("x"),
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
      const NaiveStats ns = naive_stats<T>(row_values, k.cols, kEps);
      const ExactStats es = exact_stats(row_values, k.cols, kEps);
      for (std::int64_t c = 0; c < k.cols; ++c) {
        const float xv = x[std::size_t(r * k.x_row_stride + c)];
        naive[std::size_t(r * k.cols + c)] =
            unbounded_if_nan(naive_affine<T>(xv, ns, gamma[std::size_t(c)], beta[std::size_t(c)]));
        term[std::size_t(r * k.cols + c)] = affine_term<T>(xv, es, gamma[std::size_t(c)], beta[std::size_t(c)]);
      }
    }

    check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
    check_each_element<T>(got, ref, [&](std::size_t i) { return term[i]; }, what);
  }
}

}  // namespace sdgen::test::norms_test
