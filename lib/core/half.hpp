// fp16 and bf16 <-> fp32 on the host, bit-exact with IEEE round-to-nearest-even, so that weights
// converted at load time equal what torch's .half()/.bfloat16() would give. Not a hot path: the
// CPU backend converts weights once at load, the GPU converts on the device.
#pragma once

#include <bit>
#include <cstdint>

namespace sdgen {

inline float bf16_to_f32(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);                                               // nearest even
  return std::uint16_t(x >> 16);
}

inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf/NaN
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return std::bit_cast<float>(sign);
  // Subnormal half: the value is mant * 2^-24, exact in float.
  const float v = float(mant) * 0x1p-24f;
  return (sign != 0u) ? -v : v;
}

inline std::uint16_t f32_to_f16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = std::uint16_t((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);  // NaN
  if (ax >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {
    // Result is subnormal (or zero): round |f| * 2^24 to an integer, nearest even.
    const float scaled = std::bit_cast<float>(ax) * 0x1p24f;
    const auto whole = std::uint32_t(scaled);
    const float frac = scaled - float(whole);
    std::uint32_t r = whole + ((frac > 0.5f || (frac == 0.5f && (whole & 1u))) ? 1u : 0u);
    return std::uint16_t(sign | r);
  }
  std::uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);      // nearest even on the 13 dropped bits
  return std::uint16_t(sign | (r >> 13));
}

}  // namespace sdgen
