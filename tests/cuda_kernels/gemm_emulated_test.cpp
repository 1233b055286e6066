// Whole linear and conv2d ops through the GEMM layer on the CPU: plan_linear / ConvPlan
// (gemm_plan.hpp) and run_linear / run_conv2d (gemm_steps.cuh), with the real im2col, conv-bias
// and rows-epilogue kernels running in emulation and, in cuBLASLt's place, host_gemm below: a plain
// loop with cuBLASLt's contract for a GemmCall. So everything of kernels/cuda/gemm.cu but the
// cublasLtMatmul call itself (descriptors, algorithm) is checked in every CI run: epilogue choice,
// residual placement, alpha/beta, per-image bias, chunk offsets and the launches between GEMMs.
// gemm_gpu_test.cu runs cases of the same kind through LtGemm on a GPU.
//
// Both storage formats (T = __half, __nv_bfloat16): the kernels instantiated on T, host_gemm told
// the same format (kStorageDType<T>), as LtGemm tells cuBLASLt. fp16 runs every case; bf16 runs
// every combination of activation and operands and the cases that cover each other path once
// (strides, odd sizes, misalignment, one row; direct 1x1, 1-wide im2col, chunks within and across
// images, per-image bias, scale), not every size: emulation is slow, and CI runs it under ASan too.
//
// Tolerances: those of gemm_test_support.hpp, against the reference backend and a naive
// computation in T: half an ulp of T (2^-11 relative in fp16, 2^-8 in bf16) for each rounding to
// T, fp32's 2^-24 for the accumulation. host_gemm (kernels/cuda/emu/emulated_gemm.hpp, the
// emulated backend's GEMM too) accumulates in fp32 and rounds once to T, as cuBLASLt does.
// Emulation only (compiled into sdgen_cuda_kernels_tests, not cuda_kernels_gpu.cu): host_gemm
// reads the device pointers as host memory.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/emu/emulated_gemm.hpp"
#include "kernels/cuda/gemm_plan.hpp"
#include "kernels/cuda/gemm_steps.cuh"
#include "lib/core/half.hpp"
#include "tests/cuda_kernels/gemm_test_support.hpp"
#include "tests/emu/device_buffer.hpp"

namespace sdgen::test::gemm_emulated_test {

using namespace gemm_support;

// cuBLASLt's part in T: the GEMM reads and writes T, as LtGemm's layouts (CUDA_R_16F / _16BF) say.
template <class T>
void emulated_gemm(const cuda::GemmCall& call) {
  cuda::emu::host_gemm(call, cuda::kStorageDType<T>);
}

template <class T>
void run_emulated_linear(const cuda::GemmLinear& op) {
  cuda::run_linear<T>(cuda::plan_linear(op), nullptr, emulated_gemm<T>);
}

TEMPLATE_TEST_CASE("linear through the plan: every activation, with and without bias and residual", "[cuda][gemm]",
                   __half, __nv_bfloat16) {
  using T = TestType;
  // 9 rows of K = 24 into N = 16: the pass after the GEMM takes its 8-wide path (16 columns,
  // aligned rows); every activation with each combination of bias and residual, which between
  // them take every epilogue (none, bias, GELU, GELU + bias), the residual as C (no activation),
  // and the pass with and without the residual.
  const unsigned combinations[] = {kNone, kBias, kResidual, kBias | kResidual};
  for (Act act : {Act::None, Act::Silu, Act::Gelu, Act::GeluTanh, Act::QuickGelu})
    for (unsigned operands : combinations) {
      INFO("act " << static_cast<int>(act) << ", operands " << operands);
      check_linear_case<T>({9, 24, 16, 0, 0, 0, operands, act, 0, "[9, 24] x [16, 24]^T"}, run_emulated_linear<T>);
    }
}

TEMPLATE_TEST_CASE("linear through the plan: strided rows, odd sizes, misaligned views", "[cuda][gemm]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  const LinearCase cases[] = {
      // CLIP's 77 tokens in a [77, 64] x [40, 64]^T with quick-GELU (its MLP activation), bias and
      // residual: the pass runs 8-wide over 40 columns.
      // fp16 only: its path (8-wide pass, activation then residual) is the first test's in bf16.
      {77, 64, 40, 0, 0, 0, kBias | kResidual, Act::QuickGelu, 0, "77 tokens, quick-GELU + residual",
       Formats::Fp16Only},
      // x, out and the residual as column slices of wider buffers (the fused QKV projection's
      // layout): strides 72, 24 and 32 keep the 8-wide pass; the padding columns must be untouched.
      {10, 64, 16, 8, 8, 16, kBias | kResidual, Act::Silu, 0, "column slices, 8-wide pass"},
      // Strides 67 and 21 (not multiples of 8): the pass goes 1-wide.
      {10, 64, 16, 3, 5, 0, kResidual, Act::Gelu, 0, "strides not multiples of 8, 1-wide pass"},
      // N = 13: rows of 13 columns, 1-wide pass; and K = 5.
      {6, 5, 13, 0, 0, 0, kBias, Act::Silu, 0, "N = 13, K = 5"},
      // Every tensor one element past a 16-byte boundary: the 1-wide pass, alignments of 2 bytes.
      {8, 32, 16, 0, 0, 0, kBias | kResidual, Act::GeluTanh, 1, "misaligned by one half"},
      // A single row (the time embedding's [B, 320] -> 1280 at batch 1).
      {1, 320, 128, 0, 0, 0, kBias, Act::Silu, 0, "one row"},
  };
  for (const LinearCase& c : cases) check_linear_case<T>(c, run_emulated_linear<T>);
}

struct EmulatedConvCase {
  ConvCase c;
  std::int64_t gemms;  // what the case is for: the GEMMs its plan must make
};

TEMPLATE_TEST_CASE("conv2d through the plan: im2col, chunks, per-image bias, scale, residual", "[cuda][gemm]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  constexpr std::size_t kRoomy = std::size_t(1) << 20;
  // 3x3 over 16 channels: im2col rows of 144 elements (288 bytes in either format); with the
  // scaled bias's 256 bytes, 10912 bytes of scratch hold 37 rows, so a 10x10 image (100 rows) goes
  // in 3 chunks of 34.
  constexpr std::size_t k37Rows = 256 + 37 * 288;
  // Formats::Fp16Only: a geometry whose im2col im2col_test.cpp covers in bf16, or a bias path a
  // bf16 case takes too (per-image bias: in chunks; a scaled bias: with the add).
  const EmulatedConvCase cases[] = {
      // A ResNet conv2 at toy size: time embedding per image, skip, output scale 0.5; one GEMM
      // per image (each has its own bias), vector im2col.
      {{2, 10, 10, 16, 24, 3, 3, 1, 1, kBias | kAdd | kResidual, 0.5f, kRoomy, 0, "ResNet conv, per-image bias",
        Formats::Fp16Only},
       2},
      // The same with 37 rows of scratch: three chunks per image, chunks never cross images.
      {{2, 10, 10, 16, 24, 3, 3, 1, 1, kBias | kAdd | kResidual, 0.5f, k37Rows, 0, "ResNet conv in chunks"}, 6},
      // No add and s = 1: one segment over the batch (200 rows), chunks of 34 that cross from the
      // first image into the second; the op's bias as it is; the residual as C.
      {{2, 10, 10, 16, 24, 3, 3, 1, 1, kBias | kResidual, 1.0f, k37Rows, 0, "chunks across images"}, 6},
      // Downsample2D: 3x3, stride 2, padding 1, on a 9x9 input (ho = 5); no bias.
      {{1, 9, 9, 8, 8, 3, 3, 2, 1, kNone, 1.0f, kRoomy, 0, "stride 2"}, 1},
      // The VAE's conv_in: 3 input channels, 1-wide im2col, K = 27 padded to rows of 32.
      {{1, 8, 8, 3, 16, 3, 3, 1, 1, kBias, 1.0f, kRoomy, 0, "Cin = 3"}, 1},
      // The UNet's conv_out: 4 output channels (rows of 8 bytes in out).
      {{2, 6, 6, 16, 4, 3, 3, 1, 1, kBias, 1.0f, kRoomy, 0, "Cout = 4", Formats::Fp16Only}, 1},
      // 1x1, stride 1, no padding: x is the GEMM's matrix (no im2col); with a per-image add, one
      // GEMM per image reading x at the image's offset.
      {{2, 6, 6, 12, 20, 1, 1, 1, 0, kBias | kAdd, 1.0f, kRoomy, 0, "1x1 direct, per-image bias"}, 2},
      // 1x1 direct with the op's bias (a ResNet conv_shortcut): a single GEMM, no scratch needed.
      {{2, 5, 7, 24, 8, 1, 1, 1, 0, kBias | kResidual, 1.0f, 0, 0, "1x1 direct, no scratch"}, 1},
      // 1x1 with stride 2 needs im2col (every other pixel).
      {{1, 7, 7, 8, 8, 1, 1, 2, 0, kBias, 1.0f, kRoomy, 0, "1x1 stride 2", Formats::Fp16Only}, 1},
      // A 1x3 kernel over 5 channels without padding: taps along a row only.
      {{1, 6, 7, 5, 4, 1, 3, 1, 0, kBias, 1.0f, kRoomy, 0, "1x3 kernel", Formats::Fp16Only}, 1},
      // Padding 2 around a 3x3 kernel: the corner rows are mostly zeros.
      {{1, 4, 4, 8, 8, 3, 3, 1, 2, kResidual, 1.0f, kRoomy, 0, "padding 2", Formats::Fp16Only}, 1},
      // Output scale without bias: alpha and beta only; the scaled bias is not needed.
      {{1, 6, 6, 8, 8, 3, 3, 1, 1, kResidual, 1.0f / 1.414f, kRoomy, 0, "scale, no bias"}, 1},
      // Bias scaled without add: one scaled bias for the whole batch.
      {{2, 5, 5, 8, 8, 3, 3, 1, 1, kBias, 0.25f, kRoomy, 0, "scaled bias, no add", Formats::Fp16Only}, 1},
      // Every tensor one element off 16-byte alignment: 1-wide im2col, 2-byte alignments.
      {{2, 6, 6, 8, 8, 3, 3, 1, 1, kBias | kAdd | kResidual, 0.5f, kRoomy, 1, "misaligned by one element"}, 2},
  };
  for (const EmulatedConvCase& e : cases) {
    check_conv_case<T>(e.c, [&](const cuda::GemmConv2d& op, std::size_t scratch_bytes) {
      DeviceBuffer<std::uint8_t> scratch(scratch_bytes > 0 ? scratch_bytes : 1);
      const cuda::ConvPlan plan(op, {.data = scratch_bytes > 0 ? scratch.view("scratch").raw() : nullptr,
                                     .bytes = scratch_bytes});
      CHECK(plan.steps() == e.gemms);
      cuda::run_conv2d<T>(plan, nullptr, emulated_gemm<T>);
    });
  }
}

}  // namespace sdgen::test::gemm_emulated_test
