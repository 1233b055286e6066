// The im2col kernel (kernels/cuda/im2col.cuh) against a plain loop over the definition: row r of
// the matrix is output pixel row0 + r's patch, column (ky*KW + kx)*Cin + ci, zero in the padding.
// A copy, so the check is exact (every element equal), plus: the columns between KH*KW*Cin and the
// row stride keep their poison (the GEMM never reads them, the kernel never writes them), and so do
// the guard bands around the matrix.
//
// Each case says which path it takes (8 halves per access when Cin and the row stride are
// multiples of 8 and both views 16-byte aligned, else 1) and which geometry it covers.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/im2col.cuh"
#include "tests/cuda_kernels/fp16_rule.hpp"
#include "tests/cuda_kernels/half_tensor_support.hpp"

namespace sdgen::test::im2col_test {

using half_tensors::GuardedHalves;

struct Im2colCase {
  std::int64_t batch, h, w, cin, kh, kw;
  int stride, padding;
  std::int64_t row0, rows;  // rows < 0: every output pixel from row0 on
  std::int64_t row_pad;     // halves past KH*KW*Cin in each row
  std::size_t misalign;     // of the matrix
  const char* why;
};

TEST_CASE("im2col: patches of output pixels, any stride, padding and chunk", "[cuda][gemm]") {
  const Im2colCase cases[] = {
      // The UNet's 64x64x320 3x3 conv at batch 2, eight rows around the boundary between the two
      // images (pixel 4096): real sizes, 8-wide, every tap of a row at the image's last row and
      // the next image's first, where the padding is.
      {2, 64, 64, 320, 3, 3, 1, 1, 4092, 8, 0, 0, "UNet 64x64x320 3x3, rows 4092..4099: 8-wide"},
      // A whole small batch in one chunk: every border pixel.
      {2, 7, 9, 16, 3, 3, 1, 1, 0, -1, 0, 0, "[2, 7, 9, 16] 3x3 padding 1, all rows: 8-wide"},
      // A chunk from the middle of image 0 into image 1 (63 pixels per image).
      {2, 7, 9, 16, 3, 3, 1, 1, 50, 40, 0, 0, "rows 50..89 across images: 8-wide"},
      // Downsample2D: stride 2, padding 1, odd input (ho = 5).
      {1, 9, 9, 8, 3, 3, 2, 1, 0, -1, 0, 0, "stride 2 padding 1: 8-wide"},
      // The VAE's conv_in (Cin = 3: K = 27 in rows of 32) and the UNet's (Cin = 4: K = 36 in rows
      // of 40): 1-wide, the padding columns untouched.
      {1, 6, 5, 3, 3, 3, 1, 1, 0, -1, 5, 0, "Cin = 3, rows of 32: 1-wide"},
      {2, 5, 6, 4, 3, 3, 1, 1, 0, -1, 4, 0, "Cin = 4, rows of 40: 1-wide"},
      // Cin = 16 but a row stride of 147: 1-wide.
      {1, 5, 5, 16, 3, 3, 1, 1, 0, -1, 3, 0, "row stride not a multiple of 8: 1-wide"},
      // Cin = 16 on a matrix one half off alignment: 1-wide.
      {1, 5, 5, 16, 3, 3, 1, 1, 0, -1, 0, 1, "misaligned matrix: 1-wide"},
      // 1x1 with stride 2 (every other pixel), and a 1x3 kernel with padding 2.
      {1, 7, 7, 8, 1, 1, 2, 0, 0, -1, 0, 0, "1x1 stride 2: 8-wide"},
      {1, 4, 6, 8, 1, 3, 1, 2, 3, 20, 0, 0, "1x3 padding 2, rows 3..22: 8-wide"},
  };
  for (const Im2colCase& k : cases) {
    CAPTURE(k.why);
    Conv2dGeometry g{.batch = k.batch, .h = k.h, .w = k.w, .cin = k.cin, .cout = 1, .kh = k.kh, .kw = k.kw,
                     .stride = k.stride, .padding = k.padding};
    g.ho = (g.h + 2 * g.padding - g.kh) / g.stride + 1;
    g.wo = (g.w + 2 * g.padding - g.kw) / g.stride + 1;
    const std::int64_t rows = k.rows >= 0 ? k.rows : g.batch * g.ho * g.wo - k.row0;
    const std::int64_t cols = g.kh * g.kw * g.cin, stride = cols + k.row_pad;
    const std::vector<float> x = randn_f16(std::size_t(g.batch * g.h * g.w * g.cin), 900 + std::uint64_t(g.cin));
    GuardedHalves d_x(x), d_col(std::size_t(rows * stride), k.misalign);
    cuda::launch_im2col({.x = d_x.input("x"),
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
        if (!(v == want)) {
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
