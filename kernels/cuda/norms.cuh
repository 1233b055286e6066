// The normalisations of the CUDA backend on 16-bit activations (fp16 or bf16, the kernels' T):
// GroupNorm over NHWC images (with an activation fused after the affine transform: SiLU in the op
// set) and LayerNorm over rows.
// Statistics in fp32, as backend.hpp requires.
//
// Statistics. Both norms need a mean and a variance over many 16-bit values (over a million per
// group in the VAE at 512x512). E[x^2] - E[x]^2 in fp32 cancels catastrophically when |mean| is
// large next to the standard deviation, so every partial result here is a (count, mean, M2)
// triple (M2 = sum of squared deviations from the mean): a thread builds its own with Welford's
// update, and partials are combined with Chan's pairwise formula
//     n = na + nb,  d = mb - ma,  mean = ma + d nb / n,  M2 = M2a + M2b + d^2 na nb / n,
// which never subtracts two large sums. Reductions across a warp run down a shuffle tree into lane
// 0 and are broadcast from there, so every lane uses bit-identical statistics.
//
// GroupNorm: x [B, N, C] (N = H*W), groups of cg = C/G adjacent channels. In NHWC a pixel row
// holds a slice of every group, and cg need not be a multiple of 8 (SD's 320 channels in 32 groups
// give cg = 10), so threads do not own groups: a thread owns a column vector of 8 channels (or 1)
// and walks down the rows, keeping per-channel Welford statistics; channels are folded into their
// groups afterwards, in shared memory. Each group is split over many blocks, in three kernels:
//   1. group_norm_stats_kernel, grid (slices, B): a block takes a slice of rows of one batch
//      element, all channels. Its threads form cols_per_pass column lanes x row_lanes row lanes
//      (coalesced: a warp reads consecutive vectors of a row). Per-channel partials go to shared
//      memory; then one warp per group merges that group's (row lane, channel) partials and writes
//      the block's (mean, M2) for every group to the workspace.
//   2. group_norm_finalize_kernel, grid B: merges the slices' partials per group, then writes each
//      channel's scale = gamma * rstd and shift = beta - mean * scale (fp32) to the workspace.
//   3. group_norm_apply_kernel, grid (slices, B), same thread layout: out = act(x * scale + shift)
//      with the thread's scale and shift held in registers, as the CPU backend computes it.
// x is read twice; for the UNet's tensors (5 MB at 64x64x320, batch 2) the second read comes from
// the H100's 50 MB L2. The slice count aims at about 4 rows per thread (the UNet's 64x64x320 at
// batch 2: 342 blocks), up to 1024 slices per batch element (the VAE's 512x512x128: 1024 blocks of
// 256 rows, 16 per thread); a finer split would only lengthen the finalize merge. (By arithmetic;
// not yet measured on a GPU.)
//
// LayerNorm: rows [R, C] with C at most a few thousand (320..1280 in the UNet, 768/1024 in CLIP),
// one warp per row, four rows per block. Each lane takes the row's vectors lane, lane + 32, ...,
// computes each vector's own (8, mean, M2) exactly and merges it into its partial (one division
// per 8 elements); after the warp merge, the lanes re-read their vectors (from L1: the warp just
// read them) and write (x - mean) * rstd * gamma + beta. Rows are independent, so out may be x.
//
// Vector access (elementwise.cuh's load_halves/store_halves): 8 halves per access when C (and, for
// LayerNorm, both row strides) are multiples of 8 and the activation pointers are 16-byte aligned;
// otherwise the same kernels run 1-wide. gamma, beta, scale and shift are small and cached.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/cuda/device_api.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/op_checks.hpp"

namespace sdgen::cuda {

// ---- statistics: (count, mean, M2) partials and Chan's merge

struct MeanM2 {
  float count = 0.0f;
  float mean = 0.0f;
  float m2 = 0.0f;  // sum of squared deviations from mean
};

__device__ __forceinline__ MeanM2 merge_stats(const MeanM2& a, const MeanM2& b) {
  const float n = a.count + b.count;
  if (n == 0.0f) return a;
  const float delta = b.mean - a.mean;
  const float b_share = b.count / n;
  return MeanM2{n, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.count * b_share};
}

// The statistics of kVec values, exactly as a two-pass computation gives them.
template <int kVec>
__device__ __forceinline__ MeanM2 stats_of(const float (&v)[kVec]) {
  float sum = 0.0f;
  for (int k = 0; k < kVec; ++k) sum += v[k];
  const float mean = sum / float(kVec);
  float m2 = 0.0f;
  for (int k = 0; k < kVec; ++k) m2 += (v[k] - mean) * (v[k] - mean);
  return MeanM2{float(kVec), mean, m2};
}

// The merge of all 32 lanes' partials, the same in every lane. Every lane of the warp must call it.
__device__ __forceinline__ MeanM2 warp_merge_stats(MeanM2 s) {
  constexpr unsigned kFull = 0xffffffffu;
  for (int offset = 16; offset > 0; offset /= 2) {
    const MeanM2 other{__shfl_down_sync(kFull, s.count, unsigned(offset)),
                       __shfl_down_sync(kFull, s.mean, unsigned(offset)),
                       __shfl_down_sync(kFull, s.m2, unsigned(offset))};
    s = merge_stats(s, other);  // lane 0 ends with lanes 0..31; the others' results are not used
  }
  return MeanM2{__shfl_sync(kFull, s.count, 0), __shfl_sync(kFull, s.mean, 0), __shfl_sync(kFull, s.m2, 0)};
}

// ---- GroupNorm

inline constexpr int kGroupNormThreads = 256;
inline constexpr std::int64_t kGroupNormRowsPerThread = 4;
inline constexpr std::int64_t kGroupNormMaxSlices = 1024;

// How one group norm is split (the launcher's choice, and what the workspace must hold).
struct GroupNormPlan {
  int vec = 1;                      // halves per access
  int cols_per_pass = 0;            // column vectors a block covers at once
  int row_lanes = 0;                // rows a block covers at once
  std::int64_t slices = 0;          // blocks per batch element, each a slice of rows
  std::int64_t partial_floats = 0;  // [B, slices, G, 2]
  std::int64_t workspace_floats = 0;
};

inline GroupNormPlan plan_group_norm(const GroupNormGeometry& g, int vec) {
  GroupNormPlan plan;
  plan.vec = vec;
  plan.cols_per_pass = static_cast<int>(std::min<std::int64_t>(g.channels / vec, kGroupNormThreads));
  plan.row_lanes = kGroupNormThreads / plan.cols_per_pass;
  const std::int64_t rows_per_slice = plan.row_lanes * kGroupNormRowsPerThread;
  plan.slices = std::clamp<std::int64_t>((g.pixels + rows_per_slice - 1) / rows_per_slice, 1, kGroupNormMaxSlices);
  plan.partial_floats = 2 * g.batch * plan.slices * g.groups;
  plan.workspace_floats = plan.partial_floats + 2 * g.batch * g.channels;  // + scale and shift [B, C]
  return plan;
}

// The fp32 workspace launch_group_norm needs, in floats (whichever access width it picks).
inline std::int64_t group_norm_workspace_floats(const GroupNormGeometry& g) {
  std::int64_t floats = plan_group_norm(g, 1).workspace_floats;
  if (g.channels % kHalvesPerVector == 0)
    floats = std::max(floats, plan_group_norm(g, kHalvesPerVector).workspace_floats);
  return floats;
}

template <class T>
struct GroupNormParams {
  GlobalPtr<const T> x;  // [B, N, C]
  GlobalPtr<const T> gamma;
  GlobalPtr<const T> beta;
  GlobalPtr<T> out;      // [B, N, C]; may be x
  GlobalPtr<float> partials;  // [B, slices, G, 2]: mean and M2 of each slice's groups
  GlobalPtr<float> scale;     // [B, C]: gamma * rstd
  GlobalPtr<float> shift;     // [B, C]: beta - mean * scale
  std::int64_t pixels = 0;
  std::int64_t channels = 0;
  int groups = 0;
  std::int64_t slices = 0;
  int cols_per_pass = 0;
  int row_lanes = 0;
  float eps = 0.0f;
};

// The first row of slice s (slice s ends where s + 1 begins); every slice has at least one row.
template <class T>
__device__ __forceinline__ std::int64_t slice_begin(const GroupNormParams<T>& p, std::int64_t s) {
  return p.pixels * s / p.slices;
}

// How many of a slice's `rows` rows row lane `lane` (of p.row_lanes) visits.
template <class T>
__device__ __forceinline__ std::int64_t lane_rows(const GroupNormParams<T>& p, std::int64_t rows, int lane) {
  return lane < rows ? (rows - lane + p.row_lanes - 1) / p.row_lanes : 0;
}

// Needs 2 * row_lanes * C floats of dynamic shared memory.
template <int kVec, class T>
__global__ void __launch_bounds__(kGroupNormThreads) group_norm_stats_kernel(GroupNormParams<T> p) {
  SDGEN_DYNAMIC_SHARED(float, channel_stats);  // [row_lanes, C, 2]: mean, M2
  const int t = int(threadIdx.x);
  const std::int64_t s = blockIdx.x;
  const std::int64_t b = blockIdx.y;
  const std::int64_t r0 = slice_begin(p, s);
  const std::int64_t r1 = slice_begin(p, s + 1);
  const int col_lane = t % p.cols_per_pass;
  const int row_lane = t / p.cols_per_pass;
  const std::int64_t vectors = p.channels / kVec;
  const GlobalPtr<const T> x = p.x + b * p.pixels * p.channels;

  for (std::int64_t j = col_lane; j < vectors; j += p.cols_per_pass) {
    float mean[kVec] = {};
    float m2[kVec] = {};
    float n = 0.0f;
    for (std::int64_t r = r0 + row_lane; r < r1; r += p.row_lanes) {
      float v[kVec];
      load_halves<kVec>(x, r * p.channels + j * kVec, v);
      n += 1.0f;
      const float inv_n = 1.0f / n;  // one division per row, shared by the vector's channels
      for (int k = 0; k < kVec; ++k) {
        const float d = v[k] - mean[k];
        mean[k] += d * inv_n;
        m2[k] += d * (v[k] - mean[k]);
      }
    }
    for (int k = 0; k < kVec; ++k) {
      const std::int64_t e = 2 * (row_lane * p.channels + j * kVec + k);
      channel_stats[e] = mean[k];
      channel_stats[e + 1] = m2[k];
    }
  }
  __syncthreads();

  // One warp per group; only whole warps take part (the last warp of the block may be partial).
  const int lane = t % 32;
  const int warp = t / 32;
  const int whole_warps = int(blockDim.x) / 32;
  if (warp >= whole_warps) return;
  const std::int64_t cg = p.channels / p.groups;
  const std::int64_t entries = p.row_lanes * cg;
  for (int g = warp; g < p.groups; g += whole_warps) {
    MeanM2 acc;
    for (std::int64_t e = lane; e < entries; e += 32) {
      const int lane_of_entry = int(e / cg);
      const std::int64_t i = 2 * (lane_of_entry * p.channels + g * cg + e % cg);
      const float mean = channel_stats[i];
      const float m2 = channel_stats[i + 1];
      acc = merge_stats(acc, MeanM2{float(lane_rows(p, r1 - r0, lane_of_entry)), mean, m2});
    }
    acc = warp_merge_stats(acc);
    if (lane == 0) {
      const std::int64_t i = 2 * ((b * p.slices + s) * p.groups + g);
      p.partials[i] = acc.mean;
      p.partials[i + 1] = acc.m2;
    }
  }
}

// One block per batch element, kGroupNormThreads threads; needs 2 * G floats of dynamic shared memory.
template <class T>
__global__ void __launch_bounds__(kGroupNormThreads) group_norm_finalize_kernel(GroupNormParams<T> p) {
  SDGEN_DYNAMIC_SHARED(float, group_stats);  // [G, 2]: mean, rstd
  const int t = int(threadIdx.x);
  const int lane = t % 32;
  const int warp = t / 32;
  const int warps = int(blockDim.x) / 32;
  const std::int64_t b = blockIdx.x;
  const std::int64_t cg = p.channels / p.groups;
  for (int g = warp; g < p.groups; g += warps) {
    MeanM2 acc;
    for (std::int64_t s = lane; s < p.slices; s += 32) {
      const std::int64_t i = 2 * ((b * p.slices + s) * p.groups + g);
      const float count = float((slice_begin(p, s + 1) - slice_begin(p, s)) * cg);
      acc = merge_stats(acc, MeanM2{count, p.partials[i], p.partials[i + 1]});
    }
    acc = warp_merge_stats(acc);
    if (lane == 0) {
      group_stats[2 * g] = acc.mean;
      group_stats[2 * g + 1] = 1.0f / sqrtf(acc.m2 / acc.count + p.eps);  // biased variance, as torch
    }
  }
  __syncthreads();
  for (std::int64_t c = t; c < p.channels; c += blockDim.x) {
    const std::int64_t g = c / cg;
    const float mean = group_stats[2 * g];
    const float rstd = group_stats[2 * g + 1];
    const float scale = to_float(p.gamma[c]) * rstd;
    p.scale[b * p.channels + c] = scale;
    p.shift[b * p.channels + c] = to_float(p.beta[c]) - mean * scale;
  }
}

template <int kVec, Act A, class T>
__global__ void __launch_bounds__(kGroupNormThreads) group_norm_apply_kernel(GroupNormParams<T> p) {
  const int t = int(threadIdx.x);
  const std::int64_t s = blockIdx.x;
  const std::int64_t b = blockIdx.y;
  const std::int64_t r0 = slice_begin(p, s);
  const std::int64_t r1 = slice_begin(p, s + 1);
  const int col_lane = t % p.cols_per_pass;
  const int row_lane = t / p.cols_per_pass;
  const std::int64_t vectors = p.channels / kVec;
  const GlobalPtr<const T> x = p.x + b * p.pixels * p.channels;
  const GlobalPtr<T> out = p.out + b * p.pixels * p.channels;

  for (std::int64_t j = col_lane; j < vectors; j += p.cols_per_pass) {
    float scale[kVec];
    float shift[kVec];
    for (int k = 0; k < kVec; ++k) {
      scale[k] = p.scale[b * p.channels + j * kVec + k];
      shift[k] = p.shift[b * p.channels + j * kVec + k];
    }
    for (std::int64_t r = r0 + row_lane; r < r1; r += p.row_lanes) {
      float v[kVec];
      load_halves<kVec>(x, r * p.channels + j * kVec, v);
      for (int k = 0; k < kVec; ++k) v[k] = activate<A>(v[k] * scale[k] + shift[k]);
      store_halves<kVec>(out, r * p.channels + j * kVec, v);
    }
  }
}

// out = act((x - mean) * rstd * gamma + beta), statistics per (batch element, group of C/G
// channels) over x [B, N, C] (contiguous); gamma and beta [C]; out [B, N, C] may be x.
// workspace: group_norm_workspace_floats(geometry) floats, used by this call only (the kernels run
// in order on `stream`, so one workspace may serve every group norm issued on that stream).
template <class T>
struct GroupNormLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<const T> gamma;
  GlobalPtr<const T> beta;
  GlobalPtr<T> out;
  GlobalPtr<float> workspace;
  GroupNormGeometry geometry;
  float eps = 1e-5f;
  Act act = Act::None;  // after the affine transform; the op set uses None and Silu
  Stream stream = nullptr;
};

template <class T>
void launch_group_norm(const GroupNormLaunch<T>& l) {
  const GroupNormGeometry& g = l.geometry;
  if (g.batch == 0 || g.pixels == 0 || g.channels == 0) return;
  const bool vectors = g.channels % kHalvesPerVector == 0 && vector_aligned(l.x) && vector_aligned(l.out);
  const GroupNormPlan plan = plan_group_norm(g, vectors ? kHalvesPerVector : 1);
  const std::int64_t per_channel = g.batch * g.channels;
  const GroupNormParams<T> p{.x = l.x,
                          .gamma = l.gamma,
                          .beta = l.beta,
                          .out = l.out,
                          .partials = l.workspace.slice(0, plan.partial_floats),
                          .scale = l.workspace.slice(plan.partial_floats, per_channel),
                          .shift = l.workspace.slice(plan.partial_floats + per_channel, per_channel),
                          .pixels = g.pixels,
                          .channels = g.channels,
                          .groups = g.groups,
                          .slices = plan.slices,
                          .cols_per_pass = plan.cols_per_pass,
                          .row_lanes = plan.row_lanes,
                          .eps = l.eps};
  const dim3 grid(static_cast<unsigned>(plan.slices), static_cast<unsigned>(g.batch));
  const dim3 block(static_cast<unsigned>(plan.cols_per_pass * plan.row_lanes));
  with_vector_width(vectors, [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    launch(SDGEN_KERNEL(group_norm_stats_kernel<kVec, T>),
           {.grid = grid,
            .block = block,
            .shared_bytes = std::size_t(2 * plan.row_lanes * g.channels) * sizeof(float),
            .stream = l.stream},
           p);
    launch(SDGEN_KERNEL(group_norm_finalize_kernel<T>),
           {.grid = static_cast<unsigned>(g.batch),
            .block = kGroupNormThreads,
            .shared_bytes = std::size_t(2 * g.groups) * sizeof(float),
            .stream = l.stream},
           p);
    with_act(l.act, [&](auto act) {
      constexpr Act kAct = decltype(act)::value;
      launch(SDGEN_KERNEL(group_norm_apply_kernel<kVec, kAct, T>), {.grid = grid, .block = block, .stream = l.stream},
             p);
    });
  });
}

// ---- LayerNorm

inline constexpr int kLayerNormWarps = 4;  // rows per block

template <class T>
struct LayerNormParams {
  GlobalPtr<const T> x;
  GlobalPtr<const T> gamma;
  GlobalPtr<const T> beta;
  GlobalPtr<T> out;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t x_row_stride = 0;
  std::int64_t out_row_stride = 0;
  float eps = 0.0f;
};

template <int kVec, class T>
__global__ void __launch_bounds__(32 * kLayerNormWarps) layer_norm_kernel(LayerNormParams<T> p) {
  const int lane = int(threadIdx.x) % 32;
  const std::int64_t row = std::int64_t(blockIdx.x) * kLayerNormWarps + int(threadIdx.x) / 32;
  if (row >= p.rows) return;  // the whole warp leaves together
  const GlobalPtr<const T> x = p.x + row * p.x_row_stride;
  const GlobalPtr<T> out = p.out + row * p.out_row_stride;
  const std::int64_t vectors = p.cols / kVec;

  MeanM2 stats;
  for (std::int64_t j = lane; j < vectors; j += 32) {
    float v[kVec];
    load_halves<kVec>(x, j * kVec, v);
    stats = merge_stats(stats, stats_of<kVec>(v));
  }
  stats = warp_merge_stats(stats);
  const float rstd = 1.0f / sqrtf(stats.m2 / stats.count + p.eps);

  for (std::int64_t j = lane; j < vectors; j += 32) {
    float v[kVec];
    float gamma[kVec];
    float beta[kVec];
    load_halves<kVec>(x, j * kVec, v);
    load_halves<kVec>(p.gamma, j * kVec, gamma);
    load_halves<kVec>(p.beta, j * kVec, beta);
    for (int k = 0; k < kVec; ++k) v[k] = (v[k] - stats.mean) * rstd * gamma[k] + beta[k];
    store_halves<kVec>(out, j * kVec, v);
  }
}

// out[r, :] = (x[r, :] - mean_r) * rstd_r * gamma + beta over each row of C = geometry.x.cols;
// x and out are "rows" (geometry from check_layer_norm); out may be x (then with x's row stride).
template <class T>
struct LayerNormLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<const T> gamma;
  GlobalPtr<const T> beta;
  GlobalPtr<T> out;
  LayerNormGeometry geometry;
  float eps = 1e-5f;
  Stream stream = nullptr;
};

template <class T>
void launch_layer_norm(const LayerNormLaunch<T>& l) {
  const LayerNormGeometry& g = l.geometry;
  if (g.x.rows == 0 || g.x.cols == 0) return;
  const LayerNormParams<T> p{.x = l.x,
                          .gamma = l.gamma,
                          .beta = l.beta,
                          .out = l.out,
                          .rows = g.x.rows,
                          .cols = g.x.cols,
                          .x_row_stride = g.x.row_stride,
                          .out_row_stride = g.out.row_stride,
                          .eps = l.eps};
  const bool vectors = g.x.cols % kHalvesPerVector == 0 && g.x.row_stride % kHalvesPerVector == 0 &&
                       g.out.row_stride % kHalvesPerVector == 0 && vector_aligned(l.x) && vector_aligned(l.out) &&
                       vector_aligned(l.gamma) && vector_aligned(l.beta);
  const unsigned blocks = static_cast<unsigned>((g.x.rows + kLayerNormWarps - 1) / kLayerNormWarps);
  with_vector_width(vectors, [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    launch(SDGEN_KERNEL(layer_norm_kernel<kVec, T>),
           {.grid = blocks, .block = 32 * kLayerNormWarps, .stream = l.stream}, p);
  });
}

}  // namespace sdgen::cuda
