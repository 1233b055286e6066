// LtGemm (kernels/cuda/gemm.hpp) on a GPU: linear and conv2d through cuBLASLt against the
// reference backend, with the cases and tolerances of gemm_test_support.hpp (where they are
// derived). GPU only: it is compiled by nvcc into sdgen_cuda_kernels_gpu_tests, which exits 77
// ("skipped") without a GPU. Everything but the cuBLASLt call itself also runs in every CI build,
// in emulation (gemm_emulated_test.cpp); what only this file checks is cuBLASLt's side: the
// column-major mapping of our row-major operands, the epilogues (bias, tanh-GELU), C with its
// own stride, the alignments handed to the heuristic, and the algorithm cache.
//
// Both storage formats (T = __half, __nv_bfloat16): LtGemm made with LtGemmOptions::storage =
// kStorageDType<T> (cuBLASLt layouts CUDA_R_16F or CUDA_R_16BF, the bias of D's type), its
// operands and output in T, checked with T's bounds: half an ulp of T per rounding (2^-11 relative
// in fp16, 2^-8 in bf16), fp32's 2^-24 for the accumulation, 2^-11 for cuBLASLt's GELU tanh in
// either format (gemm_test_support.hpp). fp16 runs every case; bf16 runs every epilogue, pass,
// C stride, alignment and conv path (per-image bias, chunks, 1x1 direct, 1-wide im2col, 4-channel
// out) but skips some of the largest repeats of a path (Formats::Fp16Only).
//
// Sizes: the real SD 1.5 layer widths (320..3072 features, K up to 3072, CLIP's 77 tokens) on
// small latents (16x16 and 32x32), because the reference evaluates every product in double on one
// core; the whole file takes a few seconds of CPU there.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "kernels/cuda/gemm.hpp"
#include "tests/cuda_kernels/gemm_test_support.hpp"
#include "tests/emu/device_buffer.hpp"

namespace sdgen::test::gemm_gpu_test {

using namespace gemm_support;

template <class T>
cuda::LtGemmOptions lt_options() {
  return {.storage = cuda::kStorageDType<T>};
}

TEMPLATE_TEST_CASE("LtGemm linear on a GPU: SD 1.5 layer shapes, every epilogue and pass", "[cuda][gemm][gpu]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  cuda::LtGemm lt(lt_options<T>());
  const LinearCase cases[] = {
      // UNet attention at 32x32 latents, batch 2: to_q without bias.
      {2048, 320, 320, 0, 0, 0, kNone, Act::None, 0, "to_q [2048, 320] x [320, 320]^T"},
      // GEGLU's projection (bias, no activation) and the feed-forward out with the residual as C.
      // (fp16 only: the bias epilogue runs in bf16 in the cases below, at smaller sizes.)
      {512, 320, 2560, 0, 0, 0, kBias, Act::None, 0, "GEGLU proj [512, 320] x [2560, 320]^T + bias", Formats::Fp16Only},
      {512, 1280, 320, 0, 0, 0, kBias | kResidual, Act::None, 0, "ff out + bias + residual (C)"},
      // CLIP ViT-L's MLP: fc1 with quick-GELU (pass), fc2 with the residual as C.
      {77, 768, 3072, 0, 0, 0, kBias, Act::QuickGelu, 0, "CLIP fc1 + quick-GELU (pass)"},
      {77, 3072, 768, 0, 0, 0, kBias | kResidual, Act::None, 0, "CLIP fc2 + residual (C)", Formats::Fp16Only},
      // OpenCLIP's erf-GELU (pass), cuBLASLt's GELU epilogue, and GELU with a residual (pass adds it).
      // (erf-GELU's pass in bf16 at a smaller size: gemm_steps_test.cpp, in this binary too.)
      {77, 1024, 4096, 0, 0, 0, kBias, Act::Gelu, 0, "erf-GELU (pass)", Formats::Fp16Only},
      {96, 320, 1280, 0, 0, 0, kBias, Act::GeluTanh, 0, "tanh-GELU epilogue + bias"},
      {96, 320, 1280, 0, 0, 0, kNone, Act::GeluTanh, 0, "tanh-GELU epilogue, no bias"},
      {96, 1280, 320, 0, 0, 0, kBias | kResidual, Act::GeluTanh, 0, "tanh-GELU + residual (pass)"},
      // The time embedding MLP at batch 2: SiLU after linear_1 (pass).
      {2, 320, 1280, 0, 0, 0, kBias, Act::Silu, 0, "time embedding linear_1 + SiLU"},
      // Column slices: x rows of 640 (half a fused buffer), out rows of 960 (a third of a fused QKV
      // output), a residual in rows of 328.
      {256, 320, 320, 320, 640, 8, kBias | kResidual, Act::None, 0, "column slices, C with its own stride"},
      {256, 320, 320, 320, 640, 8, kBias | kResidual, Act::Silu, 0, "column slices, SiLU + residual (pass)"},
      // Odd sizes and every operand at 2-byte alignment: cuBLASLt's least-aligned algorithms.
      {37, 45, 13, 0, 0, 0, kBias, Act::None, 0, "[37, 45] x [13, 45]^T"},
      {64, 64, 40, 0, 0, 0, kBias | kResidual, Act::None, 1, "every operand misaligned by one half"},
  };
  for (const LinearCase& c : cases)
    check_linear_case<T>(c, [&](const cuda::GemmLinear& op) { lt.linear(op, nullptr); });
}

TEMPLATE_TEST_CASE("LtGemm linear: one heuristic query per key", "[cuda][gemm][gpu]", __half, __nv_bfloat16) {
  using T = TestType;
  cuda::LtGemm lt(lt_options<T>());
  const LinearCase c{128, 320, 640, 0, 0, 0, kBias, Act::None, 0, "[128, 320] x [640, 320]^T twice"};
  check_linear_case<T>(c, [&](const cuda::GemmLinear& op) { lt.linear(op, nullptr); });
  const std::size_t after_first = lt.cached_algorithms();
  CHECK(after_first == 1);
  check_linear_case<T>(c, [&](const cuda::GemmLinear& op) { lt.linear(op, nullptr); });
  CHECK(lt.cached_algorithms() == after_first);
}

TEMPLATE_TEST_CASE("LtGemm conv2d on a GPU: im2col + cuBLASLt, SD 1.5 conv shapes", "[cuda][gemm][gpu]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  constexpr std::size_t k64MiB = std::size_t(64) << 20;
  const ConvCase cases[] = {
      // The UNet's conv_in (Cin 4: im2col rows of 36 halves padded to 40) at 32x32, batch 2.
      {2, 32, 32, 4, 320, 3, 3, 1, 1, kBias, 1.0f, k64MiB, 0, "conv_in [2, 32, 32, 4] -> 320"},
      // A ResNet conv2 with the time embedding per image and the skip: one GEMM per image.
      // (fp16 only: bf16 takes the same path in the scaled case next.)
      {2, 16, 16, 320, 320, 3, 3, 1, 1, kBias | kAdd | kResidual, 1.0f, k64MiB, 0, "ResNet conv2 + add + skip",
       Formats::Fp16Only},
      // The same with an output scale (the scaled bias and alpha = beta = s).
      {2, 16, 16, 320, 320, 3, 3, 1, 1, kBias | kAdd | kResidual, 0.5f, k64MiB, 0, "ResNet conv2, scale 0.5"},
      // A VAE 128-channel conv with room for 300 im2col rows: 4 chunks of 256 rows over 1024.
      {1, 32, 32, 128, 128, 3, 3, 1, 1, kBias, 1.0f, 300 * 1152 * 2, 0, "VAE conv in chunks"},
      // Downsample2D (stride 2) and the UNet's conv_out (4 channels: D rows of 8 bytes).
      {2, 16, 16, 320, 320, 3, 3, 2, 1, kBias, 1.0f, k64MiB, 0, "Downsample2D stride 2", Formats::Fp16Only},
      {2, 16, 16, 320, 4, 3, 3, 1, 1, kBias, 1.0f, k64MiB, 0, "conv_out -> 4 channels"},
      // A 1x1 conv_shortcut (x read directly) with the skip and a scale, and the VAE's conv_in.
      {2, 16, 16, 640, 320, 1, 1, 1, 0, kBias | kResidual, 1.0f / 1.414f, k64MiB, 0, "1x1 shortcut, scaled"},
      // (fp16 only: the 1-wide im2col runs in bf16 in conv_in above.)
      {1, 32, 32, 3, 128, 3, 3, 1, 1, kBias, 1.0f, k64MiB, 0, "VAE conv_in, Cin 3", Formats::Fp16Only},
      // Every tensor one half off alignment.
      {2, 8, 8, 64, 64, 3, 3, 1, 1, kBias | kAdd | kResidual, 1.0f, k64MiB, 1, "misaligned by one half"},
  };
  cuda::LtGemm lt(lt_options<T>());
  for (const ConvCase& c : cases) {
    std::optional<DeviceBuffer<std::uint8_t>> scratch;  // alive until the case has read the output back
    check_conv_case<T>(c, [&](const cuda::GemmConv2d& op, std::size_t scratch_bytes) {
      scratch.emplace(scratch_bytes > 0 ? scratch_bytes : 1);
      lt.conv2d(op, {.data = scratch_bytes > 0 ? scratch->view("scratch").raw() : nullptr, .bytes = scratch_bytes},
                nullptr);
    });
  }
}

}  // namespace sdgen::test::gemm_gpu_test
