// The data-movement kernels of the CUDA backend: nearest upsampling to any size, channel
// concatenation, token embedding, the sinusoidal timestep embedding, and the fp32 <-> 16-bit
// conversions at the edges of the 16-bit network (latents into the UNet, images out of the VAE).
// Every launcher is a template on the storage type T (fp16 or bf16); the data-movement ops only
// move T's bits, so the two instantiations differ in the conversions alone.
//
// Algorithm and decomposition. Each op is one pass: every output element is written exactly once
// from elements it reads once, so the kernels are bound by memory bandwidth and their job is to
// keep loads and stores wide and coalesced, with no integer division that scales with the data.
//  * upsample, concat and embedding are "rows of chunks": an output row (one output image row,
//    one pixel, one token) is a run of chunks, each copied whole from one source. A 2D grid puts
//    rows on blockIdx.x (up to 2^31 - 1) and chunks within a row on threads, so the only
//    divisions are 32-bit ones inside a row (which pixel of the row, which chunk of the pixel)
//    and one per thread for the row's coordinates. A chunk is a uint4 (8 elements, 16 bytes: one
//    128-bit load and store per thread, the widest a thread can issue) when the channel counts
//    are multiples of 8 and every base pointer is 16-byte aligned, which is what the UNet always
//    gives (its channel counts are multiples of 32, its tensors come from the arena); otherwise a
//    chunk is one T and the same kernel runs on scalars. Consecutive threads take consecutive
//    chunks of the same row, so a warp reads and writes contiguous 512-byte runs whenever the
//    row is that long.
//  * the conversions are flat: 8 elements per thread (two 16-byte fp32 loads or one 16-bit load,
//    and the opposite stores) when the element count is a multiple of 8 and the pointers are
//    aligned, 1 otherwise. The scaled, repeated fp32 -> T conversion (the UNet input of a
//    guided step: the latents times model_input_scale, once per guidance half) reads each input
//    once and stores it `copies` times.
//  * timestep_embedding is [B, dim] with B at most a few dozen: one thread per output element.
// At SD sizes (a 64x64x640 upsample output of a guided step is 655,360 uint4 chunks, the smallest
// concat 2x8x8x2560 is 40,960) every launch has hundreds to thousands of 256-thread blocks: enough
// for 132 SMs.
//
// Precision. Data movement is exact. The nearest source index is torch's, computed in fp32 as
// torch does (float scale = H / Ho, floor(dst * scale), clamped), so sizes that are not multiples
// of 2 pick the same rows as F.interpolate. The timestep embedding follows the CPU backend's fp32
// formula operation by operation (constants computed on the host exactly as it does) and rounds
// to T once at the end; the GPU's expf/sinf/cosf are within 2 ulp of libm's, far below that
// rounding. Conversions round to nearest even, as torch's .half() does.
//
// Ids outside the table: a kernel cannot throw, and reading table row `id` for a bad id would read
// outside the table. So the embedding kernel writes a zero row for it and records the position in
// an error flag the caller gave; the backend reads the flag and raises the same error the CPU
// backend would.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/cuda/device_api.cuh"

namespace sdgen::cuda {

namespace layout {

inline constexpr int kBlockThreads = 256;

// A run of 8 16-bit elements moved as one 16-byte vector, or a single element.
template <class Chunk>
inline constexpr int kChunkHalves = int(sizeof(Chunk) / 2);

template <class T>
bool aligned16(GlobalPtr<T> p) {
  return reinterpret_cast<std::uintptr_t>(p.raw()) % 16 == 0;
}

// Launches `rows` rows of `row_items` threads each: blockDim.x covers items of one row (a whole
// number of warps, at most the block), blockDim.y stacks rows in the block when rows are short.
// An empty output launches nothing.
template <class P>
void launch_rows(const Kernel<P>& kernel, std::int64_t rows, std::int64_t row_items, Stream stream, const P& p) {
  if (rows == 0 || row_items == 0) return;
  const int x = row_items >= kBlockThreads ? kBlockThreads : int((row_items + 31) / 32 * 32);
  const int y = kBlockThreads / x;
  launch(kernel,
         {.grid = dim3(unsigned((rows + y - 1) / y), unsigned((row_items + x - 1) / x)),
          .block = dim3(unsigned(x), unsigned(y)),
          .stream = stream},
         p);
}

// The row and the item within it of this thread under rows_config; false past either edge.
__device__ __forceinline__ bool row_item(int rows, int row_items, int& row, int& item) {
  const std::int64_t r = std::int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  item = int(blockIdx.y * blockDim.x + threadIdx.x);
  row = int(r);
  return r < rows && item < row_items;
}

// Launches one thread per item, in 1D.
template <class P>
void launch_flat(const Kernel<P>& kernel, std::int64_t items, Stream stream, const P& p) {
  if (items == 0) return;
  launch(kernel,
         {.grid = unsigned((items + kBlockThreads - 1) / kBlockThreads), .block = kBlockThreads, .stream = stream}, p);
}

__device__ __forceinline__ std::int64_t flat_index() { return std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }

// ---- upsample_nearest

template <class Chunk>
struct UpsampleNearestParams {
  GlobalPtr<const Chunk> x;  // [batch, h, w, pixel_chunks]
  GlobalPtr<Chunk> out;      // [batch, ho, wo, pixel_chunks]
  int h, w, ho, wo, pixel_chunks;
  float scale_h, scale_w;  // float(h) / float(ho), float(w) / float(wo)
  int rows;                // batch * ho
};

// torch's nearest source index: the scale in fp32, the product floored, clamped to the last row.
__device__ __forceinline__ int nearest_source(int dst, float scale, int in_size) {
  const int src = int(floorf(float(dst) * scale));
  return src < in_size - 1 ? src : in_size - 1;
}

template <class Chunk>
__global__ void __launch_bounds__(kBlockThreads) upsample_nearest_kernel(UpsampleNearestParams<Chunk> p) {
  int row = 0, item = 0;  // row: b * ho + yo; item: xo * pixel_chunks + chunk
  if (!row_item(p.rows, p.wo * p.pixel_chunks, row, item)) return;
  const int b = row / p.ho, yo = row % p.ho;
  const int xo = item / p.pixel_chunks, chunk = item % p.pixel_chunks;
  const int ys = nearest_source(yo, p.scale_h, p.h), xs = nearest_source(xo, p.scale_w, p.w);
  p.out[(std::int64_t(row) * p.wo + xo) * p.pixel_chunks + chunk] =
      p.x[((std::int64_t(b) * p.h + ys) * p.w + xs) * p.pixel_chunks + chunk];
}

// ---- concat_channels

template <class Chunk>
struct ConcatChannelsParams {
  GlobalPtr<const Chunk> a;  // [pixels, a_chunks]
  GlobalPtr<const Chunk> b;  // [pixels, b_chunks]
  GlobalPtr<Chunk> out;      // [pixels, a_chunks + b_chunks]
  int pixels, a_chunks, b_chunks;
};

template <class Chunk>
__global__ void __launch_bounds__(kBlockThreads) concat_channels_kernel(ConcatChannelsParams<Chunk> p) {
  const int out_chunks = p.a_chunks + p.b_chunks;
  int pixel = 0, chunk = 0;
  if (!row_item(p.pixels, out_chunks, pixel, chunk)) return;
  p.out[std::int64_t(pixel) * out_chunks + chunk] = chunk < p.a_chunks
                                                        ? p.a[std::int64_t(pixel) * p.a_chunks + chunk]
                                                        : p.b[std::int64_t(pixel) * p.b_chunks + (chunk - p.a_chunks)];
}

// ---- embedding

template <class Chunk>
struct EmbeddingParams {
  GlobalPtr<const std::int32_t> ids;  // [tokens]
  GlobalPtr<const Chunk> table;       // [vocab, row_chunks]
  GlobalPtr<Chunk> out;               // [tokens, row_chunks]
  GlobalPtr<int> error;               // [1]
  int tokens, vocab, row_chunks;
};

template <class Chunk>
__global__ void __launch_bounds__(kBlockThreads) embedding_kernel(EmbeddingParams<Chunk> p) {
  int token = 0, chunk = 0;
  if (!row_item(p.tokens, p.row_chunks, token, chunk)) return;
  const std::int32_t id = p.ids[token];
  Chunk value{};  // zeros, for an id outside the table
  if (id >= 0 && id < p.vocab) {
    value = p.table[std::int64_t(id) * p.row_chunks + chunk];
  } else if (chunk == 0) {
    atomicMax(p.error, token + 1);
  }
  p.out[std::int64_t(token) * p.row_chunks + chunk] = value;
}

// ---- timestep_embedding

template <class T>
struct TimestepEmbeddingParams {
  GlobalPtr<const float> t;  // [batch]
  GlobalPtr<T> out;          // [batch, dim]
  int batch, dim, half_dim;
  float neg_log_max_period;  // -ln(max_period), rounded to fp32 as the CPU backend does
  float denominator;         // half_dim - freq_shift, likewise
  bool cos_first;            // flip_sin_to_cos
};

template <class T>
__global__ void __launch_bounds__(kBlockThreads) timestep_embedding_kernel(TimestepEmbeddingParams<T> p) {
  int b = 0, j = 0;
  if (!row_item(p.batch, p.dim, b, j)) return;
  float value = 0.0f;  // the odd dim's pad column
  if (j < 2 * p.half_dim) {
    const bool first_half = j < p.half_dim;
    const int i = first_half ? j : j - p.half_dim;
    const float exponent = (p.neg_log_max_period * float(i)) / p.denominator;
    const float arg = p.t[b] * expf(exponent);
    value = first_half == p.cos_first ? cosf(arg) : sinf(arg);
  }
  p.out[std::int64_t(b) * p.dim + j] = from_float<T>(value);
}

// ---- conversions

enum class Width { Vector8, Scalar };

template <class T>
struct F32ToStorageParams {
  GlobalPtr<const float> in;  // [n]
  GlobalPtr<T> out;           // [copies, n]
  std::int64_t n;
  int copies;
  float scale;
};

template <class T>
__device__ __forceinline__ unsigned scaled_pair(unsigned lo_bits, unsigned hi_bits, float scale) {
  return pack2(from_float<T>(__uint_as_float(lo_bits) * scale), from_float<T>(__uint_as_float(hi_bits) * scale));
}

template <Width W, class T>
__global__ void __launch_bounds__(kBlockThreads) f32_to_storage_kernel(F32ToStorageParams<T> p) {
  const std::int64_t i = flat_index();
  if constexpr (W == Width::Vector8) {
    if (i >= p.n / 8) return;
    const GlobalPtr<const uint4> in = p.in.template reinterpret<const uint4>();
    const uint4 lo = in[2 * i], hi = in[2 * i + 1];
    const uint4 halves{scaled_pair<T>(lo.x, lo.y, p.scale), scaled_pair<T>(lo.z, lo.w, p.scale),
                       scaled_pair<T>(hi.x, hi.y, p.scale), scaled_pair<T>(hi.z, hi.w, p.scale)};
    const GlobalPtr<uint4> out = p.out.template reinterpret<uint4>();
    for (int copy = 0; copy < p.copies; ++copy) out[copy * (p.n / 8) + i] = halves;
  } else {
    if (i >= p.n) return;
    const T h = from_float<T>(p.in[i] * p.scale);
    for (int copy = 0; copy < p.copies; ++copy) p.out[copy * p.n + i] = h;
  }
}

template <class T>
struct StorageToF32Params {
  GlobalPtr<const T> in;  // [n]
  GlobalPtr<float> out;   // [n]
  std::int64_t n;
};

template <class T>
__device__ __forceinline__ unsigned low_as_float_bits(unsigned pair) {
  return __float_as_uint(low_float<T>(pair));
}
template <class T>
__device__ __forceinline__ unsigned high_as_float_bits(unsigned pair) {
  return __float_as_uint(high_float<T>(pair));
}

template <Width W, class T>
__global__ void __launch_bounds__(kBlockThreads) storage_to_f32_kernel(StorageToF32Params<T> p) {
  const std::int64_t i = flat_index();
  if constexpr (W == Width::Vector8) {
    if (i >= p.n / 8) return;
    const uint4 h = p.in.template reinterpret<const uint4>()[i];
    const GlobalPtr<uint4> out = p.out.template reinterpret<uint4>();
    out[2 * i] = uint4{low_as_float_bits<T>(h.x), high_as_float_bits<T>(h.x), low_as_float_bits<T>(h.y),
                       high_as_float_bits<T>(h.y)};
    out[2 * i + 1] = uint4{low_as_float_bits<T>(h.z), high_as_float_bits<T>(h.z), low_as_float_bits<T>(h.w),
                           high_as_float_bits<T>(h.w)};
  } else {
    if (i >= p.n) return;
    p.out[i] = to_float(T(p.in[i]));
  }
}

}  // namespace layout

// ---- launchers. Shapes are the backend's (kernels/op_checks validates them first); every size
// is handled, the vector path being taken only where it is exact and aligned.

// x [batch, h, w, c] -> out [batch, ho, wo, c], torch's F.interpolate(size=(ho, wo), "nearest").
template <class T>
struct UpsampleNearestLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<T> out;
  std::int64_t batch, h, w, c, ho, wo;
  Stream stream = nullptr;
};

template <class Chunk, class T>
void launch_upsample_nearest(const UpsampleNearestLaunch<T>& l) {
  const int pixel_chunks = int(l.c) / layout::kChunkHalves<Chunk>;
  const layout::UpsampleNearestParams<Chunk> p{.x = l.x.template reinterpret<const Chunk>(),
                                               .out = l.out.template reinterpret<Chunk>(),
                                               .h = int(l.h),
                                               .w = int(l.w),
                                               .ho = int(l.ho),
                                               .wo = int(l.wo),
                                               .pixel_chunks = pixel_chunks,
                                               .scale_h = float(l.h) / float(l.ho),
                                               .scale_w = float(l.w) / float(l.wo),
                                               .rows = int(l.batch * l.ho)};
  layout::launch_rows(SDGEN_KERNEL(layout::upsample_nearest_kernel<Chunk>), l.batch * l.ho, l.wo * pixel_chunks,
                      l.stream, p);
}

template <class T>
void upsample_nearest(const UpsampleNearestLaunch<T>& l) {
  if (l.c % 8 == 0 && layout::aligned16(l.x) && layout::aligned16(l.out))
    launch_upsample_nearest<uint4>(l);
  else
    launch_upsample_nearest<T>(l);
}

// a [pixels, ca] ++ b [pixels, cb] -> out [pixels, ca + cb] (pixels = batch * h * w).
template <class T>
struct ConcatChannelsLaunch {
  GlobalPtr<const T> a, b;
  GlobalPtr<T> out;
  std::int64_t pixels, ca, cb;
  Stream stream = nullptr;
};

template <class Chunk, class T>
void launch_concat_channels(const ConcatChannelsLaunch<T>& l) {
  constexpr int per = layout::kChunkHalves<Chunk>;
  const layout::ConcatChannelsParams<Chunk> p{.a = l.a.template reinterpret<const Chunk>(),
                                              .b = l.b.template reinterpret<const Chunk>(),
                                              .out = l.out.template reinterpret<Chunk>(),
                                              .pixels = int(l.pixels),
                                              .a_chunks = int(l.ca) / per,
                                              .b_chunks = int(l.cb) / per};
  layout::launch_rows(SDGEN_KERNEL(layout::concat_channels_kernel<Chunk>), l.pixels, (l.ca + l.cb) / per, l.stream, p);
}

template <class T>
void concat_channels(const ConcatChannelsLaunch<T>& l) {
  if (l.ca % 8 == 0 && l.cb % 8 == 0 && layout::aligned16(l.a) && layout::aligned16(l.b) && layout::aligned16(l.out))
    launch_concat_channels<uint4>(l);
  else
    launch_concat_channels<T>(l);
}

// ids [tokens] (int32) rows of table [vocab, c] -> out [tokens, c]. `error` is one int the caller
// has zeroed; a token whose id is outside [0, vocab) gets a zero row, and `error` ends as 1 + the
// largest such token position (0: every id was valid).
template <class T>
struct EmbeddingLaunch {
  GlobalPtr<const std::int32_t> ids;
  GlobalPtr<const T> table;
  GlobalPtr<T> out;
  GlobalPtr<int> error;
  std::int64_t tokens, vocab, c;
  Stream stream = nullptr;
};

template <class Chunk, class T>
void launch_embedding(const EmbeddingLaunch<T>& l) {
  const int row_chunks = int(l.c) / layout::kChunkHalves<Chunk>;
  const layout::EmbeddingParams<Chunk> p{.ids = l.ids,
                                         .table = l.table.template reinterpret<const Chunk>(),
                                         .out = l.out.template reinterpret<Chunk>(),
                                         .error = l.error,
                                         .tokens = int(l.tokens),
                                         .vocab = int(l.vocab),
                                         .row_chunks = row_chunks};
  layout::launch_rows(SDGEN_KERNEL(layout::embedding_kernel<Chunk>), l.tokens, row_chunks, l.stream, p);
}

template <class T>
void embedding(const EmbeddingLaunch<T>& l) {
  if (l.c % 8 == 0 && layout::aligned16(l.table) && layout::aligned16(l.out))
    launch_embedding<uint4>(l);
  else
    launch_embedding<T>(l);
}

// t [batch] (fp32) -> out [batch, dim] (T), TimestepEmbeddingArgs as in kernels/backend.hpp.
template <class T>
struct TimestepEmbeddingLaunch {
  GlobalPtr<const float> t;
  GlobalPtr<T> out;
  std::int64_t batch, dim;
  TimestepEmbeddingArgs args;
  Stream stream = nullptr;
};

template <class T>
void timestep_embedding(const TimestepEmbeddingLaunch<T>& l) {
  const std::int64_t half_dim = l.dim / 2;
  // The two constants exactly as the CPU backend rounds them (kernels/cpu/elementwise.cpp).
  const layout::TimestepEmbeddingParams<T> p{
      .t = l.t,
      .out = l.out,
      .batch = int(l.batch),
      .dim = int(l.dim),
      .half_dim = int(half_dim),
      .neg_log_max_period = static_cast<float>(-std::log(static_cast<double>(l.args.max_period))),
      .denominator = static_cast<float>(static_cast<double>(half_dim) - static_cast<double>(l.args.freq_shift)),
      .cos_first = l.args.flip_sin_to_cos};
  layout::launch_rows(SDGEN_KERNEL(layout::timestep_embedding_kernel<T>), l.batch, l.dim, l.stream, p);
}

// out[k * n + i] = T(in[i] * scale) for k < copies: fp32 -> T (scale 1, one copy), or the UNet
// input of a step (the latents times model_input_scale, one copy per guidance half).
template <class T>
struct F32ToStorageLaunch {
  GlobalPtr<const float> in;  // [n]
  GlobalPtr<T> out;           // [copies * n]
  std::int64_t n;
  int copies = 1;
  float scale = 1.0f;
  Stream stream = nullptr;
};

template <class T>
void convert_f32_to_storage(const F32ToStorageLaunch<T>& l) {
  const layout::F32ToStorageParams<T> p{.in = l.in, .out = l.out, .n = l.n, .copies = l.copies, .scale = l.scale};
  if (l.n % 8 == 0 && layout::aligned16(l.in) && layout::aligned16(l.out))
    layout::launch_flat(SDGEN_KERNEL(layout::f32_to_storage_kernel<layout::Width::Vector8, T>), l.n / 8, l.stream, p);
  else
    layout::launch_flat(SDGEN_KERNEL(layout::f32_to_storage_kernel<layout::Width::Scalar, T>), l.n, l.stream, p);
}

// out[i] = float(in[i]).
template <class T>
struct StorageToF32Launch {
  GlobalPtr<const T> in;  // [n]
  GlobalPtr<float> out;   // [n]
  std::int64_t n;
  Stream stream = nullptr;
};

template <class T>
void convert_storage_to_f32(const StorageToF32Launch<T>& l) {
  const layout::StorageToF32Params<T> p{.in = l.in, .out = l.out, .n = l.n};
  if (l.n % 8 == 0 && layout::aligned16(l.in) && layout::aligned16(l.out))
    layout::launch_flat(SDGEN_KERNEL(layout::storage_to_f32_kernel<layout::Width::Vector8, T>), l.n / 8, l.stream, p);
  else
    layout::launch_flat(SDGEN_KERNEL(layout::storage_to_f32_kernel<layout::Width::Scalar, T>), l.n, l.stream, p);
}

}  // namespace sdgen::cuda
