// The two small kernels around the cuBLASLt GEMMs (kernels/cuda/gemm_steps.cuh) on their own, in
// both storage formats (T = __half, __nv_bfloat16): the rows epilogue (out = act(out) + residual
// over strided rows) and the per-image conv bias (s * (bias + add)). Against the reference's
// activation (reference_act: the formula in double) and plain sums in double, with the storage
// rule (storage_rule.hpp) against a naive computation in T and the per-element bound of
// half_tensor_support.hpp: half an ulp of T (2^-11 relative in fp16, 2^-8 in bf16), the one
// rounding of the fp32 result to T.
//
// Absolute terms, the same in both formats because they are the kernels' fp32 arithmetic, not the
// storage format's: the rows epilogue evaluates the activation in fp32 (1e-6 (1 + |x|), as
// elementwise_test.cpp argues) and adds the residual with one fp32 rounding (2^-24 of |act(x)| +
// |residual|, allowed as 2^-22); the conv bias sums two 16-bit values and scales them in fp32 (two
// roundings: 2^-23 of |s (bias + add)|, allowed as 2^-22). Besides, half a subnormal step of T
// (2^-25 in fp16, 2^-134 in bf16: half_ulp of the format's smallest normal) covers outputs too
// small for the relative term. The storage rule's absolute term is half an ulp of T of the largest
// output, the final rounding.
//
// Each case says which path it takes: 8 elements per access when the columns, both row strides and
// both pointers allow it, else 1. Padding columns between rows hold a sentinel that must survive.
// fp16 runs every case; bf16 runs every path (8-wide, 1-wide, misaligned) at the smaller sizes,
// plus magnitudes past fp16's range, which a kernel converting through fp16 would turn into Inf.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/gemm_steps.cuh"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::gemm_steps_test {

using half_tensors::check_each_element;
using half_tensors::Guarded;

struct RowsCase {
  std::int64_t rows, cols, out_pad, residual_pad;
  std::size_t misalign;
  float sigma;  // of out and the residual
  Formats formats;
  const char* why;
};

TEMPLATE_TEST_CASE("rows epilogue: act(out) + residual over strided rows, every activation", "[cuda][gemm]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  // In every padding column of out: the pass must not touch it (1234 rounded to T: 1232 in bf16).
  const float sentinel = round_to<T>(1234.0f);
  const RowsCase cases[] = {
      // A linear's output [2 x 32 tokens, 320] in place: the 8-wide path over whole rows.
      {64, 320, 0, 0, 0, 4.0f, Formats::Fp16Only, "[64, 320] contiguous: 8-wide"},
      // Column slices of wider buffers (out rows of 56, residual rows of 64): still 8-wide.
      {19, 48, 8, 16, 0, 4.0f, Formats::Both, "rows of 48 in strides 56 and 64: 8-wide"},
      // A stride of 51 and 13 columns: 1-wide.
      {7, 13, 38, 0, 0, 4.0f, Formats::Both, "13 columns in strides 51 and 13: 1-wide"},
      // Aligned sizes on views one element off a 16-byte boundary: 1-wide.
      {5, 64, 0, 0, 1, 4.0f, Formats::Both, "misaligned by one element: 1-wide"},
      // bf16's range: values of order 1e5, past fp16's largest (65504), on both paths.
      {6, 24, 8, 0, 0, 1e5f, Formats::Bf16Only, "magnitudes past fp16's range: 8-wide"},
      {3, 21, 2, 5, 0, 1e5f, Formats::Bf16Only, "magnitudes past fp16's range: 1-wide"},
  };
  for (const RowsCase& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    for (Act act : {Act::None, Act::Silu, Act::Gelu, Act::GeluTanh, Act::QuickGelu})
      for (bool with_residual : {false, true}) {
        if (act == Act::None && !with_residual) continue;  // nothing to do: the launcher returns
        const std::string what = std::string(Format<T>::kName) + ", " + k.why + ", act " +
                                 std::to_string(int(act)) + (with_residual ? ", residual" : "");
        CAPTURE(what);
        const std::int64_t os = k.cols + k.out_pad, rs = k.cols + k.residual_pad;
        std::vector<float> out = randn<T>(std::size_t(k.rows * os), 500 + std::uint64_t(os), k.sigma);
        for (std::int64_t r = 0; r < k.rows; ++r)
          for (std::int64_t c = k.cols; c < os; ++c) out[std::size_t(r * os + c)] = sentinel;
        const std::vector<float> residual = randn<T>(std::size_t(k.rows * rs), 600 + std::uint64_t(rs), k.sigma);
        Guarded<T> d_out(out, k.misalign), d_residual(residual, k.misalign);
        cuda::launch_rows_epilogue<T>({.out = d_out.view("out"),
                                       .residual = with_residual ? d_residual.input("residual")
                                                                 : cuda::GlobalPtr<const T>(),
                                       .act = act,
                                       .rows = k.rows,
                                       .cols = k.cols,
                                       .out_row_stride = os,
                                       .residual_row_stride = rs});
        const std::vector<float> all = d_out.values();

        std::vector<float> got, ref, naive, x, res_of;
        std::size_t sentinels_lost = 0;
        for (std::int64_t r = 0; r < k.rows; ++r)
          for (std::int64_t c = 0; c < os; ++c) {
            const std::size_t i = std::size_t(r * os + c);
            if (c >= k.cols) {
              sentinels_lost += all[i] == sentinel ? 0 : 1;
              continue;
            }
            const double res = with_residual ? double(residual[std::size_t(r * rs + c)]) : 0.0;
            got.push_back(all[i]);
            x.push_back(out[i]);
            res_of.push_back(float(res));
            ref.push_back(float(reference_act(act, double(out[i])) + res));
            naive.push_back(round_to<T>(double(round_to<T>(reference_act(act, double(out[i])))) + res));
          }
        INFO("padding columns changed: " << sentinels_lost);
        CHECK(sentinels_lost == 0);
        check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
        check_each_element<T>(
            got, ref,
            [&](std::size_t i) {
              const double a = std::fabs(reference_act(act, double(x[i])));
              return half_subnormal_step<T>() + 1e-6 * (1.0 + std::fabs(x[i])) +
                     0x1p-22 * (a + std::fabs(res_of[i]));
            },
            what);
      }
  }
}

enum class Terms { Bias, Add, BiasAndAdd };

TEMPLATE_TEST_CASE("conv bias: s * (bias + add) per channel, either term alone", "[cuda][gemm]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  // 1280 channels (the UNet's deepest ResNets: several blocks) and 77 (an odd count, a partial
  // block), in both formats: the whole test is a few milliseconds.
  for (std::int64_t channels : {1280, 77})
    for (Terms terms : {Terms::Bias, Terms::Add, Terms::BiasAndAdd})
      for (float scale : {1.0f, 0.5f, 1.0f / 1.414f}) {
        INFO(Format<T>::kName << ": channels " << channels << ", terms " << int(terms) << ", scale " << scale);
        const std::vector<float> bias = randn<T>(std::size_t(channels), 700 + std::uint64_t(channels), 2.0f);
        const std::vector<float> add = randn<T>(std::size_t(channels), 800 + std::uint64_t(channels), 2.0f);
        Guarded<T> d_bias(bias), d_add(add), d_out(static_cast<std::size_t>(channels));
        cuda::launch_conv_bias<T>({.bias = terms != Terms::Add ? d_bias.input("bias") : cuda::GlobalPtr<const T>(),
                                   .add = terms != Terms::Bias ? d_add.input("add") : cuda::GlobalPtr<const T>(),
                                   .out = d_out.view("out"),
                                   .channels = channels,
                                   .scale = scale});
        const std::vector<float> got = d_out.values();
        std::vector<float> ref(got.size()), naive(got.size());
        for (std::size_t c = 0; c < got.size(); ++c) {
          const double b = terms != Terms::Add ? double(bias[c]) : 0.0;
          const double a = terms != Terms::Bias ? double(add[c]) : 0.0;
          ref[c] = float(scale * (b + a));
          naive[c] = round_to<T>(double(round_to<T>(b + a)) * scale);
        }
        check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), "conv bias");
        check_each_element<T>(
            got, ref,
            [&](std::size_t c) { return half_subnormal_step<T>() + 0x1p-22 * std::fabs(double(ref[c])); },
            "conv bias");
      }
}

}  // namespace sdgen::test::gemm_steps_test
