// Small, correct kernels that exercise each part of the CUDA emulator: barriers, shared memory
// (static and dynamic), warp shuffles/votes/reductions, __syncwarp, atomics, and the tensor-core
// wrappers (mma.m16n8k16 fed by hand-indexed fragments, and by cp.async + ldmatrix).
//
// They are written as the project's real kernels are (GlobalPtr parameters, SDGEN_SHARED, one
// params struct where there are many arguments), and compiled twice: by the host compiler for the
// emulation tests (sample_kernels_test.cpp) and by nvcc for sm_80/sm_90 (sample_kernels_gpu.cu),
// where the same tests run when a GPU is present. One kernel carries a deliberate defect behind a
// template parameter (AFragmentLayout), because a wrong fragment index is a wrong result, not a
// crash, and the test must show the comparison catches it.
#pragma once

#include <cstdint>

#include "kernels/cuda/device_api.cuh"

namespace sdgen::test {

using cuda::GlobalPtr;
using cuda::SharedPtr;

// ---- barriers: one partial sum per block, a tree reduction in dynamic shared memory

// Needs blockDim.x * sizeof(float) bytes of dynamic shared memory; blockDim.x a power of two.
__global__ void block_sum_kernel(GlobalPtr<const float> x, GlobalPtr<float> partial, int n) {
  SDGEN_DYNAMIC_SHARED(float, buf);
  const int t = int(threadIdx.x);
  const int i = int(blockIdx.x * blockDim.x) + t;
  buf[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (int stride = int(blockDim.x) / 2; stride > 0; stride /= 2) {
    if (t < stride) buf[t] += buf[t + stride];
    __syncthreads();
  }
  if (t == 0) partial[blockIdx.x] = buf[0];
}

// ---- warp shuffles, votes, reductions and a __syncwarp exchange through shared memory

constexpr int kWarpOpsBlock = 64;  // two warps

struct WarpOpsParams {
  GlobalPtr<const int> x;
  GlobalPtr<int> butterfly_sum;    // every lane: the sum over its warp (__shfl_xor_sync)
  GlobalPtr<int> lane0_sum;        // one per warp: the sum gathered in lane 0 (__shfl_down_sync)
  GlobalPtr<float> rotated;        // lane l: x of lane (l + 35) mod 32 (__shfl_sync wraps the source)
  GlobalPtr<int> prefix;           // inclusive prefix sum over the warp (__shfl_up_sync)
  GlobalPtr<int> xor16_width16;    // __shfl_xor_sync(x, 16, width 16)
  GlobalPtr<int> down3_width8;     // __shfl_down_sync(x, 3, width 8)
  GlobalPtr<unsigned> ballot;      // __ballot_sync(x > 0)
  GlobalPtr<int> votes;            // bit 0: __any_sync(x == 0); bit 1: __all_sync(x > -50)
  GlobalPtr<int> reduce_add;       // __reduce_add_sync(x)
  GlobalPtr<int> reduce_min;       // __reduce_min_sync(x)
  GlobalPtr<unsigned> reduce_max;  // __reduce_max_sync(unsigned(x + 100))
  GlobalPtr<int> from_next_lane;   // x of lane (l + 1) mod 32, through shared memory
};

__global__ void warp_ops_kernel(WarpOpsParams p) {
  SDGEN_SHARED(int, exchange, kWarpOpsBlock);
  constexpr unsigned kFull = 0xffffffffu;
  const int t = int(threadIdx.x);
  const int i = int(blockIdx.x) * kWarpOpsBlock + t;
  const int lane = t % 32;
  const int x = p.x[i];

  int sum = x;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFull, sum, offset);
  p.butterfly_sum[i] = sum;

  int down = x;
  for (int offset = 16; offset > 0; offset /= 2) down += __shfl_down_sync(kFull, down, unsigned(offset));
  if (lane == 0) p.lane0_sum[i / 32] = down;

  p.rotated[i] = __shfl_sync(kFull, float(x), lane + 35);

  int scan = x;
  for (int offset = 1; offset < 32; offset *= 2) {
    const int below = __shfl_up_sync(kFull, scan, unsigned(offset));
    if (lane >= offset) scan += below;
  }
  p.prefix[i] = scan;

  p.xor16_width16[i] = __shfl_xor_sync(kFull, x, 16, 16);
  p.down3_width8[i] = __shfl_down_sync(kFull, x, 3u, 8);
  p.ballot[i] = __ballot_sync(kFull, x > 0);
  p.votes[i] = (__any_sync(kFull, x == 0) ? 1 : 0) | (__all_sync(kFull, x > -50) ? 2 : 0);
  p.reduce_add[i] = __reduce_add_sync(kFull, x);
  p.reduce_min[i] = __reduce_min_sync(kFull, x);
  p.reduce_max[i] = __reduce_max_sync(kFull, unsigned(x + 100));

  // A warp-synchronous exchange: __syncwarp() orders the lanes' stores before the loads.
  exchange[t] = x;
  __syncwarp();
  p.from_next_lane[i] = exchange[t - lane + (lane + 1) % 32];
}

// ---- static and dynamic shared memory: a tiled transpose with per-tile statistics

constexpr int kTile = 16;            // the tile is kTile x kTile ...
constexpr int kTileRowsPerPass = 4;  // ... handled by a kTile x kTileRowsPerPass block

// out = transpose(in) for in [rows, cols]; per block, also the sum and the count of non-zero
// elements of its tile. Needs 2 * kTile * kTileRowsPerPass * 4 bytes of dynamic shared memory.
__global__ void transpose_kernel(GlobalPtr<const float> in, GlobalPtr<float> out, GlobalPtr<float> tile_sum,
                                 GlobalPtr<int> tile_nonzero, int rows, int cols) {
  SDGEN_SHARED(float, tile, kTile*(kTile + 1));  // +1: the transposed reads hit distinct banks
  SDGEN_DYNAMIC_SHARED(float, scratch);
  const int threads = int(blockDim.x * blockDim.y);
  const int tx = int(threadIdx.x);
  const int ty = int(threadIdx.y);
  const int t = ty * int(blockDim.x) + tx;
  const SharedPtr<float> sums = scratch.slice(0, threads);
  const SharedPtr<int> counts = scratch.slice(threads, threads).reinterpret<int>();
  const int row0 = int(blockIdx.y) * kTile;
  const int col0 = int(blockIdx.x) * kTile;

  float sum = 0.0f;
  int nonzero = 0;
  for (int r = ty; r < kTile; r += int(blockDim.y)) {
    if (row0 + r < rows && col0 + tx < cols) {
      const float v = in[(row0 + r) * cols + col0 + tx];
      tile[r * (kTile + 1) + tx] = v;
      sum += v;
      nonzero += v != 0.0f ? 1 : 0;
    }
  }
  sums[t] = sum;
  counts[t] = nonzero;
  __syncthreads();

  for (int c = ty; c < kTile; c += int(blockDim.y)) {
    if (col0 + c < cols && row0 + tx < rows) out[(col0 + c) * rows + row0 + tx] = tile[tx * (kTile + 1) + c];
  }
  for (int stride = threads / 2; stride > 0; stride /= 2) {
    if (t < stride) {
      sums[t] += sums[t + stride];
      counts[t] += counts[t + stride];
    }
    __syncthreads();
  }
  if (t == 0) {
    const int b = int(blockIdx.y * gridDim.x + blockIdx.x);
    tile_sum[b] = sums[0];
    tile_nonzero[b] = counts[0];
  }
}

// ---- atomics: a histogram in shared memory, merged into global memory, and global min/max/sum

constexpr int kBins = 16;

struct HistogramParams {
  GlobalPtr<const int> values;  // non-negative
  int n;
  GlobalPtr<unsigned> hist;   // [kBins], zeroed by the caller
  GlobalPtr<int> max_value;   // [1], starts at INT_MIN
  GlobalPtr<int> min_value;   // [1], starts at INT_MAX
  GlobalPtr<float> sum;       // [1], starts at 0
  GlobalPtr<float> max_half;  // [1], the largest value / 2, starts at -inf
};

// atomicMax for floats, as a compare-and-swap loop on the bit pattern.
__device__ __forceinline__ void atomic_max_float(GlobalPtr<float> p, float v) {
  const GlobalPtr<unsigned> bits = p.reinterpret<unsigned>();
  unsigned old = bits[0];
  while (__uint_as_float(old) < v) {
    const unsigned seen = atomicCAS(bits, old, __float_as_uint(v));
    if (seen == old) break;
    old = seen;
  }
}

__global__ void histogram_kernel(HistogramParams p) {
  SDGEN_SHARED(unsigned, bins, kBins);
  const int t = int(threadIdx.x);
  for (int b = t; b < kBins; b += int(blockDim.x)) bins[b] = 0u;
  __syncthreads();
  for (int i = int(blockIdx.x * blockDim.x) + t; i < p.n; i += int(gridDim.x * blockDim.x)) {
    const int v = p.values[i];
    atomicAdd(bins + v % kBins, 1u);
    atomicMax(p.max_value, v);
    atomicMin(p.min_value, v);
    atomicAdd(p.sum, float(v));
    atomic_max_float(p.max_half, 0.5f * float(v));
  }
  __syncthreads();
  for (int b = t; b < kBins; b += int(blockDim.x)) atomicAdd(p.hist + b, bins[b]);
}

// ---- tensor cores: C = A·B with mma.m16n8k16, one 16x8 tile of C per warp

template <class T>  // __half or __nv_bfloat16: the mma's operand format
struct GemmParams {
  GlobalPtr<const T> a;  // [m, k], row-major
  GlobalPtr<const T> b;  // [k, n], row-major
  GlobalPtr<float> c;         // [m, n], row-major
  int m, n, k;                // multiples of 16, 8 and 16
};

// Where a lane's A-fragment elements sit in the 16x16 tile. `Ptx` is the PTX ISA layout;
// `SecondAndThirdRegistersSwapped` is a plausible mistake (taking register a[1] for the right
// half and a[2] for the lower half), kept to prove that the tests catch it.
enum class AFragmentLayout { Ptx, SecondAndThirdRegistersSwapped };

template <AFragmentLayout Layout>
__device__ __forceinline__ int a_fragment_row(int lane, int i) {
  const int lower_half = Layout == AFragmentLayout::Ptx ? (i >> 1) & 1 : (i >= 4 ? 1 : 0);
  return lane / 4 + 8 * lower_half;
}

template <AFragmentLayout Layout>
__device__ __forceinline__ int a_fragment_col(int lane, int i) {
  const int right_half = Layout == AFragmentLayout::Ptx ? (i >= 4 ? 1 : 0) : (i >> 1) & 1;
  return 2 * (lane % 4) + (i & 1) + 8 * right_half;
}

// The warp's tile origin in C; false for warps beyond the matrix.
template <class T>
__device__ __forceinline__ bool gemm_tile(const GemmParams<T>& p, int& m0, int& n0) {
  const int warp = int(blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
  m0 = warp / (p.n / 8) * 16;
  n0 = warp % (p.n / 8) * 8;
  return m0 < p.m;
}

template <class T>
__device__ __forceinline__ void store_accumulators(const GemmParams<T>& p, int m0, int n0, const float (&acc)[4]) {
  const int lane = int(threadIdx.x % 32);
  for (int i = 0; i < 4; ++i) {
    const int row = m0 + lane / 4 + 8 * (i / 2);
    const int col = n0 + 2 * (lane % 4) + i % 2;
    p.c[row * p.n + col] = acc[i];
  }
}

// Fragments loaded element by element from global memory, by the PTX layout formulas.
template <AFragmentLayout Layout, class T>
__global__ void mma_gemm_direct_kernel(GemmParams<T> p) {
  int m0 = 0;
  int n0 = 0;
  if (!gemm_tile(p, m0, n0)) return;  // a whole warp leaves: no warp operation is split
  const int lane = int(threadIdx.x % 32);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < p.k; k0 += 16) {
    std::uint32_t a[4];
    for (int r = 0; r < 4; ++r) {  // register r holds elements 2r (low half) and 2r + 1
      const int row = m0 + a_fragment_row<Layout>(lane, 2 * r);
      const int col = k0 + a_fragment_col<Layout>(lane, 2 * r);
      a[r] = cuda::pack2(p.a[row * p.k + col], p.a[row * p.k + col + 1]);
    }
    std::uint32_t b[2];
    for (int r = 0; r < 2; ++r) {  // b(2r), b(2r+1): rows k and k + 1 of column n0 + lane / 4
      const int k = k0 + 2 * (lane % 4) + 8 * r;
      const int col = n0 + lane / 4;
      b[r] = cuda::pack2(p.b[k * p.n + col], p.b[(k + 1) * p.n + col]);
    }
    cuda::mma_m16n8k16_row_col<T>(acc, a, b);
  }
  store_accumulators(p, m0, n0, acc);
}

// The way the fused kernels feed tensor cores: each warp copies its A (16x16) and B (16x8) tiles
// into shared memory with cp.async, and ldmatrix turns them into fragments. Needs
// (blockDim.x / 32) * kGemmStageHalves * 2 bytes of dynamic shared memory.
constexpr int kGemmStageHalves = 16 * 16 + 16 * 8;

template <class T>
__global__ void mma_gemm_ldmatrix_kernel(GemmParams<T> p) {
  SDGEN_DYNAMIC_SHARED(T, stage);
  int m0 = 0;
  int n0 = 0;
  if (!gemm_tile(p, m0, n0)) return;
  const int lane = int(threadIdx.x % 32);
  const int warp_in_block = int(threadIdx.x / 32);
  const SharedPtr<T> a_tile = stage.slice(warp_in_block * kGemmStageHalves, 16 * 16);
  const SharedPtr<T> b_tile = stage.slice(warp_in_block * kGemmStageHalves + 16 * 16, 16 * 8);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < p.k; k0 += 16) {
    // 16 bytes (8 halves) per copy: A's 16 rows are 32 copies, one per lane; B's 16 rows are 16.
    cuda::cp_async_16(a_tile + (lane / 2) * 16 + (lane % 2) * 8, p.a + (m0 + lane / 2) * p.k + k0 + (lane % 2) * 8);
    if (lane < 16) cuda::cp_async_16(b_tile + lane * 8, p.b + (k0 + lane) * p.n + n0);
    cuda::cp_async_commit();
    cuda::cp_async_wait<0>();
    __syncwarp();  // every lane's copies are visible to every lane's ldmatrix rows

    // x4 over A: lanes 0-7 address rows 0-7 / cols 0-7 (a0,a1), 8-15 rows 8-15 (a2,a3),
    // 16-23 rows 0-7 / cols 8-15 (a4,a5), 24-31 rows 8-15 / cols 8-15 (a6,a7).
    std::uint32_t a[4];
    cuda::ldmatrix<4>(a, a_tile + (lane % 16) * 16 + (lane / 16) * 8);
    // x2.trans over B stored [k][n]: lanes 0-7 address k rows 0-7 (b0,b1), 8-15 rows 8-15 (b2,b3).
    std::uint32_t b[2];
    cuda::ldmatrix_trans<2>(b, b_tile + (lane % 16) * 8);
    cuda::mma_m16n8k16_row_col<T>(acc, a, b);
    __syncwarp();  // all reads of the tiles are done before the next copies overwrite them
  }
  store_accumulators(p, m0, n0, acc);
}

// ---- 16-byte vector copies and the once-rounded arithmetic intrinsics

// Copies `in` to `out` one uint4 (four floats) per thread, each vector's elements reversed, so a
// vector type that dropped or reordered a member would show.
__global__ void uint4_reverse_kernel(GlobalPtr<const float> in, GlobalPtr<float> out, int vectors) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= vectors) return;
  const uint4 v = in.reinterpret<const uint4>()[i];
  out.reinterpret<uint4>()[i] = uint4{v.w, v.z, v.y, v.x};
}

// a + b * c, rounded after the product and after the sum, in float and in double.
__global__ void rounded_ops_kernel(GlobalPtr<const float> f, GlobalPtr<const double> d, GlobalPtr<float> f_out,
                                   GlobalPtr<double> d_out) {
  f_out[0] = __fadd_rn(f[0], __fmul_rn(f[1], f[2]));
  f_out[1] = __fsub_rn(f[0], __fmul_rn(f[1], f[2]));
  d_out[0] = __dadd_rn(d[0], __dmul_rn(d[1], d[2]));
}

}  // namespace sdgen::test
