// The data-movement kernels of kernels/cuda/layout.cuh against the reference backend
// (tests/support/reference_backend.hpp, fp32, on the same inputs rounded to the storage format)
// and against plain loops written here, in both storage formats T (fp16 and bf16).
//
// Upsampling, concatenation, embedding and the conversions move values without arithmetic (or,
// for the scaled conversion, with one fp32 product rounded once to T, which the host reproduces
// exactly with lib/core/half.hpp's round-to-nearest-even f32_to_f16 / f32_to_bf16), so they must
// match bit for bit, in either format. The timestep embedding computes sines of large arguments
// and is held to the rule of storage_rule.hpp (against the formula computed naively in T) and to
// a direct bound stated at its test, half an ulp of T at 1 (2^-11 in fp16, 2^-8 in bf16). Every
// output lies between poisoned guard bands (0xff bytes) that must survive the launch, and outputs
// start as 0xff too (a NaN in both formats), so an element left unwritten fails.
//
// Each launcher has a 16-byte vector path and a scalar path; the cases below force each one
// (channel counts that are or are not multiples of 8, views shifted by one element so they are
// not 16-byte aligned) and say which they take. Sizes are the real SD ones where emulation time
// allows (one fiber per CUDA thread), and otherwise the same kernels on smaller images: the index
// arithmetic does not depend on the size beyond the partial blocks the odd sizes produce. fp16
// runs every case; bf16 runs both paths of every op, skipping the largest sizes (the index
// arithmetic is the same code in both formats; only the element type and the conversions differ).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/layout.cuh"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/emu/device_buffer.hpp"
#include "tests/support/reference_backend.hpp"

namespace sdgen::test::layout_test {
// Poisoned elements on each side of every output.
constexpr std::size_t kGuard = 40;

// `count` output elements viewed inside a buffer of 0xff bytes, `offset` elements past a 16-byte
// boundary (offset 1 makes a 16-bit view misaligned for 16-byte vectors).
template <class T>
class GuardedOutput {
 public:
  explicit GuardedOutput(std::size_t count, std::size_t offset = 0)
      : count_(count), front_(kGuard + offset), buffer_(front_ + count + kGuard) {}

  cuda::GlobalPtr<T> view() const { return buffer_.view("out").slice(std::int64_t(front_), std::int64_t(count_)); }

  // The output, as H (T's bits: std::uint16_t for __half and __nv_bfloat16), after checking the
  // guard bands.
  template <class H>
  std::vector<H> result() const {
    const std::vector<H> all = buffer_.template to_host<H>();
    const auto* bytes = reinterpret_cast<const unsigned char*>(all.data());
    std::size_t damaged = 0;
    for (std::size_t i = 0; i < front_ * sizeof(T); ++i) damaged += bytes[i] != 0xff;
    for (std::size_t i = (front_ + count_) * sizeof(T); i < all.size() * sizeof(T); ++i) damaged += bytes[i] != 0xff;
    INFO("guard bytes overwritten: " << damaged);
    CHECK(damaged == 0);
    return {all.begin() + std::ptrdiff_t(front_), all.begin() + std::ptrdiff_t(front_ + count_)};
  }

 private:
  std::size_t count_, front_;
  DeviceBuffer<T> buffer_;
};

// A device copy of `values` starting `offset` elements past a 16-byte boundary.
template <class T>
class DeviceInput {
 public:
  template <class H>
  explicit DeviceInput(const std::vector<H>& values, std::size_t offset = 0)
      : offset_(offset), count_(values.size()), buffer_(padded(values, offset)) {}
  cuda::GlobalPtr<const T> view(const char* name) const {
    return buffer_.view(name).slice(std::int64_t(offset_), std::int64_t(count_));
  }

 private:
  template <class H>
  static std::vector<H> padded(const std::vector<H>& values, std::size_t offset) {
    std::vector<H> v(offset, values.front());
    v.insert(v.end(), values.begin(), values.end());
    return v;
  }
  std::size_t offset_, count_;
  DeviceBuffer<T> buffer_;
};

Tensor f32_tensor(std::vector<float>& data, const Shape& shape) {
  return Tensor::contiguous(data.data(), DType::F32, shape);
}

std::size_t count_differences(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

// ---- upsample_nearest

struct UpsampleCase {
  std::int64_t batch, h, w, c, ho, wo;
  std::size_t offset;  // of the input and the output views
  Formats formats;
  const char* why;
};

// torch's nearest index, written out independently of the kernel: the scale in fp32, floored.
std::int64_t torch_nearest(std::int64_t dst, std::int64_t in, std::int64_t out) {
  const float scale = float(in) / float(out);
  const auto src = std::int64_t(std::floor(float(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

TEMPLATE_TEST_CASE("upsample_nearest copies torch's nearest source pixel, for 2x and for any size", "[cuda][layout]",
                   __half, __nv_bfloat16) {
  using T = TestType;
  const UpsampleCase cases[] = {
      // The UNet's three up-samplers at 512x512 with guidance (batch 2): the vector path.
      {2, 8, 8, 1280, 16, 16, 0, Formats::Both, "SD 8->16 at 1280 channels"},
      {2, 16, 16, 1280, 32, 32, 0, Formats::Fp16Only, "SD 16->32 at 1280 channels"},
      {2, 32, 32, 640, 64, 64, 0, Formats::Fp16Only, "SD 32->64 at 640 channels"},
      {2, 6, 5, 640, 12, 10, 0, Formats::Both, "640 channels on an odd image: vector path, partial blocks"},
      // An image side that is a multiple of 8 but not of 64 rounds down on the way in (a 520-px
      // image: latent 65 -> 33 -> 17 -> 9), and each up-sampler goes to its skip's size, where
      // torch picks row floor(y * float(33) / float(65)), not y / 2.
      {2, 33, 33, 640, 65, 65, 0, Formats::Both, "SD 33->65 at 640 channels (520-px image): vector path"},
      {1, 9, 5, 32, 17, 9, 0, Formats::Both, "non-2x sizes 9->17 and 5->9: vector path"},
      {2, 3, 4, 5, 6, 8, 0, Formats::Both, "5 channels: scalar path"},
      {1, 5, 3, 16, 9, 7, 0, Formats::Both, "non-2x sizes, odd width: vector path"},
      {1, 4, 4, 24, 8, 8, 1, Formats::Both, "24 channels but views shifted by one element: scalar path"},
  };
  ReferenceBackend reference;
  for (const UpsampleCase& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::vector<float> x = randn<T>(std::size_t(k.batch * k.h * k.w * k.c), 11);
    const std::size_t n_out = std::size_t(k.batch * k.ho * k.wo * k.c);
    DeviceInput<T> d_x(to_bits<T>(x), k.offset);
    GuardedOutput<T> d_out(n_out, k.offset);
    cuda::upsample_nearest<T>({.x = d_x.view("x"),
                               .out = d_out.view(),
                               .batch = k.batch,
                               .h = k.h,
                               .w = k.w,
                               .c = k.c,
                               .ho = k.ho,
                               .wo = k.wo});
    const std::vector<float> got = from_bits<T>(d_out.template result<std::uint16_t>());

    std::vector<float> x32 = x, ref(n_out);
    reference.upsample_nearest(f32_tensor(x32, Shape{k.batch, k.h, k.w, k.c}),
                               f32_tensor(ref, Shape{k.batch, k.ho, k.wo, k.c}));
    CHECK(count_differences(got, ref) == 0);

    std::vector<float> loop(n_out);
    for (std::int64_t b = 0; b < k.batch; ++b)
      for (std::int64_t y = 0; y < k.ho; ++y)
        for (std::int64_t xo = 0; xo < k.wo; ++xo)
          for (std::int64_t ch = 0; ch < k.c; ++ch)
            loop[std::size_t(((b * k.ho + y) * k.wo + xo) * k.c + ch)] = x[std::size_t(
                ((b * k.h + torch_nearest(y, k.h, k.ho)) * k.w + torch_nearest(xo, k.w, k.wo)) * k.c + ch)];
    CHECK(count_differences(got, loop) == 0);
  }
}

// ---- concat_channels

TEMPLATE_TEST_CASE("concat_channels puts a's channels before b's in every pixel", "[cuda][layout]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  struct Case {
    std::int64_t batch, h, w, ca, cb;
    std::size_t offset;
    Formats formats;
    const char* why;
  };
  const Case cases[] = {
      {2, 8, 8, 1280, 1280, 0, Formats::Both, "SD's innermost skip at 512x512 (2x8x8, 1280 + 1280): vector path"},
      {2, 64, 64, 320, 320, 0, Formats::Fp16Only, "SD's outermost skip at 512x512 (2x64x64, 320 + 320): vector path"},
      {2, 5, 7, 640, 320, 0, Formats::Both, "unequal halves (640 + 320) on an odd image: vector path, partial blocks"},
      {1, 3, 5, 5, 11, 0, Formats::Both, "5 + 11 channels: scalar path"},
      {2, 2, 3, 8, 12, 0, Formats::Both, "8 + 12: a is vector-sized, b is not: scalar path"},
      {1, 3, 3, 16, 8, 1, Formats::Both, "16 + 8 with views shifted by one element: scalar path"},
  };
  ReferenceBackend reference;
  for (const Case& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::int64_t pixels = k.batch * k.h * k.w;
    const std::vector<float> a = randn<T>(std::size_t(pixels * k.ca), 21), b = randn<T>(std::size_t(pixels * k.cb), 22);
    DeviceInput<T> d_a(to_bits<T>(a), k.offset), d_b(to_bits<T>(b), k.offset);
    GuardedOutput<T> d_out(std::size_t(pixels * (k.ca + k.cb)), k.offset);
    cuda::concat_channels<T>(
        {.a = d_a.view("a"), .b = d_b.view("b"), .out = d_out.view(), .pixels = pixels, .ca = k.ca, .cb = k.cb});
    const std::vector<float> got = from_bits<T>(d_out.template result<std::uint16_t>());

    std::vector<float> a32 = a, b32 = b, ref(got.size());
    reference.concat_channels(f32_tensor(a32, Shape{k.batch, k.h, k.w, k.ca}),
                              f32_tensor(b32, Shape{k.batch, k.h, k.w, k.cb}),
                              f32_tensor(ref, Shape{k.batch, k.h, k.w, k.ca + k.cb}));
    CHECK(count_differences(got, ref) == 0);
  }
}

// ---- embedding

TEMPLATE_TEST_CASE("embedding gathers table rows, and zeroes and reports ids outside the table", "[cuda][layout]",
                   __half, __nv_bfloat16) {
  using T = TestType;
  struct Case {
    std::int64_t batch, tokens, vocab, c;
    std::size_t offset;
    Formats formats;
    const char* why;
  };
  // CLIP's token embedding is [49408, 768] (1024 for SD 2); a 1000-row table of the real width
  // exercises the same per-row gather. 77 tokens is CLIP's context, odd on purpose.
  const Case cases[] = {
      {2, 77, 1000, 768, 0, Formats::Both, "CLIP's width and context, guided batch: vector path"},
      {1, 77, 300, 1024, 0, Formats::Both, "SD 2's width: vector path"},
      {2, 5, 10, 6, 0, Formats::Both, "6 channels: scalar path"},
      {1, 9, 40, 32, 1, Formats::Both, "views shifted by one element: scalar path"},
  };
  ReferenceBackend reference;
  for (const Case& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const std::int64_t n = k.batch * k.tokens;
    std::mt19937 rng(31);
    std::uniform_int_distribution<std::int32_t> pick(0, std::int32_t(k.vocab - 1));
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
    for (std::int32_t& id : ids) id = pick(rng);
    const std::vector<float> table = randn<T>(std::size_t(k.vocab * k.c), 32);

    const auto run = [&](const std::vector<std::int32_t>& token_ids, std::vector<float>& out, int& error) {
      DeviceBuffer<std::int32_t> d_ids(token_ids);
      DeviceInput<T> d_table(to_bits<T>(table), k.offset);
      GuardedOutput<T> d_out(std::size_t(n * k.c), k.offset);
      DeviceBuffer<int> d_error(std::vector<int>{0});
      cuda::embedding<T>({.ids = d_ids.view("ids"),
                          .table = d_table.view("table"),
                          .out = d_out.view(),
                          .error = d_error.view("error"),
                          .tokens = n,
                          .vocab = k.vocab,
                          .c = k.c});
      out = from_bits<T>(d_out.template result<std::uint16_t>());
      error = d_error.to_host()[0];
    };

    std::vector<float> got;
    int error = -1;
    run(ids, got, error);
    CHECK(error == 0);
    std::vector<std::int32_t> ids_copy = ids;
    std::vector<float> table32 = table, ref(got.size());
    reference.embedding(Tensor::contiguous(ids_copy.data(), DType::I32, Shape{k.batch, k.tokens}),
                        f32_tensor(table32, Shape{k.vocab, k.c}), f32_tensor(ref, Shape{k.batch, k.tokens, k.c}));
    CHECK(count_differences(got, ref) == 0);

    // One id just past the table and one negative: their rows are zero, the others unchanged,
    // and the flag names the later position (1 + index), so the backend can say which.
    std::vector<std::int32_t> bad = ids;
    const std::size_t first_bad = 1, last_bad = std::size_t(n - 2);
    bad[first_bad] = std::int32_t(k.vocab);
    bad[last_bad] = -1;
    run(bad, got, error);
    CHECK(error == int(last_bad) + 1);
    for (std::size_t t = 0; t < std::size_t(n); ++t) {
      const bool zero_row = t == first_bad || t == last_bad;
      std::size_t wrong = 0;
      for (std::size_t ch = 0; ch < std::size_t(k.c); ++ch) {
        const float expected = zero_row ? 0.0f : ref[t * std::size_t(k.c) + ch];
        wrong += got[t * std::size_t(k.c) + ch] != expected;
      }
      CAPTURE(t);
      CHECK(wrong == 0);
    }
  }
}

// ---- timestep_embedding

// Every case is small: both formats run them all.
TEMPLATE_TEST_CASE("timestep_embedding matches the reference within the storage format's rounding", "[cuda][layout]",
                   __half, __nv_bfloat16) {
  using T = TestType;
  // Timesteps across SD's range (999 is the first DDIM step, fractional ones come from the
  // Karras and Euler schedules), batch 5 so rows are not a power of two.
  const std::vector<float> ts{999.0f, 0.0f, 1.0f, 500.5f, 0.25f};
  struct Case {
    std::int64_t dim;
    TimestepEmbeddingArgs args;
    const char* why;
  };
  const Case cases[] = {
      {320, {.flip_sin_to_cos = true, .freq_shift = 0.0f}, "SD's UNet time_proj (320 channels)"},
      {32, {.flip_sin_to_cos = false, .freq_shift = 1.0f}, "diffusers' defaults, sin first"},
      {7, {.flip_sin_to_cos = true, .freq_shift = 0.0f, .max_period = 100.0f}, "odd dim: zero pad column"},
  };
  ReferenceBackend reference;
  for (const Case& k : cases) {
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    const auto batch = std::int64_t(ts.size());
    DeviceBuffer<float> d_t(ts);
    GuardedOutput<T> d_out(std::size_t(batch * k.dim));
    cuda::timestep_embedding<T>(
        {.t = d_t.view("t"), .out = d_out.view(), .batch = batch, .dim = k.dim, .args = k.args});
    const std::vector<float> got = from_bits<T>(d_out.template result<std::uint16_t>());

    std::vector<float> t32 = ts, ref(got.size());
    reference.timestep_embedding(f32_tensor(t32, Shape{batch}), f32_tensor(ref, Shape{batch, k.dim}), k.args);

    // The same formula with every intermediate rounded to T.
    const auto rnd = [](float v) { return round_to<T>(v); };
    const std::int64_t half = k.dim / 2;
    const float neg_log = rnd(float(-std::log(double(k.args.max_period))));
    const float denom = rnd(float(half) - k.args.freq_shift);
    std::vector<float> naive(got.size(), 0.0f);
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < half; ++i) {
        const float exponent = rnd(rnd(neg_log * float(i)) / denom);
        const float arg = rnd(rnd(ts[std::size_t(b)]) * rnd(std::exp(exponent)));
        const float s = rnd(std::sin(arg)), c = rnd(std::cos(arg));
        naive[std::size_t(b * k.dim + i)] = k.args.flip_sin_to_cos ? c : s;
        naive[std::size_t(b * k.dim + half + i)] = k.args.flip_sin_to_cos ? s : c;
      }
    // Absolute term: one ulp of T at 1 (2^-10 in fp16, 2^-7 in bf16), 1 being the largest
    // magnitude an output has.
    check_storage_rule<T>(got, ref, naive, 2.0 * half_ulp<T>(1.0), what);

    // The rule is loose here (rounding a large argument to T moves a sine by up to 0.25 in fp16,
    // whose spacing at 999 is 0.5, and anywhere in [-1, 1] in bf16, whose spacing there is 4), so
    // also a direct bound, half an ulp of T at 1 (2^-11 in fp16, 2^-8 in bf16): rounding the
    // output to T costs at most half of it for |v| <= 1 (2^-12 in fp16, 2^-9 in bf16: half the
    // spacing below 1). The reference follows torch's F32 order with exp, sin and cos correctly
    // rounded; the kernel's expf (libm's in emulation, the device's on a GPU: within 2 ulp) then
    // moves the argument by at most about 3 * 2^-24 * 999 < 2^-12, and its sinf/cosf add a couple
    // of ulp of 1: together within the other half (2^-12 in fp16; in bf16, 2^-9, with room).
    CHECK(max_abs_diff(got, ref) <= half_ulp<T>(1.0));
    if (k.dim % 2) {
      for (std::int64_t b = 0; b < batch; ++b) CHECK(got[std::size_t(b * k.dim + k.dim - 1)] == 0.0f);
    }
  }
}

// ---- conversions

// Values the conversion must round correctly besides N(0, 8^2) draws, in both formats: exact ties
// between neighbours of T (even and odd low bits: nearest even picks the even one; they stay ties
// in the cases scaled by 1 and 0.5), values beyond fp16's range (overflowing to inf in fp16 at
// 65520, finite in bf16), values below fp16's normal range (subnormal or zero in fp16, normal in
// bf16) and the largest finite values. All are normal fp32 numbers and stay normal when scaled by
// the cases' factors, so the GPU's multiply and conversion see no fp32 subnormal (flush-to-zero
// flags could matter there). Written into the first elements of every case's input.
template <class T>
std::vector<float> conversion_edge_values() {
  std::vector<float> v;
  // Read as fp16: 1, 12.5, subnormals, the smallest normal binade (0x7f00 and 0xff01 are NaN:
  // skipped). Read as bf16: small normal values of several binades, and the largest binade.
  for (std::uint16_t bits : {0x3c00, 0x3c01, 0x4a3f, 0x4a40, 0x0301, 0x8302, 0x0481, 0x8482, 0x7f00, 0xff01}) {
    // bits and bits + 1 are neighbours in T (bits is not the largest finite value of T); their
    // midpoint is exact in fp32, which has 13 (fp16) or 16 (bf16) more mantissa bits.
    const double lo = Format<T>::value(bits), hi = Format<T>::value(std::uint16_t(bits + 1));
    if (std::isfinite(lo) && std::isfinite(hi)) v.push_back(float((lo + hi) / 2.0));
  }
  for (float x : {65504.0f, 65519.0f, 65520.0f, -70000.0f, 1.0e5f, 3.0e38f, -3.389e38f, 1.0e-5f, -3.0e-8f, 1.0e-30f,
                  -2.0e-36f})
    v.push_back(x);
  return v;
}

TEMPLATE_TEST_CASE("fp32 -> 16-bit storage rounds to nearest even, scaled and repeated for the guidance batch",
                   "[cuda][layout]", __half, __nv_bfloat16) {
  using T = TestType;
  struct Case {
    std::int64_t n;
    int copies;
    float scale;
    std::size_t offset;
    const char* why;
  };
  // Every case is small: both formats run them all.
  const Case cases[] = {
      // 512x512 latents with guidance: [1, 64, 64, 4] scaled by an Euler/LMS model_input_scale
      // (1 / sqrt(sigma^2 + 1) for sigma 14.6) into both halves of the UNet batch.
      {64 * 64 * 4, 2, 0.0683f, 0, "SD latents, guided: vector path, two copies"},
      {2 * 16 * 16 * 4, 1, 1.0f, 0, "plain conversion, batch 2: vector path"},
      {1001, 3, 0.5f, 0, "1001 elements: scalar path, three copies"},
      {96, 2, 1.0f, 1, "views shifted by one element: scalar path"},
  };
  const std::vector<float> edges = conversion_edge_values<T>();
  for (const Case& k : cases) {
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    // sigma 8: the magnitudes of early-step latents (init_noise_sigma is 14.6 at most), then the
    // edge values above; each rounding is checked against lib/core/half.hpp's exact
    // round-to-nearest-even (f32_to_f16 or f32_to_bf16).
    std::mt19937_64 rng(41);
    std::normal_distribution<float> dist(0.0f, 8.0f);
    std::vector<float> x(static_cast<std::size_t>(k.n));
    for (float& v : x) v = dist(rng);
    std::copy(edges.begin(), edges.end(), x.begin());
    DeviceInput<float> d_in(x, k.offset);
    GuardedOutput<T> d_out(std::size_t(k.n) * std::size_t(k.copies), k.offset);
    cuda::convert_f32_to_storage<T>(
        {.in = d_in.view("in"), .out = d_out.view(), .n = k.n, .copies = k.copies, .scale = k.scale});
    const std::vector<std::uint16_t> got = d_out.template result<std::uint16_t>();
    std::size_t wrong = 0;
    for (int copy = 0; copy < k.copies; ++copy)
      for (std::size_t i = 0; i < x.size(); ++i)
        wrong += got[std::size_t(copy) * x.size() + i] != Format<T>::bits(x[i] * k.scale);
    CHECK(wrong == 0);
  }
}

TEMPLATE_TEST_CASE("16-bit storage -> fp32 is exact", "[cuda][layout]", __half, __nv_bfloat16) {
  using T = TestType;
  struct Case {
    std::int64_t n;
    std::size_t offset;
    Formats formats;
    const char* why;
  };
  const Case cases[] = {
      {512 * 512 * 3, 0, Formats::Fp16Only, "a 512x512 RGB VAE output: vector path"},
      {64 * 64 * 3, 0, Formats::Both, "a 64x64 RGB image: vector path"},
      {1001, 0, Formats::Both, "1001 elements: scalar path"},
      {64, 1, Formats::Both, "views shifted by one element: scalar path"},
  };
  for (const Case& k : cases) {
    if (!runs_in<T>(k.formats)) continue;
    const std::string what = std::string(k.why) + ", " + Format<T>::kName;
    CAPTURE(what);
    // N(0, 4^2) draws, then every finite value of T's largest binade, its smallest normal and
    // subnormal binades, and signed zeros: the conversion is exact for all of them.
    std::vector<float> x = randn<T>(std::size_t(k.n), 51, 4.0f);
    std::size_t e = 0;
    const auto put = [&](std::uint16_t bits) {
      if (e < x.size() && std::isfinite(Format<T>::value(bits))) x[e++] = Format<T>::value(bits);
    };
    for (std::uint16_t sign : {0x0000, 0x8000})
      for (std::uint16_t low = 0; low < 4; ++low) {
        put(std::uint16_t(sign | low));                                                  // zero and subnormals
        put(std::uint16_t(sign | ((Format<T>::bits(float(Format<T>::kMinNormal))) + low)));  // smallest normals
        put(std::uint16_t(sign | (0x7bff - low)));  // fp16's largest finite values (bf16: 2^120 and below)
        put(std::uint16_t(sign | (0x7f7f - low)));  // bf16's largest finite values (fp16: NaN, skipped)
      }
    DeviceInput<T> d_in(to_bits<T>(x), k.offset);
    GuardedOutput<float> d_out(std::size_t(k.n), k.offset);
    cuda::convert_storage_to_f32<T>({.in = d_in.view("in"), .out = d_out.view(), .n = k.n});
    CHECK(count_differences(d_out.template result<float>(), x) == 0);
  }
}

}  // namespace sdgen::test::layout_test
