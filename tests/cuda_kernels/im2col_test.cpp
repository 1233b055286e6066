// The im2col kernel (kernels/cuda/im2col.cuh), in both storage formats (T = __half,
// __nv_bfloat16), against a plain loop over the definition: row r of the matrix is output pixel
// row0 + r's patch, column (ky*KW + kx)*Cin + ci, zero in the padding. A copy, so the check is
// exact in either format (every element equal, the sign of zero included: no tolerance, no bf16
// bound to state), plus: the columns between KH*KW*Cin and the row stride keep their poison (the
// GEMM never reads them, the kernel never writes them), and so do the guard bands around the matrix.
//
// The inputs are N(0, 1) draws times powers of two spread over T's exponent range (2^-12..2^12 in
// fp16, 2^-124..2^124 in bf16), rounded to T: most bf16 inputs are then not fp16 values, so a
// kernel that moved bf16 data through an fp16 (or any float) conversion would fail here.
//
// Each case says which path it takes (8 elements per access when Cin and the row stride are
// multiples of 8 and both views 16-byte aligned, else 1) and which geometry it covers. fp16 runs
// every case; bf16 the ones marked, which cover both paths, the misaligned matrix, padding, stride,
// chunks across images and a non-square kernel.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda/im2col.cuh"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"

namespace sdgen::test::im2col_test {

using half_tensors::Guarded;

struct Im2colCase {
  std::int64_t batch, h, w, cin, kh, kw;
  int stride, padding;
  std::int64_t row0, rows;  // rows < 0: every output pixel from row0 on
  std::int64_t row_pad;     // elements past KH*KW*Cin in each row
  std::size_t misalign;     // of the matrix
  bool bf16;                // run in bf16 too
  const char* why;
};

// n values of T over most of its exponent range: randn draws times 2^e, e cycling through
// [-span, span] with a stride coprime to its length (cheap: the UNet case draws 2.6M inputs), span
// = the smallest normal's exponent less 2 (so |x| < 5 * 2^span stays finite); rounded to T again,
// since the smallest land among T's subnormals.
template <class T>
std::vector<float> spread_values(std::size_t n, std::uint64_t seed) {
  const int span = -std::ilogb(Format<T>::kMinNormal) - 2;
  const std::size_t count = std::size_t(2 * span + 1);  // 25 or 249: coprime to 7
  std::vector<float> scale(count);
  for (std::size_t e = 0; e < count; ++e) scale[e] = std::ldexp(1.0f, int(e) - span);
  std::vector<float> v = randn<T>(n, seed);
  for (std::size_t i = 0; i < n; ++i) v[i] = round_to<T>(v[i] * scale[(i * 7 + seed) % count]);
  return v;
}

TEMPLATE_TEST_CASE("im2col: patches of output pixels, any stride, padding and chunk", "[cuda][gemm]", __half,
                   __nv_bfloat16) {
  using T = TestType;
  const Im2colCase cases[] = {
      // The UNet's 64x64x320 3x3 conv at batch 2, eight rows around the boundary between the two
      // images (pixel 4096): real sizes, 8-wide, every tap of a row at the image's last row and
      // the next image's first, where the padding is.
      {2, 64, 64, 320, 3, 3, 1, 1, 4092, 8, 0, 0, false, "UNet 64x64x320 3x3, rows 4092..4099: 8-wide"},
      // A whole small batch in one chunk: every border pixel.
      {2, 7, 9, 16, 3, 3, 1, 1, 0, -1, 0, 0, false, "[2, 7, 9, 16] 3x3 padding 1, all rows: 8-wide"},
      // A chunk from the middle of image 0 into image 1 (63 pixels per image).
      {2, 7, 9, 16, 3, 3, 1, 1, 50, 40, 0, 0, true, "rows 50..89 across images: 8-wide"},
      // Downsample2D: stride 2, padding 1, odd input (ho = 5).
      {1, 9, 9, 8, 3, 3, 2, 1, 0, -1, 0, 0, true, "stride 2 padding 1: 8-wide"},
      // The VAE's conv_in (Cin = 3: K = 27 in rows of 32) and the UNet's (Cin = 4: K = 36 in rows
      // of 40): 1-wide, the padding columns untouched.
      {1, 6, 5, 3, 3, 3, 1, 1, 0, -1, 5, 0, true, "Cin = 3, rows of 32: 1-wide"},
      {2, 5, 6, 4, 3, 3, 1, 1, 0, -1, 4, 0, false, "Cin = 4, rows of 40: 1-wide"},
      // Cin = 16 but a row stride of 147: 1-wide.
      {1, 5, 5, 16, 3, 3, 1, 1, 0, -1, 3, 0, false, "row stride not a multiple of 8: 1-wide"},
      // Cin = 16 on a matrix one element off alignment: 1-wide.
      {1, 5, 5, 16, 3, 3, 1, 1, 0, -1, 0, 1, true, "misaligned matrix: 1-wide"},
      // 1x1 with stride 2 (every other pixel), and a 1x3 kernel with padding 2.
      {1, 7, 7, 8, 1, 1, 2, 0, 0, -1, 0, 0, false, "1x1 stride 2: 8-wide"},
      {1, 4, 6, 8, 1, 3, 1, 2, 3, 20, 0, 0, true, "1x3 padding 2, rows 3..22: 8-wide"},
  };
  for (const Im2colCase& k : cases) {
    if (std::is_same_v<T, __nv_bfloat16> && !k.bf16) continue;
    INFO(Format<T>::kName << ": " << k.why);
    Conv2dGeometry g{.batch = k.batch, .h = k.h, .w = k.w, .cin = k.cin, .cout = 1, .kh = k.kh, .kw = k.kw,
                     .stride = k.stride, .padding = k.padding};
    g.ho = (g.h + 2 * g.padding - g.kh) / g.stride + 1;
    g.wo = (g.w + 2 * g.padding - g.kw) / g.stride + 1;
    const std::int64_t rows = k.rows >= 0 ? k.rows : g.batch * g.ho * g.wo - k.row0;
    const std::int64_t cols = g.kh * g.kw * g.cin, stride = cols + k.row_pad;
    const std::vector<float> x = spread_values<T>(std::size_t(g.batch * g.h * g.w * g.cin), 900 + std::uint64_t(g.cin));
    Guarded<T> d_x(x), d_col(std::size_t(rows * stride), k.misalign);
    cuda::launch_im2col<T>({.x = d_x.input("x"),
                            .col = d_col.view("col"),
                            .geometry = g,
                            .row0 = k.row0,
                            .rows = rows,
                            .col_row_stride = stride});
    const std::vector<float> got = d_col.values();

    std::size_t wrong = 0, padding_written = 0, first_wrong = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t p = k.row0 + r;
      const std::int64_t b = p / (g.ho * g.wo), oy = p / g.wo % g.ho, ox = p % g.wo;
      for (std::int64_t c = 0; c < stride; ++c) {
        const float v = got[std::size_t(r * stride + c)];
        if (c >= cols) {
          padding_written += std::isnan(v) ? 0 : 1;
          continue;
        }
        const std::int64_t tap = c / g.cin, ci = c % g.cin, ky = tap / g.kw, kx = tap % g.kw;
        const std::int64_t iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx;
        const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        const float want = inside ? x[std::size_t(((b * g.h + iy) * g.w + ix) * g.cin + ci)] : 0.0f;
        if (!(v == want && std::signbit(v) == std::signbit(want))) {
          if (wrong == 0) first_wrong = std::size_t(r * stride + c);
          ++wrong;
        }
      }
    }
    INFO("elements that differ from the definition: " << wrong << " (first at " << first_wrong
                                                      << "); padding columns written: " << padding_written);
    CHECK(wrong == 0);
    CHECK(padding_written == 0);
  }
}

}  // namespace sdgen::test::im2col_test
