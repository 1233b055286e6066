#include "lib/core/rng.hpp"

#include <bit>
#include <cfloat>
#include <cmath>

namespace sdgen {

namespace {

// avx_mathfun.h log_ps for one lane; x > 0.
float cephes_logf(float x) {
  x = std::fmax(x, FLT_MIN);
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  float e = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 127);
  e = e + 1.0f;
  const float m = std::bit_cast<float>((bits & ~0x7f800000u) | 0x3f000000u);
  if (m < 0.707106781186547524f) {
    e = e - 1.0f;
    x = (m - 1.0f) + m;
  } else {
    x = m - 1.0f;
  }
  const float z = x * x;
  float y = 7.0376836292e-2f;
  for (float p : {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                  -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f})
    y = std::fmaf(y, x, p);
  y = std::fmaf(y * x, z, e * -2.12194440e-4f);
  y = std::fmaf(-z, 0.5f, y);
  x = x + y;
  return std::fmaf(e, 0.693359375f, x);
}

// avx_mathfun.h sincos_ps for one lane; theta >= 0.
void cephes_sincosf(float theta, float& sin_out, float& cos_out) {
  int j = static_cast<int>(theta * 1.27323954473516f);
  j = (j + 1) & ~1;
  const float y = static_cast<float>(j);
  float x = std::fmaf(y, -0.78515625f, theta);
  x = std::fmaf(y, -2.4187564849853515625e-4f, x);
  x = std::fmaf(y, -3.77489497744594108e-8f, x);
  const float z = x * x;
  float c = std::fmaf(std::fmaf(2.443315711809948e-5f, z, -1.388731625493765e-3f), z,
                      4.166664568298827e-2f);
  c = std::fmaf(c * z, z, -(z * 0.5f));
  c = c + 1.0f;
  float s = std::fmaf(std::fmaf(-1.9515295891e-4f, z, 8.3321608736e-3f), z, -1.6666654611e-1f);
  s = std::fmaf(s * z, x, x);
  if ((j & 2) != 0) std::swap(s, c);
  sin_out = (j & 4) != 0 ? -s : s;
  cos_out = ((~(j - 2)) & 4) != 0 ? -c : c;
}

// torch's normal_fill_16: 8 Box-Muller pairs over d[0..15], which hold uniforms in [0, 1).
void box_muller_16(float* d) {
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(-2.0f * cephes_logf(u1));
    const float theta = 6.2831855f * u2;
    float s = 0, c = 0;
    cephes_sincosf(theta, s, c);
    d[j] = radius * c;
    d[j + 8] = radius * s;
  }
}

}  // namespace

double TorchCpuGenerator::next_normal_double() {
  if (cached_normal_) {
    const double v = *cached_normal_;
    cached_normal_.reset();
    return v;
  }
  auto uniform53 = [this] {
    const std::uint64_t hi = next_u32();
    const std::uint64_t lo = next_u32();
    return static_cast<double>(((hi << 32) | lo) & ((std::uint64_t(1) << 53) - 1)) * 0x1p-53;
  };
  const double u1 = uniform53();
  const double u2 = uniform53();
  const double r = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * M_PI * u1;
  cached_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

void TorchCpuGenerator::randn(std::span<float> out) {
  const std::size_t n = out.size();
  if (n < 16) {
    for (auto& v : out) v = static_cast<float>(next_normal_double());
    return;
  }
  auto uniform24 = [this] { return static_cast<float>(next_u32() & 0xFFFFFFu) * 0x1p-24f; };
  for (auto& v : out) v = uniform24();
  for (std::size_t i = 0; i + 16 <= n; i += 16) box_muller_16(out.data() + i);
  if (n % 16 != 0) {
    float* tail = out.data() + (n - 16);
    for (int k = 0; k < 16; ++k) tail[k] = uniform24();
    box_muller_16(tail);
  }
}

}  // namespace sdgen
