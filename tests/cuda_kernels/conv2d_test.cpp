// The implicit-GEMM conv2d kernel (kernels/cuda/conv2d_implicit.cuh) against the reference
// backend's conv2d (tests/support/reference_backend.hpp: the sum in double, rounded once to fp32),
// on the same inputs rounded to the kernel's 16-bit storage format T, in both formats the kernel is
// instantiated for: fp16 (__half) and bf16 (__nv_bfloat16). Below, u = 2^-(mantissa bits + 1) is
// half an ulp of T, relative: 2^-11 for fp16 (10 mantissa bits), 2^-8 for bf16 (7).
//
// Every case draws x ~ N(0, 1), w ~ N(0, 1/K) (K = KH*KW*Cin, so outputs are of order 1 as in a
// network), bias and add_per_channel ~ N(0, 0.5^2), residual ~ N(0, 1), all rounded to T, and
// checks:
//  1. the project's storage rule (storage_rule.hpp): max|kernel - ref| <= 2 max|naive T - ref| + one
//     ulp of T of the largest |ref| (2u relative: 2^-10 in fp16, 2^-7 in bf16; taken at T's
//     smallest normal, 2^-14 or 2^-126, if |ref| is below it). The naive conv accumulates every
//     product, rounded to T, into a T sum in the obvious order (kh, kw, cin), then adds bias, add
//     and residual and scales, rounding after each step. The absolute term is the kernel's final
//     rounding, which twice the naive error need not cover.
//  2. per element, the kernel's own precision, since the naive error (1e-2 here in fp16, about 8
//     times that in bf16) would hide small defects: the products of T values are exact in fp32
//     (11 x 11 or 8 x 8 significant bits) and the kernel rounds its fp32 result to T once, so
//       |kernel - ref| <= (u + 2^-24) |ref| + |scale| (n + 4) 2^-22 S + u N,
//     S = sum over taps |x w| + |bias| + |add| + |residual| (computed here in double). u |ref| is
//     the output's rounding (half an ulp: 2^-11 |ref| in fp16, 2^-8 |ref| in bf16) and 2^-24 |ref|
//     the reference's own. u N, N = T's smallest normal, is that rounding's absolute floor below
//     T's normal range (half the subnormal spacing: 2^-25 in fp16, 2^-134 in bf16). The fp32 part
//     does not depend on T: the accumulator goes through n = 2 * (K-slices) mma steps
//     (each adds 16 exact products to it; a GPU tensor core may truncate the aligned sum, so each
//     step is allowed 2 fp32 ulps, 2^-22, of the magnitudes involved, which S bounds), then up to
//     `splits` fp32 additions of split partials and three epilogue additions and a multiply
//     (n + 4 counts them, splits <= n). Here it is a few 1e-4 against outputs of order 1: one
//     wrong tap (|x w| ~ 0.03) or an output off by one ulp of T fails (in bf16 the rounding term
//     u |ref| is 8 times fp16's, and one bf16 ulp is still twice it). The largest error / bound
//     is reported (-s): 0.7 to 0.96 in emulation in fp16, up to 0.98 in bf16, set by the output's
//     own rounding (half an ulp is the full u |ref| just above a power of two). Tried by editing
//     this test: a bf16 kernel given output_scale 2^-10 (0.1%) too large fails every bf16 case.
// The output lies between guard bands of 0xffff (a NaN in both formats) that must survive; every
// input view lies inside such guards too, and the launcher gets GlobalPtr views of exactly the
// tensors, so in emulation a read outside any tensor (a tap in the padding, a pixel past M, a
// channel past Cin or Cout) stops the launch, and on a GPU it would turn an output into NaN.
// NaN/Inf in the output fails.
//
// Sizes. Emulation runs every thread as a fiber and every mma as a warp collective, so shapes are
// small; what each case covers is said beside it. Most cases force a plan (tile and split count)
// so that each of the three kernel instantiations and the split-K reduction runs; the others use
// the launcher's own plan. The plan chosen for SD's real shapes is checked on the host (no kernel).
// fp16 runs every case, bf16 every case but one (ConvCase::formats): every tile shape, split-K over 2
// to 5 CTAs, every fusion alone and together, output_scale, narrow Cout 3, 4 and 12, stride 2, 1x1
// and 2x3 kernels, several CTAs; all but the 320-channel conv, which alone takes over half of the
// fp16 time (it uses the launcher's plan, covered for bf16 by the smaller cases).
//
// This file is compiled twice (see CMakeLists.txt): here the kernel runs on the emulator, and in
// sdgen_cuda_kernels_gpu_tests on a GPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/conv2d_implicit.cuh"
#include "kernels/op_checks.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/emu/device_buffer.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::conv2d_test {

using cuda::ConvTileShape;
using half_tensors::f32_tensor;
using half_tensors::Guarded;

// Which of the fused terms a case adds.
struct Fusion {
  bool bias = false;
  bool add_per_channel = false;
  bool residual = false;
};

constexpr Fusion kNoFusion{};
constexpr Fusion kAllFusions{.bias = true, .add_per_channel = true, .residual = true};

struct ForcedPlan {
  ConvTileShape tile;
  int splits;
};

struct ConvCase {
  const char* why;
  std::int64_t batch, h, w, cin, cout;
  std::int64_t kh, kw;
  int stride, padding;
  Fusion fusion;
  float output_scale;
  std::optional<ForcedPlan> plan;  // the launcher's own when absent
  Formats formats = Formats::Both;  // fp16 runs every case
};

const char* tile_name(ConvTileShape s) {
  return s == ConvTileShape::M128N128 ? "128x128" : s == ConvTileShape::M128N64 ? "128x64" : "64x64";
}

template <class T>
Tensor device_tensor(const Guarded<T>& buffer, const Shape& shape) {
  return Tensor::contiguous(buffer.view("").raw(), cuda::kStorageDType<T>, shape, Device{DeviceKind::Cuda, 0});
}

template <class T>
void check_conv(const ConvCase& k) {
  if (!runs_in<T>(k.formats)) return;
  const std::int64_t ho = (k.h + 2 * k.padding - k.kh) / k.stride + 1;
  const std::int64_t wo = (k.w + 2 * k.padding - k.kw) / k.stride + 1;
  const std::int64_t taps_k = k.kh * k.kw * k.cin;
  const Shape x_shape{k.batch, k.h, k.w, k.cin}, w_shape{k.cout, k.kh, k.kw, k.cin};
  const Shape out_shape{k.batch, ho, wo, k.cout};
  const std::uint64_t seed = std::uint64_t(k.batch * 1000003 + k.h * 10007 + k.cin * 101 + k.cout + k.kh);
  const std::vector<float> x = randn<T>(std::size_t(x_shape.numel()), seed);
  const std::vector<float> w =
      randn<T>(std::size_t(w_shape.numel()), seed + 1, float(1.0 / std::sqrt(double(taps_k))));
  const std::vector<float> bias = randn<T>(std::size_t(k.cout), seed + 2, 0.5f);
  const std::vector<float> add = randn<T>(std::size_t(k.batch * k.cout), seed + 3, 0.5f);
  const std::vector<float> residual = randn<T>(std::size_t(out_shape.numel()), seed + 4);

  // ---- the kernel, with the geometry the backend's check gives for these tensors.
  const Guarded<T> d_x(x), d_w(w), d_bias(bias), d_add(add), d_residual(residual);
  const Guarded<T> d_out(std::size_t(out_shape.numel()));
  const Tensor t_bias = device_tensor(d_bias, Shape{k.cout});
  const Tensor t_add = device_tensor(d_add, Shape{k.batch, k.cout});
  const Tensor t_residual = device_tensor(d_residual, out_shape);
  const Conv2dArgs args{.stride = k.stride,
                        .padding = k.padding,
                        .bias = k.fusion.bias ? &t_bias : nullptr,
                        .add_per_channel = k.fusion.add_per_channel ? &t_add : nullptr,
                        .residual = k.fusion.residual ? &t_residual : nullptr,
                        .output_scale = k.output_scale};
  constexpr DType kStorage = cuda::kStorageDType<T>;
  const OpSupport cuda_support{
      .device = DeviceKind::Cuda, .activations = kStorage, .params = kStorage, .weights = {kStorage}};
  const Conv2dGeometry g = check_conv2d(cuda_support, device_tensor(d_x, x_shape), device_tensor(d_w, w_shape),
                                        device_tensor(d_out, out_shape), args);
  const cuda::Conv2dImplicitPlan plan =
      k.plan ? cuda::make_conv2d_implicit_plan(g, k.plan->tile, k.plan->splits) : cuda::plan_conv2d_implicit(g, 132);
  INFO(k.why << " (" << Format<T>::kName << ", tile " << tile_name(plan.tile) << ", " << plan.ctas() << " CTAs, "
             << plan.splits << " splits of " << plan.slices << " K-slices)");
  std::optional<DeviceBuffer<float>> workspace;
  if (plan.workspace_floats > 0) workspace.emplace(std::size_t(plan.workspace_floats));
  cuda::Conv2dImplicitLaunch<T> launch{
      .x = d_x.input("x"),
      .w = d_w.input("w"),
      .out = d_out.view("out"),
      .bias = k.fusion.bias ? d_bias.input("bias") : cuda::GlobalPtr<const T>{},
      .add_per_channel = k.fusion.add_per_channel ? d_add.input("add_per_channel") : cuda::GlobalPtr<const T>{},
      .residual = k.fusion.residual ? d_residual.input("residual") : cuda::GlobalPtr<const T>{},
      .output_scale = k.output_scale,
      .workspace = workspace ? workspace->view("workspace") : cuda::GlobalPtr<float>{},
      .geometry = g};
  REQUIRE(cuda::conv2d_implicit_supported(launch));
  cuda::launch_conv2d_implicit(launch, plan);
  const std::vector<float> got = d_out.values();  // checks the guard bands

  // ---- the fp32 reference.
  std::vector<float> x32 = x, w32 = w, bias32 = bias, add32 = add, residual32 = residual;
  std::vector<float> ref(got.size());
  const Tensor h_bias = f32_tensor(bias32, Shape{k.cout});
  const Tensor h_add = f32_tensor(add32, Shape{k.batch, k.cout});
  const Tensor h_residual = f32_tensor(residual32, out_shape);
  ReferenceBackend reference;
  reference.conv2d(f32_tensor(x32, x_shape), f32_tensor(w32, w_shape), f32_tensor(ref, out_shape),
                   {.stride = k.stride,
                    .padding = k.padding,
                    .bias = k.fusion.bias ? &h_bias : nullptr,
                    .add_per_channel = k.fusion.add_per_channel ? &h_add : nullptr,
                    .residual = k.fusion.residual ? &h_residual : nullptr,
                    .output_scale = k.output_scale});

  // ---- the naive conv in T and the magnitudes S of the per-element bound.
  std::vector<float> naive(got.size());
  std::vector<double> magnitude(got.size());
  for (std::int64_t b = 0; b < k.batch; ++b)
    for (std::int64_t oy = 0; oy < ho; ++oy)
      for (std::int64_t ox = 0; ox < wo; ++ox)
        for (std::int64_t co = 0; co < k.cout; ++co) {
          float acc = 0.0f;
          double s = 0.0;
          for (std::int64_t ky = 0; ky < k.kh; ++ky) {
            const std::int64_t iy = oy * k.stride - k.padding + ky;
            if (iy < 0 || iy >= k.h) continue;
            for (std::int64_t kx = 0; kx < k.kw; ++kx) {
              const std::int64_t ix = ox * k.stride - k.padding + kx;
              if (ix < 0 || ix >= k.w) continue;
              for (std::int64_t ci = 0; ci < k.cin; ++ci) {
                const float xv = x[std::size_t(((b * k.h + iy) * k.w + ix) * k.cin + ci)];
                const float wv = w[std::size_t(((co * k.kh + ky) * k.kw + kx) * k.cin + ci)];
                acc = round_to<T>(acc + round_to<T>(xv * wv));
                s += std::fabs(double(xv) * double(wv));
              }
            }
          }
          const std::size_t i = std::size_t(((b * ho + oy) * wo + ox) * k.cout + co);
          if (k.fusion.bias) {
            acc = round_to<T>(acc + bias[std::size_t(co)]);
            s += std::fabs(double(bias[std::size_t(co)]));
          }
          if (k.fusion.add_per_channel) {
            acc = round_to<T>(acc + add[std::size_t(b * k.cout + co)]);
            s += std::fabs(double(add[std::size_t(b * k.cout + co)]));
          }
          if (k.fusion.residual) {
            acc = round_to<T>(acc + residual[i]);
            s += std::fabs(double(residual[i]));
          }
          naive[i] = round_to<T>(acc * k.output_scale);
          magnitude[i] = s;
        }

  // ---- the two bounds of the top of this file (NaN/Inf fail the first).
  const double max_ref = half_tensors::max_abs(ref);
  constexpr double kMinNormal = Format<T>::kMinNormal;
  check_storage_rule<T>(got, ref, naive, 2.0 * half_ulp<T>(std::max(max_ref, kMinNormal)), k.why);
  const double steps = 2.0 * double(plan.slices) + 4.0;
  std::size_t over = 0, first = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = half_ulp<T>(std::fabs(double(ref[i]))) + 0x1p-24 * std::fabs(double(ref[i])) +
                         std::fabs(double(k.output_scale)) * steps * 0x1p-22 * magnitude[i] + half_ulp<T>(kMinNormal);
    const double ratio = std::fabs(double(got[i]) - double(ref[i])) / bound;
    if (!(ratio <= 1.0) && over++ == 0) first = i;
    worst = std::max(worst, ratio);
  }
  INFO("elements over the precision bound: " << over << "; largest error / bound " << worst);
  INFO("the first one over: " << (over > 0
                                      ? "element " + std::to_string(first) + ", kernel " + std::to_string(got[first]) +
                                            ", reference " + std::to_string(ref[first])
                                      : std::string("none")));
  CHECK(over == 0);
}

// 3x3, stride 1, padding 1 on [2, 6, 6, 72] -> 40 channels, everything fused, scaled: Cin = 72 is
// two full 32-channel slices and one with 8 channels per tap (27 K-slices: the 4-stage ring wraps
// six times); M = 72 pixels and 40 channels leave every tile partial in both directions. Each
// kernel instantiation runs it (128x128: one CTA; 128x64: one; 64x64: two along M), and split-K
// over 2 and 5 CTAs per tile (27 slices as 13 + 14 and 5 + 5 + 5 + 6 + 6).
TEMPLATE_TEST_CASE("conv2d implicit GEMM: 3x3 over every tile shape and split-K", "[cuda][conv]", __half,
                   __nv_bfloat16) {
  for (const ForcedPlan plan : {ForcedPlan{ConvTileShape::M128N128, 1}, ForcedPlan{ConvTileShape::M128N64, 1},
                                ForcedPlan{ConvTileShape::M64N64, 1}, ForcedPlan{ConvTileShape::M64N64, 2},
                                ForcedPlan{ConvTileShape::M128N128, 5}}) {
    check_conv<TestType>(
        {"[2, 6, 6, 72] -> 40, 3x3 s1 p1, all fused, scale 0.5", 2, 6, 6, 72, 40, 3, 3, 1, 1, kAllFusions, 0.5f, plan});
  }
}

// Stride 2 with odd sizes: 7x9 -> 4x5, so the last output row and column read the bottom and
// right padding; Cin = 8 is one 16-byte chunk per tap (3/4 of every slice zero-filled); batch 1.
// The launcher's plan, then split-K over 3 (9 slices).
TEMPLATE_TEST_CASE("conv2d implicit GEMM: 3x3 stride 2 with odd sizes, Cin = 8", "[cuda][conv]", __half,
                   __nv_bfloat16) {
  check_conv<TestType>(
      {"[1, 7, 9, 8] -> 16, 3x3 s2 p1", 1, 7, 9, 8, 16, 3, 3, 2, 1, Fusion{.bias = true}, 1.0f, std::nullopt});
  check_conv<TestType>({"[1, 7, 9, 8] -> 16, 3x3 s2 p1, split 3", 1, 7, 9, 8, 16, 3, 3, 2, 1, kAllFusions, 1.0f,
                        ForcedPlan{ConvTileShape::M64N64, 3}});
  // The same window on an even image (8x8 -> 4x4): the bottom and right padding is never read.
  check_conv<TestType>({"[2, 8, 8, 16] -> 24, 3x3 s2 p1", 2, 8, 8, 16, 24, 3, 3, 2, 1, kNoFusion, 1.0f,
                        ForcedPlan{ConvTileShape::M128N64, 1}});
}

// The ResNet shortcut: 1x1, no padding, with the residual (the UNet's conv_shortcut adds nothing,
// but the path must not care), 2 K-slices of 32 channels; and a 1x1 with Cin = 200, whose last
// slice holds 8 channels.
TEMPLATE_TEST_CASE("conv2d implicit GEMM: 1x1 shortcuts", "[cuda][conv]", __half, __nv_bfloat16) {
  check_conv<TestType>(
      {"[2, 5, 5, 64] -> 24, 1x1", 2, 5, 5, 64, 24, 1, 1, 1, 0, Fusion{.bias = true}, 1.0f, std::nullopt});
  check_conv<TestType>({"[1, 4, 6, 200] -> 48, 1x1, residual", 1, 4, 6, 200, 48, 1, 1, 1, 0,
                        Fusion{.bias = true, .residual = true}, 1.0f, ForcedPlan{ConvTileShape::M64N64, 1}});
}

// Each fused term alone, all of them, and none; with output_scale 1 and 1/sqrt(2) (the UNet's
// output_scale_factor is 1; diffusers' resnets allow others, and the scale multiplies the whole
// sum). [2, 5, 4, 16] -> 16: the add_per_channel row must follow the image (pixels 0-19 are image
// 0, 20-39 image 1, inside one 64-row tile).
TEMPLATE_TEST_CASE("conv2d implicit GEMM: each fusion alone and together, output_scale", "[cuda][conv]", __half,
                   __nv_bfloat16) {
  const struct {
    Fusion fusion;
    const char* name;
  } fusions[] = {{kNoFusion, "none"},
                 {Fusion{.bias = true}, "bias"},
                 {Fusion{.add_per_channel = true}, "add_per_channel"},
                 {Fusion{.residual = true}, "residual"},
                 {kAllFusions, "all"}};
  for (const auto& f : fusions)
    for (const float scale : {1.0f, 0.70710678f}) {
      const std::string why = std::string("[2, 5, 4, 16] -> 16, 3x3, ") + f.name + ", scale " + std::to_string(scale);
      check_conv<TestType>(
          {why.c_str(), 2, 5, 4, 16, 16, 3, 3, 1, 1, f.fusion, scale, ForcedPlan{ConvTileShape::M64N64, 1}});
    }
}

// Several CTAs in both directions and a ring that wraps: [2, 10, 10, 64] -> 136 is M = 200 pixels
// (two 128-row tiles, the second with 72) by 136 channels (two 128-channel tiles, the second with
// 8), 18 K-slices; with 128x128 tiles (4 CTAs of 8 warps), and with 64x64 tiles split over 4
// (4 x 3 tiles x 4 splits = 48 CTAs, splits of 4 and 5 slices).
TEMPLATE_TEST_CASE("conv2d implicit GEMM: several CTAs and K-slices", "[cuda][conv]", __half, __nv_bfloat16) {
  check_conv<TestType>({"[2, 10, 10, 64] -> 136, 3x3, all fused", 2, 10, 10, 64, 136, 3, 3, 1, 1, kAllFusions, 1.0f,
                        ForcedPlan{ConvTileShape::M128N128, 1}});
  check_conv<TestType>({"[2, 10, 10, 64] -> 136, 3x3, all fused, split 4", 2, 10, 10, 64, 136, 3, 3, 1, 1, kAllFusions,
                        1.0f, ForcedPlan{ConvTileShape::M64N64, 4}});
}

// SD's channel counts on a small image, with the launcher's plan: the 320-channel level's 3x3 on
// [2, 8, 8, 320] (90 K-slices of 10 channel blocks per tap), with the ResNet's bias, time
// embedding and skip; and a kernel that is not square (2x3, stride 2), which the path takes too.
// bf16: the 2x3 only (the 320-channel conv is too slow to run twice).
TEMPLATE_TEST_CASE("conv2d implicit GEMM: SD's 320 channels, and a 2x3 kernel", "[cuda][conv]", __half, __nv_bfloat16) {
  check_conv<TestType>({"[2, 8, 8, 320] -> 320, 3x3, all fused", 2, 8, 8, 320, 320, 3, 3, 1, 1, kAllFusions, 1.0f,
                        std::nullopt, Formats::Fp16Only});
  check_conv<TestType>(
      {"[1, 6, 7, 24] -> 32, 2x3 s2 p1", 1, 6, 7, 24, 32, 2, 3, 2, 1, Fusion{.bias = true}, 1.0f, std::nullopt});
}

// Outputs whose channel count is not a multiple of 8 (SD's conv_out: the UNet's 4, the VAE's 3) are
// stored channel by channel and never split. Cout = 3 and 4 on every tile shape (one vector of 8
// cut at Cout), and 12 (a whole vector, then one cut at 12) with the launcher's plan; all fused,
// so each term is read at the narrow stride too. A forced split of such a conv is refused.
TEMPLATE_TEST_CASE("conv2d implicit GEMM: narrow outputs (Cout 3, 4, 12)", "[cuda][conv]", __half, __nv_bfloat16) {
  for (const ForcedPlan plan : {ForcedPlan{ConvTileShape::M128N128, 1}, ForcedPlan{ConvTileShape::M128N64, 1},
                                ForcedPlan{ConvTileShape::M64N64, 1}}) {
    check_conv<TestType>({"[2, 5, 6, 32] -> 3, 3x3, all fused", 2, 5, 6, 32, 3, 3, 3, 1, 1, kAllFusions, 1.0f, plan});
    check_conv<TestType>(
        {"[1, 7, 5, 40] -> 4, 3x3, bias", 1, 7, 5, 40, 4, 3, 3, 1, 1, Fusion{.bias = true}, 0.5f, plan});
  }
  check_conv<TestType>(
      {"[2, 6, 6, 64] -> 12, 3x3, all fused", 2, 6, 6, 64, 12, 3, 3, 1, 1, kAllFusions, 1.0f, std::nullopt});

  const Conv2dGeometry g{.batch = 2, .h = 64, .w = 64, .cin = 320, .cout = 4, .kh = 3, .kw = 3,
                         .ho = 64, .wo = 64, .stride = 1, .padding = 1};  // the UNet's conv_out at 512x512
  CHECK(cuda::plan_conv2d_implicit(g, 132).splits == 1);
  cuda::Conv2dImplicitLaunch<TestType> l;
  l.geometry = g;
  CHECK_THROWS_WITH(cuda::launch_conv2d_implicit(l, cuda::make_conv2d_implicit_plan(g, ConvTileShape::M64N64, 2)),
                    Catch::Contains("4 output channels"));
}

// Which convolutions the path takes: Cin a multiple of 8, any Cout, and 16-byte-aligned tensors.
TEMPLATE_TEST_CASE("conv2d implicit GEMM: supported shapes and alignments", "[cuda][conv]", __half, __nv_bfloat16) {
  auto launch_for = [](std::int64_t cin, std::int64_t cout) {
    cuda::Conv2dImplicitLaunch<TestType> l;
    l.geometry = {.batch = 1,
                  .h = 8,
                  .w = 8,
                  .cin = cin,
                  .cout = cout,
                  .kh = 3,
                  .kw = 3,
                  .ho = 8,
                  .wo = 8,
                  .stride = 1,
                  .padding = 1};
    return l;
  };
  CHECK(cuda::conv2d_implicit_supported(launch_for(320, 320)));
  CHECK_FALSE(cuda::conv2d_implicit_supported(launch_for(4, 320)));  // SD's conv_in
  CHECK(cuda::conv2d_implicit_supported(launch_for(320, 4)));  // the UNet's conv_out
  CHECK(cuda::conv2d_implicit_supported(launch_for(128, 3)));  // the VAE's
  CHECK_FALSE(cuda::conv2d_implicit_supported(launch_for(12, 320)));
  const DeviceBuffer<TestType> buffer(64);
  for (const int offset : {0, 1, 4}) {
    cuda::Conv2dImplicitLaunch<TestType> l = launch_for(320, 320);
    l.residual = buffer.view("residual").slice(offset, 8);
    CHECK(cuda::conv2d_implicit_supported(l) == (offset == 0));
    l = launch_for(320, 320);
    l.x = buffer.view("x").slice(offset, 8);
    CHECK(cuda::conv2d_implicit_supported(l) == (offset == 0));
  }
}

// The launcher's plans for SD 1.5's convolutions at 512x512 (latents 64x64), batch 1 and 2 (with
// guidance), on an H100's 132 SMs. What the plan must achieve, by the arithmetic at the top of the
// kernel: the 16x16 and 8x8 levels (few output tiles, K up to 23040) run split-K on at least 3/4
// of the SMs; the 64x64 level has enough tiles and never splits; the workspace stays within
// 16 MB; every split has at least 8 K-slices. (The plans themselves are printed with -s.)
TEST_CASE("conv2d implicit GEMM: the launcher's plans for SD's shapes", "[cuda][conv]") {
  struct SdConv {
    std::int64_t side, cin, cout, k;
    int stride;
  };
  const SdConv convs[] = {{64, 320, 320, 3, 1},  {64, 320, 320, 3, 2},   {32, 320, 640, 3, 1},   {32, 640, 640, 3, 1},
                          {32, 320, 640, 1, 1},  {32, 640, 640, 3, 2},   {16, 640, 1280, 3, 1},  {16, 1280, 1280, 3, 1},
                          {16, 640, 1280, 1, 1}, {16, 1280, 1280, 3, 2}, {8, 1280, 1280, 3, 1},  {8, 2560, 1280, 3, 1},
                          {8, 2560, 1280, 1, 1}, {16, 2560, 1280, 3, 1}, {16, 1920, 1280, 3, 1}, {32, 1280, 1280, 3, 1},
                          {32, 1920, 640, 3, 1}, {32, 960, 640, 3, 1},   {64, 640, 640, 3, 1},   {64, 960, 320, 3, 1},
                          {64, 640, 320, 3, 1},  {64, 960, 320, 1, 1}};
  for (const std::int64_t batch : {1, 2})
    for (const SdConv& c : convs) {
      const std::int64_t pad = c.k / 2;
      const std::int64_t out_side = (c.side + 2 * pad - c.k) / c.stride + 1;
      const Conv2dGeometry g{.batch = batch,
                             .h = c.side,
                             .w = c.side,
                             .cin = c.cin,
                             .cout = c.cout,
                             .kh = c.k,
                             .kw = c.k,
                             .ho = out_side,
                             .wo = out_side,
                             .stride = c.stride,
                             .padding = int(pad)};
      const cuda::Conv2dImplicitPlan plan = cuda::plan_conv2d_implicit(g, 132);
      const std::string what = "[" + std::to_string(batch) + ", " + std::to_string(c.side) + ", " +
                               std::to_string(c.side) + ", " + std::to_string(c.cin) + "] -> " +
                               std::to_string(c.cout) + " " + std::to_string(c.k) + "x" + std::to_string(c.k) + " s" +
                               std::to_string(c.stride);
      INFO(what << ": tile " << tile_name(plan.tile) << ", " << plan.splits << " splits, " << plan.ctas() << " CTAs");
      CHECK(plan.workspace_floats <= std::int64_t(4) << 20);
      CHECK(plan.slices / plan.splits >= (plan.splits > 1 ? 8 : 1));
      CHECK(plan.workspace_floats == (plan.splits > 1 ? plan.splits * batch * out_side * out_side * c.cout : 0));
      if (out_side <= 16 && c.k == 3) CHECK(plan.ctas() >= 99);
      if (out_side == 64 && batch == 2) CHECK(plan.splits == 1);
      CHECK(cuda::conv2d_implicit_workspace_floats(g) == plan.workspace_floats);
    }
}

}  // namespace sdgen::test::conv2d_test
