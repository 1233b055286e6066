// Flash attention, forward: out = softmax(q k^T * scale [+ causal mask]) v per head, in 16 bits (T:
// fp16 or bf16, the mma's operand format) with fp32 scores, softmax statistics and accumulation,
// never materialising the Nq x Nk matrix.
//
// Algorithm (FlashAttention-2). One CTA owns a tile of 64 queries of one (batch, head) and walks
// the keys one key tile at a time. Each of its 4 warps owns 16 query rows end to end, so the
// softmax needs no communication between warps: per key tile a warp computes S = Q K^T
// (16 x keys) on tensor cores, keeps per row the running maximum m and the running sum l of
// exp(s - m), rescales its O accumulator by exp(m_old - m_new), and adds P V with P taken straight
// from the S accumulator registers: the C fragments of mma.m16n8k16 for two adjacent 8-key tiles
// are, element for element, the A fragment of the next mma over those 16 keys, so P never touches
// shared memory. A row's statistics live in the 4 lanes of a quad (__shfl_xor_sync 1 and 2).
// O is divided by l once, at the end.
//
// Data movement. The Q tile is loaded once and held in registers as mma A fragments. K and V tiles
// go through shared memory, double-buffered: the copies of tile j + 1 are issued with cp.async
// before tile j is computed, so the load overlaps the math (one commit group per iteration, the
// last one empty, so the loop always waits with cp_async_wait<1>). K fragments come from ldmatrix,
// V fragments from ldmatrix.trans (the B operand of P V runs down V's columns). Shared rows are
// padded by 8 halves: a pitch of an odd number of 16-byte chunks puts the 8 rows of every ldmatrix
// in 8 different bank groups.
//
// Head widths. The kernel is instantiated per padded head width kWidth (a multiple of 16, the mma
// k): 16 (heads of 4, 8, 16: the test models), 48 (40: SD 1.x's first level), 64 (SD 2.x, the
// tiny VAE), 80, 160, and a wide 512 for the VAE's single head. Any head_dim runs on the next width
// up: columns past head_dim are zero in shared memory (zeros add nothing to q.k, and their O
// columns are never stored). Rows past Nq or Nk are zero too (a zero V row times p = 0 is 0, where
// uninitialised memory could hold a NaN); keys past Nk and causally hidden keys get s = -inf.
//   Width <= 160: Q in registers (kWidth / 16 x 4), the O accumulator kWidth / 8 x 4 floats.
//   Width 512: that would be 128 + 256 registers per thread, so Q stays in shared memory (ldmatrix
//   per key tile) and a CTA computes O for 128 of the 512 output columns only; the grid carries
//   ceil(head_dim / 128) such column chunks, each recomputing the full S. The work is then
//   (4 S + 1 PV) / (1 S + 1 PV) = 2.5x the minimum, spread over 4x as many CTAs (256 for the
//   VAE's 4096 tokens at 512x512, enough for 132 SMs). By arithmetic (not measured) that is about
//   a millisecond on an H100 for the VAE's one 34-GFLOP attention per image. A kernel that splits
//   D across warps and reduces S through shared memory would avoid the recomputation if it shows.
// Key tile: 64 keys up to width 80, 32 above, where the O and Q registers and the tiles are larger.
// Per CTA (128 threads), from nvcc 13 -Xptxas -v, no spills, and dynamic shared memory:
//   width           16      48      64      80      160      512
//   regs sm_80      96     128     131     168      234      167
//   regs sm_90      77     140     132     137      237      166
//   shared bytes  15360   35840   46080   56320    64512   150528
// (above 48 KiB the launch opts in; 150528 fits sm_80's 163 KiB, with one CTA per SM.)
//
// Alignment. cp.async moves 16 bytes from a 16-byte-aligned global address. A head's rows are
// aligned when the base pointer is, the batch and row strides are multiples of 8 halves and so is
// every head's first column (head_dim % 8 == 0, or one head). The launcher checks this per operand
// and otherwise loads that operand's tiles with plain element loads into the same shared layout
// (synchronously, so without the overlap; only odd test-model shapes take it).
//
// Causal (CLIP): query i sees keys 0..i, top-left aligned. Key tiles past the CTA's last query are
// not loaded at all, and a warp skips the math of a tile that lies wholly past its own last row.
// Key 0 is visible to every query, so the running maximum is finite from the first tile on; the
// softmax still guards a row whose every key so far is masked (m = -inf), where exp(-inf - -inf)
// would be NaN.
//
// Precision: scores and the softmax in fp32, exp2 with scale * log2(e) folded into one multiply;
// P rounded to T for the P V mma, as FlashAttention does (relative error 2^-11 per weight in fp16,
// 2^-8 in bf16, while l sums the unrounded p); O accumulated in fp32 and rounded to T once.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/device_api.cuh"
#include "kernels/op_checks.hpp"
#include "lib/core/error.hpp"

#if defined(__CUDACC__)
#define SDGEN_ATTENTION_UNROLL _Pragma("unroll")
#else
#define SDGEN_ATTENTION_UNROLL
#endif

namespace sdgen::cuda {

// How a CTA fills shared memory from one operand (chosen per operand by the launcher).
enum class TileLoad { AsyncCopy, Plain };

enum class AttentionMask { None, Causal };

// One [B, N, heads * head_dim] operand: element (b, n, c) is at data[b * batch_stride + n * row_stride + c].
template <class T>
struct AttentionOperandView {
  GlobalPtr<const T> data;
  std::int64_t batch_stride = 0;
  std::int64_t row_stride = 0;
  TileLoad load = TileLoad::Plain;
};

template <class T>
struct FlashAttentionParams {
  AttentionOperandView<T> q, k, v;
  GlobalPtr<T> out;
  std::int64_t out_batch_stride = 0;
  std::int64_t out_row_stride = 0;
  int nq = 0, nk = 0, head_dim = 0;
  int value_chunks = 1;  // blockIdx.z = batch * value_chunks + chunk of output columns
  float scale_log2 = 0.0f;  // scale * log2(e): softmax in base 2
  AttentionMask mask = AttentionMask::None;
};

// The tile shapes of one padded head width.
template <int kWidth>
struct FlashAttentionTile {
  static_assert(kWidth % 16 == 0, "the head width is padded to the mma k of 16");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kQueries = 16 * kWarps;  // a warp owns 16 query rows
  static constexpr int kKeys = kWidth <= 80 ? 64 : 32;
  static constexpr bool kQueryInRegisters = kWidth <= 160;
  static constexpr int kValueColumns = kQueryInRegisters ? kWidth : 128;  // O columns per CTA
  static constexpr int kPitch = kWidth + 8;                               // Q and K rows in shared memory
  static constexpr int kValuePitch = kValueColumns + 8;
  static constexpr int kQueryHalves = kQueries * kPitch;
  static constexpr int kKeyHalves = kKeys * kPitch;
  static constexpr int kValueHalves = kKeys * kValuePitch;
  static constexpr int kSharedBytes = 2 * (kQueryHalves + 2 * (kKeyHalves + kValueHalves));
};

// Copies rows [row0, row0 + kRows) x columns [0, kCols) of one head (element (n, c) at
// x.data[base + n * x.row_stride + c]) into `tile` (pitch kPitch), with zeros for rows >= rows and
// columns >= cols. AsyncCopy only issues the copies: the caller commits and waits.
template <int kRows, int kCols, int kPitch, int kThreads, class T>
__device__ __forceinline__ void load_attention_tile(SharedPtr<T> tile, const AttentionOperandView<T>& x,
                                                    std::int64_t base, int row0, int rows, int cols) {
  const int tid = int(threadIdx.x);
  if (x.load == TileLoad::AsyncCopy) {
    constexpr int kChunks = kCols / 8;
    // Zero-byte copies (padding) still name a valid, aligned address: the tile's first element.
    const GlobalPtr<const T> first = x.data + (base + std::int64_t(row0) * x.row_stride);
    for (int i = tid; i < kRows * kChunks; i += kThreads) {
      const int r = i / kChunks;
      const int c = i % kChunks * 8;
      const int left = cols - c;  // valid halves of this chunk: 0..8
      const int valid = row0 + r >= rows || left <= 0 ? 0 : (left < 8 ? left : 8);
      const GlobalPtr<const T> src = valid > 0 ? first + (std::int64_t(r) * x.row_stride + c) : first;
      cp_async_16(tile + (r * kPitch + c), src, 2 * valid);
    }
  } else {
    for (int i = tid; i < kRows * kCols; i += kThreads) {
      const int r = i / kCols;
      const int c = i % kCols;
      T h = from_float<T>(0.0f);
      if (row0 + r < rows && c < cols) h = x.data[base + std::int64_t(row0 + r) * x.row_stride + c];
      tile[r * kPitch + c] = h;
    }
  }
}

template <int kWidth, class T>
__global__ void __launch_bounds__(FlashAttentionTile<kWidth>::kThreads)
    flash_attention_kernel(FlashAttentionParams<T> p) {
  using Tile = FlashAttentionTile<kWidth>;
  constexpr int kKeys = Tile::kKeys;
  constexpr int kPitch = Tile::kPitch;
  constexpr int kValuePitch = Tile::kValuePitch;
  constexpr int kValueColumns = Tile::kValueColumns;
  constexpr int kSteps = kWidth / 16;  // mma k-steps of S = Q K^T
  SDGEN_DYNAMIC_SHARED(T, smem);
  // Q, then K of stages 0 and 1, then V of stages 0 and 1 (computed, not an array of views: a
  // runtime index into an array would put it in local memory).
  const SharedPtr<T> q_tile = smem.slice(0, Tile::kQueryHalves);
  auto k_tile_of = [&](int stage) {
    return smem.slice(Tile::kQueryHalves + stage * Tile::kKeyHalves, Tile::kKeyHalves);
  };
  auto v_tile_of = [&](int stage) {
    return smem.slice(Tile::kQueryHalves + 2 * Tile::kKeyHalves + stage * Tile::kValueHalves, Tile::kValueHalves);
  };

  const int warp = int(threadIdx.x) / 32;
  const int lane = int(threadIdx.x) % 32;
  const int g = lane / 4;  // fragment row (and row + 8)
  const int t = lane % 4;  // fragment column pair 2t, 2t + 1
  const int q0 = int(blockIdx.x) * Tile::kQueries;
  const int head = int(blockIdx.y);
  const int batch = int(blockIdx.z) / p.value_chunks;
  const int v_col0 = int(blockIdx.z) % p.value_chunks * kValueColumns;
  const bool causal = p.mask == AttentionMask::Causal;
  const std::int64_t head_col = std::int64_t(head) * p.head_dim;
  const std::int64_t q_base = std::int64_t(batch) * p.q.batch_stride + head_col;
  const std::int64_t k_base = std::int64_t(batch) * p.k.batch_stride + head_col;
  const std::int64_t v_base = std::int64_t(batch) * p.v.batch_stride + head_col + v_col0;

  // Causal: keys past the CTA's last query are hidden from all of its queries.
  const int q_end = q0 + Tile::kQueries < p.nq ? q0 + Tile::kQueries : p.nq;
  const int key_end = causal && q_end < p.nk ? q_end : p.nk;
  const int key_tiles = (key_end + kKeys - 1) / kKeys;
  const int warp_row0 = q0 + 16 * warp;
  const bool warp_has_rows = warp_row0 < p.nq;

  auto load_keys_and_values = [&](int tile, int stage) {
    const int k0 = tile * kKeys;
    load_attention_tile<kKeys, kWidth, kPitch, Tile::kThreads>(k_tile_of(stage), p.k, k_base, k0, p.nk, p.head_dim);
    load_attention_tile<kKeys, kValueColumns, kValuePitch, Tile::kThreads>(v_tile_of(stage), p.v, v_base, k0, p.nk,
                                                                          p.head_dim - v_col0);
  };
  load_attention_tile<Tile::kQueries, kWidth, kPitch, Tile::kThreads>(q_tile, p.q, q_base, q0, p.nq, p.head_dim);
  load_keys_and_values(0, 0);
  cp_async_commit();

  // The warp's Q rows as A fragments (ldmatrix x4: lanes 0-15 address rows 0-15 of the left 8
  // columns, lanes 16-31 of the right 8: a0a1, a2a3, a4a5, a6a7).
  auto load_query_fragment = [&](std::uint32_t (&a)[4], int step) {
    ldmatrix<4>(a, q_tile + ((16 * warp + lane % 16) * kPitch + step * 16 + lane / 16 * 8));
  };
  [[maybe_unused]] std::uint32_t q_frag[Tile::kQueryInRegisters ? kSteps : 1][4];

  float o[kValueColumns / 8][4];
  SDGEN_ATTENTION_UNROLL
  for (int n = 0; n < kValueColumns / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
  float row_sum[2] = {0.0f, 0.0f};            // this lane's part; the quad's sum is taken at the end

  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j % 2;
    if (j + 1 < key_tiles) load_keys_and_values(j + 1, 1 - stage);
    cp_async_commit();
    cp_async_wait<1>();  // tile j (and, for j = 0, Q) has landed for this thread ...
    __syncthreads();     // ... and for every thread
    const int k0 = j * kKeys;
    if constexpr (Tile::kQueryInRegisters) {
      if (j == 0 && warp_has_rows) {
        SDGEN_ATTENTION_UNROLL
        for (int s = 0; s < kSteps; ++s) load_query_fragment(q_frag[s], s);
      }
    }
    if (warp_has_rows && !(causal && k0 > warp_row0 + 15)) {
      // ---- S = Q K^T for this warp's 16 rows and kKeys keys (raw dot products, fp32).
      const SharedPtr<const T> k_tile = k_tile_of(stage);
      float s[kKeys / 8][4];
      SDGEN_ATTENTION_UNROLL
      for (int n = 0; n < kKeys / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
      SDGEN_ATTENTION_UNROLL
      for (int step = 0; step < kSteps; ++step) {
        std::uint32_t a[4];
        if constexpr (Tile::kQueryInRegisters) {
          SDGEN_ATTENTION_UNROLL
          for (int r = 0; r < 4; ++r) a[r] = q_frag[step][r];
        } else {
          load_query_fragment(a, step);
        }
        SDGEN_ATTENTION_UNROLL
        for (int n = 0; n < kKeys / 16; ++n) {
          // x4 over 16 keys x 16 columns of K (rows = keys): matrices (keys 0-7, cols 0-7),
          // (0-7, 8-15), (8-15, 0-7), (8-15, 8-15) = b0b1, b2b3 of key tiles 2n and 2n + 1.
          std::uint32_t b[4];
          ldmatrix<4>(b, k_tile + ((n * 16 + lane % 8 + lane / 16 * 8) * kPitch + step * 16 + lane / 8 % 2 * 8));
          const std::uint32_t b_lo[2] = {b[0], b[1]};
          const std::uint32_t b_hi[2] = {b[2], b[3]};
          mma_m16n8k16_row_col<T>(s[2 * n], a, b_lo);
          mma_m16n8k16_row_col<T>(s[2 * n + 1], a, b_hi);
        }
      }

      // ---- scale, mask, online softmax. Element (n, i) is row g + 8 (i / 2), key n * 8 + 2t + i % 2.
      const bool needs_mask = k0 + kKeys > p.nk || (causal && k0 + kKeys - 1 > warp_row0);
      SDGEN_ATTENTION_UNROLL
      for (int n = 0; n < kKeys / 8; ++n) {
        SDGEN_ATTENTION_UNROLL
        for (int i = 0; i < 4; ++i) {
          s[n][i] *= p.scale_log2;
          if (needs_mask) {
            const int key = k0 + n * 8 + 2 * t + i % 2;
            const int row = warp_row0 + g + 8 * (i / 2);
            if (key >= p.nk || (causal && key > row)) s[n][i] = -INFINITY;
          }
        }
      }
      SDGEN_ATTENTION_UNROLL
      for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
        SDGEN_ATTENTION_UNROLL
        for (int n = 0; n < kKeys / 8; ++n) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
        // The 4 lanes of a quad hold the row's columns.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float new_max = fmaxf(row_max[r], tile_max);
        const float base = new_max == -INFINITY ? 0.0f : new_max;  // every key so far masked
        const float correction = exp2f(row_max[r] - base);
        row_max[r] = new_max;
        float sum = 0.0f;
        SDGEN_ATTENTION_UNROLL
        for (int n = 0; n < kKeys / 8; ++n) {
          s[n][2 * r] = exp2f(s[n][2 * r] - base);
          s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - base);
          sum += s[n][2 * r] + s[n][2 * r + 1];
        }
        row_sum[r] = row_sum[r] * correction + sum;
        SDGEN_ATTENTION_UNROLL
        for (int n = 0; n < kValueColumns / 8; ++n) {
          o[n][2 * r] *= correction;
          o[n][2 * r + 1] *= correction;
        }
      }

      // ---- O += P V. The S fragments of key tiles 2m, 2m + 1 are the A fragment of keys 16m..16m+15.
      const SharedPtr<const T> v_tile = v_tile_of(stage);
      SDGEN_ATTENTION_UNROLL
      for (int m = 0; m < kKeys / 16; ++m) {
        const std::uint32_t a[4] = {pack2(from_float<T>(s[2 * m][0]), from_float<T>(s[2 * m][1])),
                                    pack2(from_float<T>(s[2 * m][2]), from_float<T>(s[2 * m][3])),
                                    pack2(from_float<T>(s[2 * m + 1][0]), from_float<T>(s[2 * m + 1][1])),
                                    pack2(from_float<T>(s[2 * m + 1][2]), from_float<T>(s[2 * m + 1][3]))};
        SDGEN_ATTENTION_UNROLL
        for (int n = 0; n < kValueColumns / 16; ++n) {
          // x4.trans over 16 keys x 16 columns of V (rows = keys): matrices (keys 0-7, cols 0-7),
          // (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = b0b1, b2b3 of column tiles 2n and 2n + 1.
          std::uint32_t b[4];
          const int key = m * 16 + lane % 8 + lane / 8 % 2 * 8;
          ldmatrix_trans<4>(b, v_tile + (key * kValuePitch + n * 16 + lane / 16 * 8));
          const std::uint32_t b_lo[2] = {b[0], b[1]};
          const std::uint32_t b_hi[2] = {b[2], b[3]};
          mma_m16n8k16_row_col<T>(o[2 * n], a, b_lo);
          mma_m16n8k16_row_col<T>(o[2 * n + 1], a, b_hi);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before tile j + 2 overwrites it
  }

  // O / l, stored straight from the fragments: a quad writes 16 contiguous bytes of a row per
  // column tile. The output is written once per CTA against Nk rows of K and V read, so staging it
  // through shared memory for 16-byte stores would not repay its barrier.
  if (!warp_has_rows) return;
  const std::int64_t out_base = std::int64_t(batch) * p.out_batch_stride + head_col + v_col0;
  SDGEN_ATTENTION_UNROLL
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = 1.0f / sum;
    const int row = warp_row0 + g + 8 * r;
    if (row >= p.nq) continue;
    SDGEN_ATTENTION_UNROLL
    for (int n = 0; n < kValueColumns / 8; ++n) {
      SDGEN_ATTENTION_UNROLL
      for (int e = 0; e < 2; ++e) {
        const int col = n * 8 + 2 * t + e;
        if (v_col0 + col < p.head_dim)
          p.out[out_base + std::int64_t(row) * p.out_row_stride + col] = from_float<T>(o[n][2 * r + e] * inv);
      }
    }
  }
}

// ---- host side

template <class T>
struct FlashAttentionLaunch {
  GlobalPtr<const T> q, k, v;  // views as described by geometry (any batch/row stride)
  GlobalPtr<T> out;
  AttentionGeometry geometry;  // from check_attention; scale resolved
  Stream stream = nullptr;
};

namespace attention_detail {

// cp.async needs every 16-byte chunk of every head's row to start on a 16-byte boundary.
template <class T>
TileLoad tile_load_for(GlobalPtr<const T> data, const AttentionOperand& strides, const AttentionGeometry& g) {
  const bool aligned = reinterpret_cast<std::uintptr_t>(data.raw()) % 16 == 0 &&
                       (g.batch == 1 || strides.batch_stride % 8 == 0) && strides.row_stride % 8 == 0 &&
                       (g.heads == 1 || g.head_dim % 8 == 0);
  return aligned ? TileLoad::AsyncCopy : TileLoad::Plain;
}

template <int kWidth, class T>
void launch_flash_attention(const FlashAttentionLaunch<T>& l) {
  using Tile = FlashAttentionTile<kWidth>;
  const AttentionGeometry& g = l.geometry;
  FlashAttentionParams<T> p;
  p.q = {l.q, g.q.batch_stride, g.q.row_stride, tile_load_for(l.q, g.q, g)};
  p.k = {l.k, g.k.batch_stride, g.k.row_stride, tile_load_for(l.k, g.k, g)};
  p.v = {l.v, g.v.batch_stride, g.v.row_stride, tile_load_for(l.v, g.v, g)};
  p.out = l.out;
  p.out_batch_stride = g.out.batch_stride;
  p.out_row_stride = g.out.row_stride;
  p.nq = int(g.nq);
  p.nk = int(g.nk);
  p.head_dim = int(g.head_dim);
  p.value_chunks = int((g.head_dim + Tile::kValueColumns - 1) / Tile::kValueColumns);
  p.scale_log2 = float(double(g.scale) * 1.4426950408889634);  // log2(e)
  p.mask = g.causal ? AttentionMask::Causal : AttentionMask::None;
  const dim3 grid(unsigned((g.nq + Tile::kQueries - 1) / Tile::kQueries), unsigned(g.heads),
                  unsigned(g.batch * p.value_chunks));
  launch(SDGEN_KERNEL(flash_attention_kernel<kWidth, T>),
         {.grid = grid, .block = Tile::kThreads, .shared_bytes = Tile::kSharedBytes, .stream = l.stream}, p);
}

}  // namespace attention_detail

// The widest head this kernel handles; wider heads are refused (no model we load has one).
inline constexpr std::int64_t kFlashAttentionMaxHeadDim = 512;

// Runs attention as described by l.geometry (kernels/backend.hpp AttentionArgs): T q, k, v with
// unit stride in the last dimension and any batch/row strides (column slices of a fused QKV buffer
// included), T out with its own strides, not overlapping the inputs. Any alignment works;
// 16-byte-aligned operands (see the top of this file) take the cp.async path. head_dim up to 512;
// Nq, Nk, batch and heads below 2^31 / 65535 as CUDA's grid allows (heads <= 65535,
// batch * ceil(head_dim / 128) <= 65535 for head_dim > 160).
template <class T>
void flash_attention(const FlashAttentionLaunch<T>& l) {
  const std::int64_t d = l.geometry.head_dim;
  if (d <= 16) {
    attention_detail::launch_flash_attention<16>(l);
  } else if (d <= 48) {
    attention_detail::launch_flash_attention<48>(l);
  } else if (d <= 64) {
    attention_detail::launch_flash_attention<64>(l);
  } else if (d <= 80) {
    attention_detail::launch_flash_attention<80>(l);
  } else if (d <= 160) {
    attention_detail::launch_flash_attention<160>(l);
  } else if (d <= kFlashAttentionMaxHeadDim) {
    attention_detail::launch_flash_attention<512>(l);
  } else {
    throw BackendError(cat("attention: head dimension ", d, " is wider than the CUDA kernel's ",
                           kFlashAttentionMaxHeadDim));
  }
}

}  // namespace sdgen::cuda
