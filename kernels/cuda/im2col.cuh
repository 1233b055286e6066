// im2col for the GEMM conv path (gemm_plan.hpp): the NHWC input's patches as the rows of a 16-bit
// matrix, for a chunk of output pixels.
//
// Row r of the matrix is output pixel p = row0 + r, counted over B*Ho*Wo in NHWC order (b, oy, ox).
// Its KH*KW*Cin columns are the patch under that pixel in the weight's OHWI order: column
// (ky*KW + kx)*Cin + ci holds x[b, oy*stride - padding + ky, ox*stride - padding + kx, ci], or 0
// where the tap falls in the zero padding. So the conv is col [rows, KH*KW*Cin] times the OHWI
// weight seen as [Cout, KH*KW*Cin], transposed. Columns from KH*KW*Cin up to the row stride (the
// plan pads rows to 8 halves) are left unwritten: the GEMM never reads them.
//
// A pure copy, bound by memory bandwidth: each tap's Cin halves are contiguous in x and in the row,
// so a thread moves 8 halves (one 16-byte load and store) per step when Cin, the row stride and both
// pointers allow it, else 1 (conv_in's Cin of 4, the VAE's 3); the grid-stride loop over (row,
// vector) items is elementwise.cuh's, so a warp writes consecutive vectors of a row and reads, per
// tap, consecutive vectors of one input pixel. Finding an item's pixel and tap takes a handful of
// 64-bit divisions per 16 bytes, which at a few instructions per byte still hides under the memory
// traffic (by arithmetic, as in elementwise.cuh; not yet measured on a GPU). Values are copied as
// bits: the result is exact.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_api.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/op_checks.hpp"

namespace sdgen::cuda {

// ---- kernels

template <class T>
struct Im2colParams {
  GlobalPtr<const T> x;  // [B, H, W, Cin]
  GlobalPtr<T> col;      // rows of col_row_stride
  std::int64_t h = 0, w = 0, cin = 0;
  std::int64_t kw = 0;
  std::int64_t ho = 0, wo = 0;
  std::int64_t stride = 1, padding = 0;
  std::int64_t row0 = 0, rows = 0;
  std::int64_t k = 0;  // KH*KW*Cin
  std::int64_t col_row_stride = 0;
};

template <int kVec, class T>
__global__ void __launch_bounds__(kElementwiseThreads) im2col_nhwc_kernel(Im2colParams<T> p) {
  const std::int64_t per_row = p.k / kVec;  // kVec divides Cin on the vector path
  const std::int64_t items = p.rows * per_row;
  for (std::int64_t item = grid_thread_index(); item < items; item += grid_threads()) {
    const std::int64_t r = item / per_row;
    const std::int64_t c = (item - r * per_row) * kVec;
    const std::int64_t tap = c / p.cin;
    const std::int64_t ci = c - tap * p.cin;
    const std::int64_t ky = tap / p.kw;
    const std::int64_t kx = tap - ky * p.kw;
    const std::int64_t pixel = p.row0 + r;
    const std::int64_t image_pixels = p.ho * p.wo;
    const std::int64_t b = pixel / image_pixels;
    const std::int64_t oy = (pixel - b * image_pixels) / p.wo;
    const std::int64_t ox = pixel - b * image_pixels - oy * p.wo;
    const std::int64_t iy = oy * p.stride - p.padding + ky;
    const std::int64_t ix = ox * p.stride - p.padding + kx;
    const bool inside = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
    const std::int64_t from = ((b * p.h + iy) * p.w + ix) * p.cin + ci;
    const std::int64_t to = r * p.col_row_stride + c;
    if constexpr (kVec == kHalvesPerVector) {
      uint4 v{};  // zeros where the tap falls in the padding
      if (inside) v = (p.x + from).template reinterpret<const uint4>()[0];
      (p.col + to).template reinterpret<uint4>()[0] = v;
    } else {
      p.col[to] = inside ? T(p.x[from]) : storage_from_bits<T>(0);
    }
  }
}

// ---- launcher

// col[r, :KH*KW*Cin] = the patch of x under output pixel row0 + r, r in [0, rows) (see the top of
// the file); x [B, H, W, Cin] contiguous; col holds rows rows of col_row_stride >= KH*KW*Cin halves
// and does not overlap x. Output pixels row0 .. row0 + rows - 1 must lie in [0, B*Ho*Wo).
template <class T>
struct Im2colLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<T> col;
  Conv2dGeometry geometry;
  std::int64_t row0 = 0, rows = 0;
  std::int64_t col_row_stride = 0;
  Stream stream = nullptr;
};

template <class T>
void launch_im2col(const Im2colLaunch<T>& l) {
  const Conv2dGeometry& g = l.geometry;
  if (l.rows == 0) return;
  const Im2colParams<T> p{.x = l.x,
                       .col = l.col,
                       .h = g.h,
                       .w = g.w,
                       .cin = g.cin,
                       .kw = g.kw,
                       .ho = g.ho,
                       .wo = g.wo,
                       .stride = g.stride,
                       .padding = g.padding,
                       .row0 = l.row0,
                       .rows = l.rows,
                       .k = g.kh * g.kw * g.cin,
                       .col_row_stride = l.col_row_stride};
  // Every tap's Cin halves, in x and in a row, must start on a 16-byte boundary.
  const bool vectors = g.cin % kHalvesPerVector == 0 && l.col_row_stride % kHalvesPerVector == 0 &&
                       vector_aligned(l.x) && vector_aligned(l.col);
  with_vector_width(vectors, [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    launch(SDGEN_KERNEL(im2col_nhwc_kernel<kVec, T>),
           {.grid = elementwise_blocks(l.rows * (p.k / kVec)), .block = kElementwiseThreads, .stream = l.stream}, p);
  });
}

}  // namespace sdgen::cuda
