// conv2d as an implicit GEMM on tensor cores: the fast path of the CUDA backend's conv2d.
//
//   out = (conv(x, w) + bias + add_per_channel[b] + residual) * output_scale     (backend.hpp)
//   x [B, H, W, Cin], w [Cout, KH, KW, Cin] (OHWI), out / residual [B, Ho, Wo, Cout], all 16-bit (T: fp16 or bf16).
//
// The GEMM view. Row m of the output is pixel (b, ho, wo) = m over B*Ho*Wo, column n is output
// channel n, and the reduction runs over k = (kh, kw, cin), K = KH*KW*Cin. A (M x K) is im2col(x),
// never materialised: row m at k = (kh, kw, c) is x[b, ho*stride - pad + kh, wo*stride - pad + kw, c],
// or zero in the padding. B (K x N) is w itself: in OHWI every output channel is one contiguous
// row of K halves ordered (kh, kw, cin), exactly the "col" operand of mma.m16n8k16. The K loop
// walks (kh, kw) taps and, inside each tap, slices of 32 input channels; a tap whose Cin is not a
// multiple of 32 ends with a partly filled slice whose missing channels are zeros (only the test
// shapes have one: every SD conv that takes this path has Cin a multiple of 64).
//
// Decomposition. A CTA of 4 warps (2 x 2) computes a kBlockM x kBlockN tile of the output: 128x128
// (warp tiles 64x64), 128x64 (64x32) or 64x64 (32x32); a warp holds its tile as (64|32)/16 x
// (64|32)/8 mma.m16n8k16 accumulators in fp32 registers. A 64x64 warp tile loads 8 ldmatrix.x4 per
// 32 mma where a 64x32 one loads 6 per 16, which is what lets the big tile keep the tensor cores
// rather than shared memory busy (see the cost model below). Per K-slice of 32 channels every
// thread issues one 16-byte cp.async per A row and per B row it owns (4 threads per row, one
// 8-channel chunk each): an A chunk whose tap falls in the padding, whose pixel is past M or whose
// channels are past Cin, and a B chunk past Cout or Cin, is a zero-fill (src_bytes = 0, naming the
// view's first element, so no address outside the tensor is formed). The slices go through a
// 4-stage cp.async ring: 3 slices in flight per CTA while one is computed, so with 2 to 5 CTAs an
// SM, 6 to 15 slices of loads cover about 800 ns of DRAM latency. One commit group and one
// __syncthreads per slice: the barrier at the top of iteration i also proves every warp finished
// slice i - 1, whose stage the copies issued next overwrite. Fragments come from ldmatrix.x4 (A: 16
// pixels x 16 k; B: 16 channels x 16 k, rows = output channels, as the K tile of flash attention).
//
// Bank conflicts: XOR swizzle, not padding. A slice row is 32 halves = 64 bytes = 4 chunks of 16
// bytes, so two rows share one 128-byte line of banks, and an ldmatrix phase (8 rows, one chunk
// each) would hit only 2 of the line's 8 chunk positions (4-way conflict). Chunk c of row r is
// stored at chunk c ^ ((r >> 1) & 3) of its row: over 8 consecutive rows, (r & 1) picks the half
// line and (r >> 1) & 3 the chunk inside it, so the 8 addresses of every ldmatrix phase fall in 8
// different chunk positions, and so do the 8 cp.async stores of a phase (2 rows x 4 chunks). Every
// byte of a stage is written by its cp.async, which the emulator's read-before-write check sees.
//
// Epilogue. The accumulators go through shared memory (the pipeline's buffers, reused; rows of
// kBlockN + 4 floats) so that a thread then owns 8 consecutive channels of one pixel: bias,
// add_per_channel[b], the residual and the output are each one 16-byte access, coalesced along
// the channel row. Everything is added in fp32 and rounded to T once.
//
// Split-K. SD's 16x16 and 8x8 levels have few output tiles (2 x 8 x 8 pixels x 1280 channels is
// 20 tiles of 128x64) and long reductions (K = 11520 or 23040), so one CTA per tile would leave
// most of the 132 SMs idle, and at 8x8 the convolution is bound by streaming its weights (29.5 MB
// for a 1280 -> 1280 3x3), which takes many CTAs' loads in flight. There the launcher splits the
// K slices over `splits` CTAs per tile (blockIdx.z); each writes its fp32 partial tile to the
// workspace [splits, M, Cout], and a second, elementwise kernel sums the splits in a fixed order
// (deterministic) and applies the same epilogue.
//
// The launcher's choice (plan_conv2d_implicit) minimises an arithmetic model of an H100 SXM, not a
// measurement (no GPU was at hand; calibrate the constants in conv_detail with a profile). A
// CTA's K-slice costs max(mma / 0.65, shared bytes / 128) SM-cycles at 1.83 GHz: mma.sync issues
// at most 1 m16n8k16 per SM-cycle (989 dense TFLOP/s), of which sm_80-style kernels reach about
// 65% on an H100, and shared memory moves 128 bytes per cycle (ldmatrix reads plus the stage's
// cp.async writes). Per slice that is 256 mma vs 48 KB for 128x128 (mma-bound: 65% of peak),
// 128 vs 36 KB for 128x64 (shared-bound: 44%), 64 vs 24 KB for 64x64 (33%). The busiest SM runs
// ceil(ctas / SMs) CTAs; DRAM moves the unique bytes at min(3.35 TB/s, ctas x (3 stages in
// flight) / 800 ns); a split adds its partials' traffic and a 1.5 us launch. For SD 1.5 at
// 512x512 with guidance (batch 2) it picks 128x128 tiles unsplit at 64x64 (192-320 CTAs, about
// 390-520 TFLOP/s), 128x128 split 3 at 32x32 and 16x16 (120-240 CTAs, 450-540 TFLOP/s for the
// 3x3s), 128x64 split 6 at 8x8 (120 CTAs; a 1280 -> 1280 3x3 in about 13 us, 290 TFLOP/s, bound
// by its 29.5 MB of weights); over the UNet's convolutions about 425 TFLOP/s, 43% of the card's
// dense rate (batch 1: about 370).
//
// Per instantiation, nvcc 13 -Xptxas -v, no spills, no stack; dynamic shared memory:
//   tile              128x128   128x64   64x64      (128 threads each)
//   registers sm_80     241       128      98
//   registers sm_90     239       127     101
//   shared bytes      67584     49152    32768      (128x128: the fp32 staging of the epilogue)
// __launch_bounds__ asks for 2 resident CTAs of the 128x128 kernel (up to 255 registers) and 4 of
// the others (up to 128): 8 or 16 warps an SM. Above 48 KiB the launch opts in.
// The split-K reduction kernel: 40 / 45 registers.
//
// This path requires Cin % 8 == 0 (16-byte chunks of one pixel's channels) and 16-byte-aligned
// tensors (conv2d_implicit_supported); the backend takes im2col + cuBLASLt otherwise (SD's conv_in,
// Cin = 4). Kernel size, stride and padding are any that check_conv2d accepts. Cout may be any:
// B rows past it are zero-fills, and a Cout that is not a multiple of 8 (the UNet's conv_out, 4
// channels, and the VAE's, 3) is stored channel by channel and never split (the partials' 16-byte
// rows need Cout % 8 == 0). Such a conv computes a 64-channel tile for 3 or 4 useful ones, but it is
// small: the VAE's conv_out at 512x512 is 39 GFLOP of mma, about 0.1 ms, where im2col + cuBLASLt
// wrote and read back a 604 MB im2col matrix through a 64 MiB scratch, in 10 chunks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/cuda/device_api.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/op_checks.hpp"
#include "lib/core/error.hpp"

#if defined(__CUDACC__)
#define SDGEN_CONV_UNROLL _Pragma("unroll")
#else
#define SDGEN_CONV_UNROLL
#endif

namespace sdgen::cuda {

// The CTA tiles the launcher chooses from (output pixels x output channels).
enum class ConvTileShape { M128N128, M128N64, M64N64 };

// Input channels per K-slice: one mma k of 16, twice.
inline constexpr int kConvSliceChannels = 32;
// Slices in the cp.async ring: 3 in flight while one is computed.
inline constexpr int kConvStages = 4;

struct ConvTileDims {
  int m = 0, n = 0;
};

__host__ __device__ constexpr ConvTileDims conv_tile_dims(ConvTileShape s) {
  return s == ConvTileShape::M128N128  ? ConvTileDims{128, 128}
         : s == ConvTileShape::M128N64 ? ConvTileDims{128, 64}
                                       : ConvTileDims{64, 64};
}

template <ConvTileShape kShape>
struct ConvTile {
  static constexpr int kBlockM = conv_tile_dims(kShape).m;
  static constexpr int kBlockN = conv_tile_dims(kShape).n;
  static constexpr int kBlockK = kConvSliceChannels;
  static constexpr int kWarpsM = 2;
  static constexpr int kWarpsN = 2;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kWarpM = kBlockM / kWarpsM;  // 64 or 32
  static constexpr int kWarpN = kBlockN / kWarpsN;  // 64 or 32
  static constexpr int kFragsM = kWarpM / 16;
  static constexpr int kFragsN = kWarpN / 8;
  // 64x64 warp tiles hold 128 accumulators a thread: 2 CTAs an SM (up to 255 registers);
  // the smaller ones 4 (up to 128).
  static constexpr int kMinBlocksPerSm = kWarpM * kWarpN > 64 * 32 ? 2 : 4;
  static constexpr int kStages = kConvStages;
  static constexpr int kChunksPerRow = kBlockK / 8;  // 16-byte chunks per slice row
  static constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  static constexpr int kARows = kBlockM / kRowsPerPass;  // A rows a thread copies per slice
  static constexpr int kBRows = kBlockN / kRowsPerPass;
  static constexpr int kAHalves = kBlockM * kBlockK;
  static constexpr int kBHalves = kBlockN * kBlockK;
  static constexpr int kStageHalves = kAHalves + kBHalves;
  static constexpr int kStagingPitch = kBlockN + 4;  // floats; keeps rows 16-byte aligned
  static constexpr int kPipelineBytes = kStages * kStageHalves * 2;
  static constexpr int kStagingBytes = kBlockM * kStagingPitch * 4;
  static constexpr int kSharedBytes = kPipelineBytes > kStagingBytes ? kPipelineBytes : kStagingBytes;
  // Per K-slice, for the launcher's cost model: mma.m16n8k16 issued by the CTA, and shared-memory
  // bytes moved (ldmatrix.x4 reads 512 bytes; the cp.async copies write the stage).
  static constexpr int kMmaPerSlice = kBlockM * kBlockN * kBlockK / (16 * 8 * 16);
  static constexpr int kSharedBytesPerSlice =
      kWarpsM * kWarpsN * (kFragsM + kFragsN / 2) * (kBlockK / 16) * 512 + kStageHalves * 2;
  static_assert(kChunksPerRow == 4, "the swizzle below permutes 4 chunks per row");
  static_assert(kBlockM % kRowsPerPass == 0 && kBlockN % kRowsPerPass == 0);
};

// Element offset of chunk `chunk` (8 halves) of row `row` in a swizzled [rows][32] slice tile.
__device__ __forceinline__ int conv_swizzled(int row, int chunk) {
  return row * kConvSliceChannels + ((chunk ^ ((row >> 1) & 3)) << 3);
}

// What is added to the accumulators, and where the result goes. A term that is absent is an
// empty view (raw() == nullptr).
template <class T>
struct ConvEpilogue {
  GlobalPtr<T> out;                    // [M, cout]
  GlobalPtr<const T> bias;             // [cout]
  GlobalPtr<const T> add_per_channel;  // [B, cout]
  GlobalPtr<const T> residual;         // [M, cout]
  float output_scale = 1.0f;
  int cout = 0;
  int pixels = 0;  // Ho * Wo: row m belongs to image m / pixels
};

// out[m, n .. n + 8) = (v + bias + add_per_channel[b] + residual[m]) * output_scale, in fp32,
// rounded to T once. n is a multiple of 8. With Cout a multiple of 8 each term is one 16-byte
// access; otherwise (SD's conv_out, 3 or 4 channels) channel by channel, up to Cout.
template <class T>
__device__ __forceinline__ void store_conv_output(const ConvEpilogue<T>& e, int m, int n, float (&v)[8]) {
  const std::int64_t row = std::int64_t(m) * e.cout + n;
  const std::int64_t image_row = std::int64_t(m / e.pixels) * e.cout + n;
  if (e.cout % 8 == 0) {
    float term[kHalvesPerVector];
    if (e.bias.raw() != nullptr) {
      load_halves<kHalvesPerVector>(e.bias, n, term);
      for (int k = 0; k < 8; ++k) v[k] += term[k];
    }
    if (e.add_per_channel.raw() != nullptr) {
      load_halves<kHalvesPerVector>(e.add_per_channel, image_row, term);
      for (int k = 0; k < 8; ++k) v[k] += term[k];
    }
    if (e.residual.raw() != nullptr) {
      load_halves<kHalvesPerVector>(e.residual, row, term);
      for (int k = 0; k < 8; ++k) v[k] += term[k];
    }
    for (int k = 0; k < 8; ++k) v[k] *= e.output_scale;
    store_halves<kHalvesPerVector>(e.out, row, v);
    return;
  }
  const int channels = e.cout - n < 8 ? e.cout - n : 8;
  for (int k = 0; k < channels; ++k) {
    float term[1];
    float value[1] = {v[k]};
    if (e.bias.raw() != nullptr) {
      load_halves<1>(e.bias, n + k, term);
      value[0] += term[0];
    }
    if (e.add_per_channel.raw() != nullptr) {
      load_halves<1>(e.add_per_channel, image_row + k, term);
      value[0] += term[0];
    }
    if (e.residual.raw() != nullptr) {
      load_halves<1>(e.residual, row + k, term);
      value[0] += term[0];
    }
    value[0] *= e.output_scale;
    store_halves<1>(e.out, row + k, value);
  }
}

// 8 floats from a 16-byte-aligned view (global or shared), as two 16-byte accesses.
template <class Ptr>
__device__ __forceinline__ void load_floats8(Ptr p, float (&v)[8]) {
  for (int h = 0; h < 2; ++h) {
    const uint4 q = (p + 4 * h).template reinterpret<const uint4>()[0];
    v[4 * h] = __uint_as_float(q.x);
    v[4 * h + 1] = __uint_as_float(q.y);
    v[4 * h + 2] = __uint_as_float(q.z);
    v[4 * h + 3] = __uint_as_float(q.w);
  }
}

__device__ __forceinline__ void store_floats8(GlobalPtr<float> p, const float (&v)[8]) {
  for (int h = 0; h < 2; ++h) {
    uint4 q;
    q.x = __float_as_uint(v[4 * h]);
    q.y = __float_as_uint(v[4 * h + 1]);
    q.z = __float_as_uint(v[4 * h + 2]);
    q.w = __float_as_uint(v[4 * h + 3]);
    (p + 4 * h).reinterpret<uint4>()[0] = q;
  }
}

template <class T>
struct Conv2dImplicitParams {
  GlobalPtr<const T> x;  // [B, height, width, cin]
  GlobalPtr<const T> w;  // [cout, kh, kw, cin]
  ConvEpilogue<T> epilogue;      // applied here when splits == 1
  GlobalPtr<float> partials;  // [splits, m, cout] when splits > 1
  int height = 0, width = 0, cin = 0;
  int kh = 0, kw = 0, stride = 1, padding = 0;
  int wo = 0;
  int m = 0;           // B * Ho * Wo
  int cin_blocks = 0;  // ceil(cin / 32): K-slices per tap
  int slices = 0;      // kh * kw * cin_blocks
  int splits = 1;      // blockIdx.z: which contiguous range of slices
};

template <ConvTileShape kShape, class T>
__global__ void __launch_bounds__(ConvTile<kShape>::kThreads, ConvTile<kShape>::kMinBlocksPerSm)
    conv2d_implicit_kernel(Conv2dImplicitParams<T> p) {
  using Tile = ConvTile<kShape>;
  SDGEN_DYNAMIC_SHARED(T, smem);
  auto a_tile = [&](int stage) { return smem.slice(stage * Tile::kStageHalves, Tile::kAHalves); };
  auto b_tile = [&](int stage) { return smem.slice(stage * Tile::kStageHalves + Tile::kAHalves, Tile::kBHalves); };

  const int tid = int(threadIdx.x);
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int warp_m0 = warp / Tile::kWarpsN * Tile::kWarpM;
  const int warp_n0 = warp % Tile::kWarpsN * Tile::kWarpN;
  const int m0 = int(blockIdx.x) * Tile::kBlockM;
  const int n0 = int(blockIdx.y) * Tile::kBlockN;
  const int split = int(blockIdx.z);
  const int cout = p.epilogue.cout;
  const int slice_begin = int(std::int64_t(p.slices) * split / p.splits);
  const int slices = int(std::int64_t(p.slices) * (split + 1) / p.splits) - slice_begin;

  // ---- what this thread copies: chunk `chunk` of rows tid / 4 + i * kRowsPerPass of A and B.
  const int chunk = tid % Tile::kChunksPerRow;
  const int row0 = tid / Tile::kChunksPerRow;
  // A row = output pixel: the top-left input pixel of its window and its image's offset in x.
  // A row past M gets a window far above the image, so every tap of it is padding.
  int a_h0[Tile::kARows], a_w0[Tile::kARows];
  std::int64_t a_image[Tile::kARows];
  const int pixels = p.epilogue.pixels;
  SDGEN_CONV_UNROLL
  for (int i = 0; i < Tile::kARows; ++i) {
    const int m = m0 + row0 + i * Tile::kRowsPerPass;
    a_h0[i] = -(1 << 30);
    a_w0[i] = 0;
    a_image[i] = 0;
    if (m < p.m) {
      const int image = m / pixels;
      const int pixel = m - image * pixels;
      const int ho = pixel / p.wo;
      a_h0[i] = ho * p.stride - p.padding;
      a_w0[i] = (pixel - ho * p.wo) * p.stride - p.padding;
      a_image[i] = std::int64_t(image) * p.height * p.width * p.cin;
    }
  }
  // B row = output channel: its weights start at n * K.
  const std::int64_t k_total = std::int64_t(p.kh) * p.kw * p.cin;
  std::int64_t b_row[Tile::kBRows];
  bool b_valid[Tile::kBRows];
  SDGEN_CONV_UNROLL
  for (int i = 0; i < Tile::kBRows; ++i) {
    const int n = n0 + row0 + i * Tile::kRowsPerPass;
    b_valid[i] = n < cout;
    b_row[i] = b_valid[i] ? std::int64_t(n) * k_total : 0;
  }

  // The next slice to copy, as (tap row, tap column, channel block); advanced after each copy.
  int next_block = slice_begin % p.cin_blocks;
  int next_kw = slice_begin / p.cin_blocks % p.kw;
  int next_kh = slice_begin / p.cin_blocks / p.kw;
  auto copy_next_slice = [&](int stage) {
    const SharedPtr<T> a = a_tile(stage);
    const SharedPtr<T> b = b_tile(stage);
    const int c = next_block * kConvSliceChannels + chunk * 8;
    const bool channels_valid = c < p.cin;
    SDGEN_CONV_UNROLL
    for (int i = 0; i < Tile::kARows; ++i) {
      const int hi = a_h0[i] + next_kh;
      const int wi = a_w0[i] + next_kw;
      const bool valid = channels_valid && unsigned(hi) < unsigned(p.height) && unsigned(wi) < unsigned(p.width);
      const GlobalPtr<const T> src =
          valid ? p.x + (a_image[i] + (std::int64_t(hi) * p.width + wi) * p.cin + c) : p.x;
      cp_async_16(a + conv_swizzled(row0 + i * Tile::kRowsPerPass, chunk), src, valid ? 16 : 0);
    }
    const std::int64_t tap_k = std::int64_t(next_kh * p.kw + next_kw) * p.cin + c;
    SDGEN_CONV_UNROLL
    for (int i = 0; i < Tile::kBRows; ++i) {
      const bool valid = channels_valid && b_valid[i];
      const GlobalPtr<const T> src = valid ? p.w + (b_row[i] + tap_k) : p.w;
      cp_async_16(b + conv_swizzled(row0 + i * Tile::kRowsPerPass, chunk), src, valid ? 16 : 0);
    }
    if (++next_block == p.cin_blocks) {
      next_block = 0;
      if (++next_kw == p.kw) {
        next_kw = 0;
        ++next_kh;
      }
    }
  };

  float acc[Tile::kFragsM][Tile::kFragsN][4];
  SDGEN_CONV_UNROLL
  for (int fm = 0; fm < Tile::kFragsM; ++fm) {
    SDGEN_CONV_UNROLL
    for (int fn = 0; fn < Tile::kFragsN; ++fn) acc[fm][fn][0] = acc[fm][fn][1] = acc[fm][fn][2] = acc[fm][fn][3] = 0.0f;
  }

  // ---- the ring: slices 0 .. kStages - 2 in flight before the loop, one more per iteration.
  SDGEN_CONV_UNROLL
  for (int s = 0; s < Tile::kStages - 1; ++s) {
    if (s < slices) copy_next_slice(s);
    cp_async_commit();
  }
  int read_stage = 0;
  int write_stage = Tile::kStages - 1;
  for (int it = 0; it < slices; ++it) {
    cp_async_wait<Tile::kStages - 2>();  // this thread's copies of slice `it` have landed ...
    __syncthreads();                     // ... everyone's have, and slice it - 1 is consumed
    if (it + Tile::kStages - 1 < slices) copy_next_slice(write_stage);
    cp_async_commit();

    const SharedPtr<const T> a = a_tile(read_stage);
    const SharedPtr<const T> b = b_tile(read_stage);
    SDGEN_CONV_UNROLL
    for (int kk = 0; kk < Tile::kBlockK / 16; ++kk) {
      // A: x4 over 16 rows x 16 k (lanes 0-15 rows 0-15 of the low 8 k, lanes 16-31 of the high
      // 8): a0a1, a2a3, a4a5, a6a7.
      std::uint32_t af[Tile::kFragsM][4];
      SDGEN_CONV_UNROLL
      for (int fm = 0; fm < Tile::kFragsM; ++fm)
        ldmatrix<4>(af[fm], a + conv_swizzled(warp_m0 + fm * 16 + lane % 16, 2 * kk + lane / 16));
      // B: x4 over 16 channels x 16 k: matrices (channels 0-7, low k), (0-7, high k), (8-15, low),
      // (8-15, high) = b0b1, b2b3 of channel tiles 2j and 2j + 1.
      std::uint32_t bf[Tile::kFragsN / 2][4];
      SDGEN_CONV_UNROLL
      for (int j = 0; j < Tile::kFragsN / 2; ++j)
        ldmatrix<4>(bf[j], b + conv_swizzled(warp_n0 + j * 16 + lane % 8 + lane / 16 * 8, 2 * kk + lane / 8 % 2));
      SDGEN_CONV_UNROLL
      for (int fm = 0; fm < Tile::kFragsM; ++fm) {
        SDGEN_CONV_UNROLL
        for (int fn = 0; fn < Tile::kFragsN; ++fn) {
          const std::uint32_t bb[2] = {bf[fn / 2][fn % 2 * 2], bf[fn / 2][fn % 2 * 2 + 1]};
          mma_m16n8k16_row_col<T>(acc[fm][fn], af[fm], bb);
        }
      }
    }
    read_stage = read_stage + 1 == Tile::kStages ? 0 : read_stage + 1;
    write_stage = write_stage + 1 == Tile::kStages ? 0 : write_stage + 1;
  }
  cp_async_wait<0>();  // only empty groups are left; the staging below reuses the ring
  __syncthreads();

  // ---- accumulators -> shared staging (element (fm, fn, i) is row g + 8 (i / 2), column 2t + i % 2).
  const SharedPtr<float> staging = smem.template reinterpret<float>().slice(0, Tile::kBlockM * Tile::kStagingPitch);
  const int g = lane / 4;
  const int t = lane % 4;
  SDGEN_CONV_UNROLL
  for (int fm = 0; fm < Tile::kFragsM; ++fm) {
    SDGEN_CONV_UNROLL
    for (int fn = 0; fn < Tile::kFragsN; ++fn) {
      SDGEN_CONV_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int r = warp_m0 + fm * 16 + g + 8 * (i / 2);
        const int col = warp_n0 + fn * 8 + 2 * t + i % 2;
        staging[r * Tile::kStagingPitch + col] = acc[fm][fn][i];
      }
    }
  }
  __syncthreads();

  // ---- 8 channels of one pixel per thread and step: the epilogue, or this split's partial sums.
  constexpr int kVectorsPerRow = Tile::kBlockN / 8;
  for (int idx = tid; idx < Tile::kBlockM * kVectorsPerRow; idx += Tile::kThreads) {
    const int r = idx / kVectorsPerRow;
    const int col = idx % kVectorsPerRow * 8;
    const int m = m0 + r;
    const int n = n0 + col;
    if (m >= p.m || n >= cout) continue;  // a vector past Cout; one that straddles it is cut there
    float v[8];
    load_floats8(SharedPtr<const float>(staging) + (r * Tile::kStagingPitch + col), v);
    if (p.splits > 1) {
      store_floats8(p.partials + ((std::int64_t(split) * p.m + m) * cout + n), v);
    } else {
      store_conv_output(p.epilogue, m, n, v);
    }
  }
}

template <class T>
struct ConvSplitReduceParams {
  GlobalPtr<const float> partials;  // [splits, m, cout]
  ConvEpilogue<T> epilogue;
  int m = 0;
  int splits = 0;
};

// Sums the splits' partial tiles in split order and applies the epilogue: 8 channels per step.
template <class T>
__global__ void __launch_bounds__(kElementwiseThreads) conv2d_split_reduce_kernel(ConvSplitReduceParams<T> p) {
  const int cout = p.epilogue.cout;
  const int vectors_per_row = cout / 8;
  const std::int64_t plane = std::int64_t(p.m) * cout;
  const std::int64_t vectors = std::int64_t(p.m) * vectors_per_row;
  for (std::int64_t i = grid_thread_index(); i < vectors; i += grid_threads()) {
    const int m = int(i / vectors_per_row);
    const int n = int(i % vectors_per_row) * 8;
    float v[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int z = 0; z < p.splits; ++z) {
      float part[8];
      load_floats8(p.partials + (z * plane + std::int64_t(m) * cout + n), part);
      for (int k = 0; k < 8; ++k) v[k] += part[k];
    }
    store_conv_output(p.epilogue, m, n, v);
  }
}

// ---- host side

// One conv2d for this path. Every tensor is contiguous; out overlaps none of the inputs
// (check_conv2d's rules).
template <class T>
struct Conv2dImplicitLaunch {
  GlobalPtr<const T> x;                // [B, H, W, Cin]
  GlobalPtr<const T> w;                // [Cout, KH, KW, Cin]
  GlobalPtr<T> out;                    // [B, Ho, Wo, Cout]
  GlobalPtr<const T> bias;             // [Cout], or empty when absent
  GlobalPtr<const T> add_per_channel;  // [B, Cout], or empty
  GlobalPtr<const T> residual;         // [B, Ho, Wo, Cout], or empty
  float output_scale = 1.0f;
  // fp32 scratch of plan.workspace_floats (conv2d_implicit_workspace_floats for the default plan);
  // may be empty when that is 0. Used by this call only: convolutions issued in order on one
  // stream may share it.
  GlobalPtr<float> workspace;
  Conv2dGeometry geometry;    // from check_conv2d
  int multiprocessors = 132;  // the device's SM count (cudaDevAttrMultiProcessorCount); H100 SXM
  Stream stream = nullptr;
};

// How one convolution runs: the CTA tile, and over how many CTAs each tile's K-slices are split.
struct Conv2dImplicitPlan {
  ConvTileShape tile = ConvTileShape::M128N128;
  int splits = 1;
  std::int64_t m_tiles = 0, n_tiles = 0;
  int slices = 0;                     // K-slices of 32 channels of one tap
  std::int64_t workspace_floats = 0;  // splits * M * Cout when split, else 0
  std::int64_t ctas() const { return m_tiles * n_tiles * splits; }
};

namespace conv_detail {

inline std::int64_t output_pixels(const Conv2dGeometry& g) { return g.batch * g.ho * g.wo; }

inline int slice_count(const Conv2dGeometry& g) {
  return int(g.kh * g.kw * ((g.cin + kConvSliceChannels - 1) / kConvSliceChannels));
}

// The cost model of the top of this file (H100 SXM; arithmetic, not measured).
inline constexpr double kSmCyclesPerNs = 1.83;  // the clock of the 989 TFLOP/s dense fp16 rating
inline constexpr double kMmaPerSmCycle = 0.65;  // mma.m16n8k16 per SM-cycle: 1 at wgmma's peak
inline constexpr double kSharedBytesPerSmCycle = 128.0;
inline constexpr double kDramBytesPerNs = 3350.0;
inline constexpr double kDramLatencyNs = 800.0;
inline constexpr double kLaunchNs = 1500.0;
inline constexpr int kMaxSplits = 16;
inline constexpr int kMinSlicesPerSplit = 8;                  // keeps the 3-slice prologue amortised
inline constexpr std::int64_t kMaxWorkspaceFloats = 4 << 20;  // 16 MB of partial sums

// SM-cycles for one K-slice of one CTA with the SM to itself: the mma issue or the shared-memory
// traffic, whichever binds.
template <ConvTileShape kShape>
constexpr double slice_cycles() {
  using Tile = ConvTile<kShape>;
  return std::max(Tile::kMmaPerSlice / kMmaPerSmCycle, Tile::kSharedBytesPerSlice / kSharedBytesPerSmCycle);
}

inline double slice_cycles(ConvTileShape s) {
  return s == ConvTileShape::M128N128  ? slice_cycles<ConvTileShape::M128N128>()
         : s == ConvTileShape::M128N64 ? slice_cycles<ConvTileShape::M128N64>()
                                       : slice_cycles<ConvTileShape::M64N64>();
}

inline double estimated_ns(const Conv2dGeometry& g, const Conv2dImplicitPlan& plan, int multiprocessors) {
  const ConvTileDims d = conv_tile_dims(plan.tile);
  const std::int64_t m = output_pixels(g);
  // The busiest SM runs ceil(ctas / SMs) CTAs one after another (or side by side at a share each).
  const double waves = double((plan.ctas() + multiprocessors - 1) / multiprocessors);
  const double slices_per_cta = double((plan.slices + plan.splits - 1) / plan.splits);
  const double compute = waves * slices_per_cta * slice_cycles(plan.tile) / kSmCyclesPerNs;
  // DRAM: the unique bytes, at the lesser of the peak and what the CTAs keep in flight.
  const double in_flight = double(kConvStages - 1) * (d.m + d.n) * kConvSliceChannels * 2;
  const double bandwidth = std::min(kDramBytesPerNs, double(plan.ctas()) * in_flight / kDramLatencyNs);
  const double partial_bytes = 4.0 * double(plan.workspace_floats);
  const double bytes = 2.0 * double(g.batch * g.h * g.w * g.cin + g.cout * g.kh * g.kw * g.cin + m * g.cout);
  double ns = std::max(compute, (bytes + partial_bytes) / bandwidth);
  if (plan.splits > 1) ns += kLaunchNs + (partial_bytes + 4.0 * double(m * g.cout)) / kDramBytesPerNs;
  return ns;
}

}  // namespace conv_detail

// The plan for a given tile and split count (splits between 1 and the number of K-slices).
inline Conv2dImplicitPlan make_conv2d_implicit_plan(const Conv2dGeometry& g, ConvTileShape tile, int splits) {
  const ConvTileDims d = conv_tile_dims(tile);
  Conv2dImplicitPlan plan;
  plan.tile = tile;
  plan.splits = splits;
  plan.slices = conv_detail::slice_count(g);
  plan.m_tiles = (conv_detail::output_pixels(g) + d.m - 1) / d.m;
  plan.n_tiles = (g.cout + d.n - 1) / d.n;
  plan.workspace_floats = splits > 1 ? std::int64_t(splits) * conv_detail::output_pixels(g) * g.cout : 0;
  return plan;
}

// The launcher's choice: the cheapest plan under the cost model, ties going to the larger tile
// and the fewer splits.
inline Conv2dImplicitPlan plan_conv2d_implicit(const Conv2dGeometry& g, int multiprocessors) {
  const int slices = conv_detail::slice_count(g);
  Conv2dImplicitPlan best = make_conv2d_implicit_plan(g, ConvTileShape::M128N128, 1);
  double best_ns = conv_detail::estimated_ns(g, best, multiprocessors);
  for (const ConvTileShape tile : {ConvTileShape::M128N128, ConvTileShape::M128N64, ConvTileShape::M64N64}) {
    const int max_splits = g.cout % 8 == 0 ? conv_detail::kMaxSplits : 1;
    for (int splits = 1; splits <= max_splits; ++splits) {
      if (splits > 1 && slices / splits < conv_detail::kMinSlicesPerSplit) break;
      const Conv2dImplicitPlan plan = make_conv2d_implicit_plan(g, tile, splits);
      if (plan.workspace_floats > conv_detail::kMaxWorkspaceFloats) break;
      const double ns = conv_detail::estimated_ns(g, plan, multiprocessors);
      if (ns < best_ns) {
        best = plan;
        best_ns = ns;
      }
    }
  }
  return best;
}

// The fp32 workspace conv2d_implicit needs for this geometry, in floats (0: none).
inline std::int64_t conv2d_implicit_workspace_floats(const Conv2dGeometry& g, int multiprocessors = 132) {
  return plan_conv2d_implicit(g, multiprocessors).workspace_floats;
}

// Whether a convolution of this geometry can take this path: Cin a multiple of 8, and sizes whose
// indices fit the kernel's 32-bit pixel arithmetic. (The planning pass asks this: it has no
// pointers.)
inline bool conv2d_implicit_geometry_supported(const Conv2dGeometry& g) {
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  const std::int64_t pixels = conv_detail::output_pixels(g);
  return g.cin % 8 == 0 && pixels <= kIntMax - 128 && g.h * g.w * g.cin <= kIntMax && (g.cout + 63) / 64 <= 65535 &&
         g.kh * g.kw * g.cin <= kIntMax;
}

// Whether this path takes the convolution: its geometry, and every tensor (and the workspace)
// 16-byte aligned. The backend falls back to im2col + cuBLASLt otherwise.
template <class T>
bool conv2d_implicit_supported(const Conv2dImplicitLaunch<T>& l) {
  auto aligned = [](const auto& p) { return reinterpret_cast<std::uintptr_t>(p.raw()) % 16 == 0; };
  return conv2d_implicit_geometry_supported(l.geometry) && aligned(l.x) && aligned(l.w) && aligned(l.out) &&
         aligned(l.bias) && aligned(l.add_per_channel) && aligned(l.residual) && aligned(l.workspace);
}

// Runs the convolution with the given plan (tests force each tile and split count; the backend
// calls conv2d_implicit). l.workspace must hold plan.workspace_floats floats.
template <class T>
void launch_conv2d_implicit(const Conv2dImplicitLaunch<T>& l, const Conv2dImplicitPlan& plan) {
  const Conv2dGeometry& g = l.geometry;
  if (plan.splits < 1 || plan.splits > plan.slices || plan.splits > 65535)
    throw BackendError(cat("conv2d: cannot split ", plan.slices, " K-slices over ", plan.splits, " CTAs"));
  if (plan.splits > 1 && g.cout % 8 != 0)
    throw BackendError(cat("conv2d: cannot split the K-slices of a conv with ", g.cout,
                           " output channels (split partials need a multiple of 8)"));
  const std::int64_t m = conv_detail::output_pixels(g);
  const ConvEpilogue<T> epilogue{.out = l.out,
                              .bias = l.bias,
                              .add_per_channel = l.add_per_channel,
                              .residual = l.residual,
                              .output_scale = l.output_scale,
                              .cout = int(g.cout),
                              .pixels = int(g.ho * g.wo)};
  Conv2dImplicitParams<T> p;
  p.x = l.x;
  p.w = l.w;
  p.epilogue = epilogue;
  if (plan.splits > 1) p.partials = l.workspace.slice(0, plan.workspace_floats);
  p.height = int(g.h);
  p.width = int(g.w);
  p.cin = int(g.cin);
  p.kh = int(g.kh);
  p.kw = int(g.kw);
  p.stride = g.stride;
  p.padding = g.padding;
  p.wo = int(g.wo);
  p.m = int(m);
  p.cin_blocks = int((g.cin + kConvSliceChannels - 1) / kConvSliceChannels);
  p.slices = plan.slices;
  p.splits = plan.splits;
  const dim3 grid(unsigned(plan.m_tiles), unsigned(plan.n_tiles), unsigned(plan.splits));
  auto run = [&](auto kernel, auto tile) {
    using Tile = decltype(tile);
    launch(kernel, {.grid = grid, .block = Tile::kThreads, .shared_bytes = Tile::kSharedBytes, .stream = l.stream}, p);
  };
  switch (plan.tile) {
    case ConvTileShape::M128N128:
      run(SDGEN_KERNEL(conv2d_implicit_kernel<ConvTileShape::M128N128, T>), ConvTile<ConvTileShape::M128N128>{});
      break;
    case ConvTileShape::M128N64:
      run(SDGEN_KERNEL(conv2d_implicit_kernel<ConvTileShape::M128N64, T>), ConvTile<ConvTileShape::M128N64>{});
      break;
    case ConvTileShape::M64N64:
      run(SDGEN_KERNEL(conv2d_implicit_kernel<ConvTileShape::M64N64, T>), ConvTile<ConvTileShape::M64N64>{});
      break;
  }
  if (plan.splits > 1) {
    const ConvSplitReduceParams<T> r{.partials = p.partials, .epilogue = epilogue, .m = p.m, .splits = plan.splits};
    launch(SDGEN_KERNEL(conv2d_split_reduce_kernel<T>),
           {.grid = elementwise_blocks(m * g.cout / 8), .block = kElementwiseThreads, .stream = l.stream}, r);
  }
}

// conv2d on this path with the launcher's plan (plan_conv2d_implicit). The caller has checked
// conv2d_implicit_supported(l) and provides conv2d_implicit_workspace_floats(g, l.multiprocessors)
// floats of workspace.
template <class T>
void conv2d_implicit(const Conv2dImplicitLaunch<T>& l) {
  launch_conv2d_implicit(l, plan_conv2d_implicit(l.geometry, l.multiprocessors));
}

}  // namespace sdgen::cuda
