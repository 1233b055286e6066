// The elementwise kernels of kernels/cuda/elementwise.cuh (activation, add, GEGLU) against the
// reference backend (tests/support/reference_backend.hpp: each formula in double with libm's
// exp/erf/tanh, rounded once to fp32, on the same inputs rounded to the storage format), in both
// storage formats T (fp16 and bf16): the rule of storage_rule.hpp against a naive computation in T
// written here (every intermediate rounded to T), and the per-element bound of
// half_tensor_support.hpp, half an ulp of T (2^-11 relative in fp16, 2^-8 in bf16) plus the
// absolute terms below.
//
// The absolute terms of the per-element bound: the reference is the formula's value to within one
// fp32 rounding, so the difference before the kernel's final rounding to T is the kernel's own fp32
// evaluation: its exp/erf/tanh (libm's in emulation, CUDA's on a GPU: within 2 ulp) and a few
// roundings of the formula's products and sums. For an activation that is about 10 u (1 + |x|)
// (u = 2^-24, 6e-7 (1 + |x|)), allowed as 1e-6 * (1 + |x|); for a sum a * alpha + b * beta, at
// most three fp32 roundings of its terms, allowed as 2^-22 of their magnitudes. These are fp32's,
// the same in both formats. Half of T's subnormal step (2^-25 in fp16, 2^-134 in bf16) covers
// outputs too small for the relative term. The rule's absolute term is half an ulp of T of the
// largest output (the kernel's one rounding).
//
// Each launcher has a 16-byte path and a 1-wide path; the cases say which one they take (lengths
// that are or are not multiples of 8, views shifted by one element). The grid is at most one wave
// (1056 blocks of 256 threads), so each kernel also has a case long enough for the grid-stride
// loop to take a second step. Inputs are N(0, 4^2): wide
// enough to reach the saturated ends of every activation (|x| up to about 20), while the naive
// tanh-GELU's x^3 stays finite in T (|x| < 40 in fp16, whose largest value is 65504; any x in bf16,
// which has fp32's range). fp16 runs every case; bf16 runs every kernel instantiation and path
// (every activation on both paths, broadcast add, strided GEGLU) on the smaller sizes, since each
// CUDA thread is a fiber in emulation: the index arithmetic is the same code in both formats,
// only the conversions differ.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/elementwise.cuh"
#include "kernels/op_checks.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::elementwise_test {

using half_tensors::check_each_element;
using half_tensors::f32_tensor;
using half_tensors::Guarded;

constexpr float kSigma = 4.0f;
// ---- naive T: every intermediate rounded to T

template <class T>
float naive_times_sigmoid(float x, float z) {
  return round_to<T>(x / round_to<T>(1.0 + round_to<T>(std::exp(-double(z)))));
}

template <class T>
float naive_gelu(float x) {
  return round_to<T>(round_to<T>(0.5 * x) * round_to<T>(1.0 + round_to<T>(std::erf(double(round_to<T>(x * 0.70710678118654752))))));
}

template <class T>
float naive_act(Act a, float x) {
  switch (a) {
    case Act::Silu: return naive_times_sigmoid<T>(x, x);
    case Act::Gelu: return naive_gelu<T>(x);
    case Act::GeluTanh: {
      const float cube = round_to<T>(double(round_to<T>(double(x) * x)) * x);
      const float u = round_to<T>(0.79788456080286536 * round_to<T>(x + round_to<T>(0.044715 * cube)));
      return round_to<T>(round_to<T>(0.5 * x) * round_to<T>(1.0 + round_to<T>(std::tanh(double(u)))));
    }
    case Act::QuickGelu: return naive_times_sigmoid<T>(x, round_to<T>(1.702 * x));
    case Act::None: return x;
  }
  return x;
}


// ---- activation

struct ActivationCase {
  std::int64_t n;
  std::size_t misalign;
  bool in_place;
  Formats formats;
  const char* why;
};

TEMPLATE_TEST_CASE("activation: every Act on the vector and scalar paths, in place and not", "[cuda][elementwise]",
                   __half, __nv_bfloat16) {
  using T = TestType;
  const ActivationCase cases[] = {
      // The UNet's time-embedding SiLU is [2, 1280]; a GroupNorm-sized tensor is [2, 32*32, 320]
      // (655,360 elements: 81,920 vectors, 320 blocks of one vector a thread), run for every
      // activation on the 16-byte path.
      {2 * 32 * 32 * 320, 0, false, Formats::Fp16Only, "[2, 32x32, 320]: vector path"},
      {2 * 1280, 0, true, Formats::Both, "[2, 1280] in place: vector path"},
      {1003, 0, false, Formats::Both, "1003 elements: vector path, last vector partial (3 elements)"},
      {1003, 1, true, Formats::Both, "1003 elements shifted by one element, in place: scalar path"},
      {5, 0, false, Formats::Both, "5 elements: only a partial vector"},
      // The grid is at most one wave, 1056 blocks of 256 threads (270,336): a longer tensor takes
      // the grid-stride loop's further steps.
      {300001, 1, false, Formats::Both,
       "300,001 elements shifted by one element: scalar path, 1056 blocks, a second step for 29,665 threads"},
  };
  ReferenceBackend reference;
  for (const ActivationCase& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    for (Act act : {Act::None, Act::Silu, Act::Gelu, Act::GeluTanh, Act::QuickGelu}) {
      const std::string what = std::string(k.why) + ", " + std::string(act_name(act)) + ", " + Format<T>::kName;
      CAPTURE(what);
      const std::vector<float> x = randn<T>(std::size_t(k.n), 100 + std::uint64_t(k.n), kSigma);
      Guarded<T> d_x(x, k.misalign);
      Guarded<T> d_out(std::size_t(k.n), k.misalign);
      const Guarded<T>& target = k.in_place ? d_x : d_out;
      cuda::launch_activation<T>({.x = d_x.input("x"), .out = target.view("out"), .n = k.n, .act = act});
      const std::vector<float> got = target.values();

      std::vector<float> x32 = x, ref(x.size()), naive(x.size());
      reference.activation(f32_tensor(x32, Shape{k.n}), f32_tensor(ref, Shape{k.n}), act);
      for (std::size_t i = 0; i < x.size(); ++i) naive[i] = naive_act<T>(act, x[i]);

      check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
      check_each_element<T>(
          got, ref, [&](std::size_t i) { return half_subnormal_step<T>() + 1e-6 * (1.0 + std::fabs(x[i])); }, what);
    }
  }
}

// ---- add

enum class AddOperand { AOnly, SameShape, Broadcast };
enum class AddTarget { Fresh, A, B };

struct AddCase {
  Shape a_shape;
  Shape b_shape;  // empty without b
  AddOperand b;
  AddTarget out;
  std::size_t misalign;
  float alpha, beta;
  const char* why;
};

// Every case is small enough for both formats to run them all.
TEMPLATE_TEST_CASE("add: a * alpha + b * beta with b absent, equal or broadcast, in place on a or b",
                   "[cuda][elementwise]", __half, __nv_bfloat16) {
  using T = TestType;
  const AddCase cases[] = {
      // Classifier-free guidance on the SD latent at 512x512: uncond + 7.5 (cond - uncond) is two
      // adds on [1, 64, 64, 4].
      {{1, 64, 64, 4}, {1, 64, 64, 4}, AddOperand::SameShape, AddTarget::Fresh, 0, -6.5f, 7.5f,
       "[1, 64, 64, 4] same shape: vector path"},
      {{2, 16, 16, 320}, {320}, AddOperand::Broadcast, AddTarget::Fresh, 0, 1.0f, 1.0f,
       "[2, 16, 16, 320] + [320]: broadcast, vector path"},
      {{2, 16, 16, 320}, {16, 320}, AddOperand::Broadcast, AddTarget::A, 0, 0.5f, -2.0f,
       "[2, 16, 16, 320] + [16, 320] into a: broadcast over two dims, vector path"},
      {{3, 7, 13}, {13}, AddOperand::Broadcast, AddTarget::Fresh, 0, 1.0f, 0.25f,
       "[3, 7, 13] + [13]: period not a multiple of 8, scalar path"},
      {{5, 101}, {5, 101}, AddOperand::SameShape, AddTarget::B, 0, 1.5f, 1.0f,
       "[5, 101] same shape into b: 505 elements, vector path with a partial last vector"},
      {{4, 64}, {4, 64}, AddOperand::SameShape, AddTarget::A, 1, 1.0f, 1.0f,
       "[4, 64] shifted by one element, into a: scalar path"},
      {{1003}, {}, AddOperand::AOnly, AddTarget::Fresh, 0, 0.18215f, 0.0f,
       "[1003] * 0.18215 (the VAE scaling), no b: vector path, partial last vector"},
      {{2, 100, 1501}, {1501}, AddOperand::Broadcast, AddTarget::Fresh, 0, 1.0f, -1.0f,
       "[2, 100, 1501] + [1501]: scalar path, 1056 blocks, a second step for 29,864 threads"},
  };
  ReferenceBackend reference;
  for (const AddCase& k : cases) {
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::int64_t n = k.a_shape.numel();
    const bool has_b = k.b != AddOperand::AOnly;
    const std::int64_t nb = has_b ? k.b_shape.numel() : 0;
    const std::vector<float> a = randn<T>(std::size_t(n), 200 + std::uint64_t(n), kSigma);
    const std::vector<float> b = randn<T>(std::size_t(has_b ? nb : 1), 300 + std::uint64_t(nb), kSigma);
    Guarded<T> d_a(a, k.misalign), d_b(b, k.misalign), d_out(std::size_t(n), k.misalign);
    const Guarded<T>& target = k.out == AddTarget::A ? d_a : k.out == AddTarget::B ? d_b : d_out;
    cuda::launch_add<T>({.a = d_a.input("a"),
                         .b = has_b ? d_b.input("b") : cuda::GlobalPtr<const T>(),
                         .out = target.view("out"),
                         .geometry = {.n = n, .b_period = nb},
                         .alpha = k.alpha,
                         .beta = k.beta});
    const std::vector<float> got = target.values();

    std::vector<float> a32 = a, b32 = b, ref(a.size()), naive(a.size());
    const Tensor tb = f32_tensor(b32, has_b ? k.b_shape : Shape{1});
    reference.add(f32_tensor(a32, k.a_shape), has_b ? &tb : nullptr, f32_tensor(ref, k.a_shape),
                  {.alpha = k.alpha, .beta = k.beta});
    auto b_of = [&](std::size_t i) { return has_b ? b[i % std::size_t(nb)] : 0.0f; };
    for (std::size_t i = 0; i < a.size(); ++i)
      naive[i] = has_b ? round_to<T>(round_to<T>(double(a[i]) * k.alpha) + round_to<T>(double(b_of(i)) * k.beta))
                       : round_to<T>(double(a[i]) * k.alpha);

    check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
    check_each_element<T>(
        got, ref,
        [&](std::size_t i) {
          return half_subnormal_step<T>() +
                 0x1p-22 * (std::fabs(double(a[i]) * k.alpha) + std::fabs(double(b_of(i)) * k.beta));
        },
        what);
  }
}

// ---- geglu

struct GegluCase {
  std::int64_t rows, f;
  std::int64_t x_row_stride;  // >= 2f: x is a column slice of a wider buffer when larger
  std::size_t misalign;
  Formats formats;
  const char* why;
};

TEMPLATE_TEST_CASE("geglu: hidden * gelu(gate) over rows, contiguous and strided", "[cuda][elementwise]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  const GegluCase cases[] = {
      // SD 1.5's innermost transformer level at 512x512 with guidance, at its real size: 8x8
      // tokens, GEGLU's projection [B*N, 2 * 5120].
      {2 * 8 * 8, 5120, 2 * 5120, 0, Formats::Fp16Only, "UNet [2, 8x8, 10240] -> 5120: vector path"},
      // The first level's rows (projection 2 * 1280) on a 16x16 latent instead of 64x64.
      {2 * 256, 1280, 2 * 1280, 0, Formats::Fp16Only, "[2, 16x16, 2560] -> 1280: vector path"},
      {16, 320, 2 * 320, 0, Formats::Both, "[16, 640] -> 320: contiguous, vector path"},
      {37, 24, 2 * 24 + 16, 0, Formats::Both, "37 rows of 48 in rows of 64: strided x, vector path"},
      {9, 13, 2 * 13, 0, Formats::Both, "f = 13: scalar path"},
      {6, 16, 2 * 16 + 3, 0, Formats::Both, "rows of 32 in rows of 35: stride not a multiple of 8, scalar path"},
      {4, 32, 2 * 32, 1, Formats::Both, "shifted by one element: scalar path"},
      {23101, 13, 2 * 13, 0, Formats::Both,
       "23101 rows of 26 -> 13: scalar path, 1056 blocks, a second step for 29,977 threads"},
  };
  ReferenceBackend reference;
  for (const GegluCase& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::int64_t x_count = (k.rows - 1) * k.x_row_stride + 2 * k.f;
    const std::vector<float> x = randn<T>(std::size_t(x_count), 400 + std::uint64_t(x_count), kSigma);
    Guarded<T> d_x(x, k.misalign), d_out(std::size_t(k.rows * k.f), k.misalign);
    const GegluGeometry g{.x = {.rows = k.rows, .cols = 2 * k.f, .row_stride = k.x_row_stride},
                          .out = {.rows = k.rows, .cols = k.f, .row_stride = k.f}};
    cuda::launch_geglu<T>({.x = d_x.input("x"), .out = d_out.view("out"), .geometry = g});
    const std::vector<float> got = d_out.values();

    std::vector<float> x32 = x, ref(std::size_t(k.rows * k.f));
    Tensor tx = f32_tensor(x32, Shape{k.rows, 2 * k.f});
    tx.strides = Strides{k.x_row_stride, 1};
    reference.geglu(tx, f32_tensor(ref, Shape{k.rows, k.f}));
    std::vector<float> naive(ref.size()), hidden(ref.size()), gate(ref.size());
    for (std::int64_t r = 0; r < k.rows; ++r)
      for (std::int64_t c = 0; c < k.f; ++c) {
        const std::size_t o = std::size_t(r * k.f + c);
        hidden[o] = x[std::size_t(r * k.x_row_stride + c)];
        gate[o] = x[std::size_t(r * k.x_row_stride + k.f + c)];
        naive[o] = round_to<T>(double(hidden[o]) * naive_gelu<T>(gate[o]));
      }

    check_storage_rule<T>(got, ref, naive, half_ulp<T>(half_tensors::max_abs(ref)), what);
    check_each_element<T>(
        got, ref,
        [&](std::size_t i) {
          return half_subnormal_step<T>() + 1e-6 * (1.0 + std::fabs(hidden[i])) * (1.0 + std::fabs(gate[i]));
        },
        what);
  }
}

}  // namespace sdgen::test::elementwise_test
