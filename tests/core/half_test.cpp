// fp16/bf16 conversions against values fixed by the IEEE formats (not by our code): exact
// representable values, the rounding boundary cases, subnormals, infinities and NaN.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "lib/core/half.hpp"

using namespace sdgen;

TEST_CASE("fp16 conversion follows IEEE binary16 with round-to-nearest-even", "[half]") {
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(-2.0f) == 0xc000);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);                 // largest finite half
  CHECK(f32_to_f16(65520.0f) == 0x7c00);                 // rounds up to inf
  CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);          // exactly halfway: ties to even (down)
  CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);      // halfway: ties to even (up)
  CHECK(f32_to_f16(0x1p-24f) == 0x0001);                 // smallest subnormal
  CHECK(f32_to_f16(0x1p-25f) == 0x0000);                 // halfway to 0: ties to even
  CHECK(f32_to_f16(3 * 0x1p-26f) == 0x0001);             // above halfway
  CHECK(f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK((f32_to_f16(std::nanf("")) & 0x7fff) > 0x7c00);
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0x0001) == 0x1p-24f);
  CHECK(f16_to_f32(0x8400) == -0x1p-14f);
  CHECK(std::isinf(f16_to_f32(0xfc00)));
  for (std::uint32_t h = 0; h < 0x7c00; ++h)  // every finite half survives the round trip
    REQUIRE(f32_to_f16(f16_to_f32(std::uint16_t(h))) == h);
}

TEST_CASE("bf16 conversion keeps the top 16 bits with round-to-nearest-even", "[half]") {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);          // halfway: ties to even (down)
  CHECK(f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);      // halfway: ties to even (up)
  CHECK(bf16_to_f32(0xc000) == -2.0f);
  CHECK((f32_to_bf16(std::nanf("")) & 0x7fff) > 0x7f80);
}
