// The elementwise ops of the CUDA backend on 16-bit tensors (fp16 or bf16, the template parameter
// T of every kernel): activation, add (with broadcast) and GEGLU; also the 16-bit vector access and
// the activation functions that norms.cuh reuses.
//
// Each op reads its inputs once and writes its output once, so it is bound by memory bandwidth
// when the accesses are wide and enough of them are in flight. A thread moves 8 halves per operand
// per step (one 16-byte uint4 load or store: LDG.128 / STG.128) in a grid-stride loop; the grid is
// at most one full wave of 256-thread blocks on an H100 (132 SMs x 8 resident blocks), so a large
// tensor is covered by a few steps per thread and never ends in a partial wave. The 8-wide path
// needs every pointer 16-byte aligned and, where the op has rows (GEGLU's two halves, add's
// broadcast period), rows made of whole vectors; otherwise the launcher instantiates the same
// kernel 1-wide, one half per step. A flat tensor (activation, add without broadcast) whose length
// is not a multiple of 8 keeps the vector path and finishes its last partial vector element by
// element.
//
// The budget, by arithmetic (block size, wave count and everything below are not yet measured on
// a GPU): an H100 moves 3.35 TB/s over 132 SMs at 1.75 GHz, 14.5 bytes per SM per cycle, and
// issues 128 fp32 lanes of instructions per SM per cycle. GEGLU and add with broadcast find an
// item's row with one 64-bit division (a few dozen instructions) per 8 elements, whose 48 bytes
// take ~3 SM-cycles to move against ~0.5 to issue the division; so the flat loop is kept over a
// 2D decomposition.
//
// Precision: 16 bits in, fp32 math, one rounding to the storage format at the store. The activations use the
// accurate expf/erff and IEEE division. At 20-35 instructions per element (SiLU to erf-GELU) the
// math takes about as long as moving the element's 4 bytes, so on a GPU it is worth measuring
// __expf/__fdividef for the sigmoid forms (the emulator would need them too; their relative error,
// ~1e-6, is far below fp16's). tanh-GELU is written as x * sigmoid(2u), which equals
// 0.5 x (1 + tanh u) exactly and saturates cleanly at both ends (e^{-2u} = inf gives x / inf = -0;
// e^{-2u} = 0 gives x).
//
// Aliasing: every element is read and written by the same thread in the same step, so out may be
// x (activation) or a / b (add) exactly, as backend.hpp allows; nothing is __restrict__.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/backend.hpp"
#include "kernels/cuda/device_api.cuh"
#include "kernels/op_checks.hpp"

namespace sdgen::cuda {

// ---- 16-bit vectors

// 16-bit elements per 16-byte vector access.
inline constexpr int kHalvesPerVector = 8;

// Reads elements [i, i + kVec) of p as floats; kVec is kHalvesPerVector (one 16-byte load: p + i
// must be 16-byte aligned) or 1.
// (p may be a view of T or of const T.)
template <int kVec, class E>
__device__ __forceinline__ void load_halves(GlobalPtr<E> p, std::int64_t i, float (&v)[kVec]) {
  using T = std::remove_const_t<E>;
  static_assert(kVec == kHalvesPerVector || kVec == 1);
  if constexpr (kVec == kHalvesPerVector) {
    const uint4 q = (p + i).template reinterpret<const uint4>()[0];
    const std::uint32_t words[4] = {q.x, q.y, q.z, q.w};
    for (int k = 0; k < 4; ++k) {  // the lower-indexed element sits in the low 16 bits
      v[2 * k] = low_float<T>(words[k]);
      v[2 * k + 1] = high_float<T>(words[k]);
    }
  } else {
    v[0] = to_float(T(p[i]));
  }
}

// Writes v, rounded to T, to elements [i, i + kVec) of p (alignment as load_halves).
template <int kVec, class T>
__device__ __forceinline__ void store_halves(GlobalPtr<T> p, std::int64_t i, const float (&v)[kVec]) {
  static_assert(kVec == kHalvesPerVector || kVec == 1);
  if constexpr (kVec == kHalvesPerVector) {
    uint4 q;
    q.x = pack2(from_float<T>(v[0]), from_float<T>(v[1]));
    q.y = pack2(from_float<T>(v[2]), from_float<T>(v[3]));
    q.z = pack2(from_float<T>(v[4]), from_float<T>(v[5]));
    q.w = pack2(from_float<T>(v[6]), from_float<T>(v[7]));
    (p + i).template reinterpret<uint4>()[0] = q;
  } else {
    p[i] = from_float<T>(v[0]);
  }
}

// Whether a view may be accessed kHalvesPerVector at a time from its start.
template <class T>
inline bool vector_aligned(GlobalPtr<T> p) {
  return reinterpret_cast<std::uintptr_t>(p.raw()) % 16 == 0;
}

// ---- activations (fp32)

// x * sigmoid(z) = x / (1 + e^-z): 0 * (-0) at z = -inf, x at z = +inf, never NaN for finite x.
__device__ __forceinline__ float times_sigmoid(float x, float z) { return x / (1.0f + expf(-z)); }

template <Act A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Act::Silu) {
    return times_sigmoid(x, x);
  } else if constexpr (A == Act::Gelu) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  } else if constexpr (A == Act::GeluTanh) {
    return times_sigmoid(x, 2.0f * 0.79788456080286536f * (x + 0.044715f * x * x * x));
  } else if constexpr (A == Act::QuickGelu) {
    return times_sigmoid(x, 1.702f * x);
  } else {
    static_assert(A == Act::None);
    return x;
  }
}

// Calls f(std::integral_constant<Act, a>{}): turns the runtime activation into a template argument.
template <class F>
void with_act(Act a, F&& f) {
  switch (a) {
    case Act::None: f(std::integral_constant<Act, Act::None>{}); return;
    case Act::Silu: f(std::integral_constant<Act, Act::Silu>{}); return;
    case Act::Gelu: f(std::integral_constant<Act, Act::Gelu>{}); return;
    case Act::GeluTanh: f(std::integral_constant<Act, Act::GeluTanh>{}); return;
    case Act::QuickGelu: f(std::integral_constant<Act, Act::QuickGelu>{}); return;
  }
  throw BackendError(cat("CUDA kernels: unknown activation ", static_cast<int>(a)));
}

// Calls f(std::integral_constant<int, kHalvesPerVector>{}) when `vector`, else with 1.
template <class F>
void with_vector_width(bool vector, F&& f) {
  if (vector)
    f(std::integral_constant<int, kHalvesPerVector>{});
  else
    f(std::integral_constant<int, 1>{});
}

// ---- launch geometry shared by the elementwise kernels

inline constexpr int kElementwiseThreads = 256;
// One full wave on an H100: 132 SMs x (2048 resident threads / 256).
inline constexpr std::int64_t kElementwiseMaxBlocks = 132 * 8;

inline unsigned elementwise_blocks(std::int64_t items) {
  return static_cast<unsigned>(
      std::clamp<std::int64_t>((items + kElementwiseThreads - 1) / kElementwiseThreads, 1, kElementwiseMaxBlocks));
}

__device__ __forceinline__ std::int64_t grid_thread_index() {
  return std::int64_t(blockIdx.x) * std::int64_t(blockDim.x) + std::int64_t(threadIdx.x);
}

__device__ __forceinline__ std::int64_t grid_threads() { return std::int64_t(gridDim.x) * std::int64_t(blockDim.x); }

// ---- kernels

template <class T>
struct ActivationParams {
  GlobalPtr<const T> x;
  GlobalPtr<T> out;  // may be x
  std::int64_t n = 0;
};

template <Act A, int kVec, class T>
__device__ __forceinline__ void activation_step(const ActivationParams<T>& p, std::int64_t i) {
  float v[kVec];
  load_halves<kVec>(p.x, i, v);
  for (int k = 0; k < kVec; ++k) v[k] = activate<A>(v[k]);
  store_halves<kVec>(p.out, i, v);
}

template <Act A, int kVec, class T>
__global__ void __launch_bounds__(kElementwiseThreads) activation_kernel(ActivationParams<T> p) {
  const std::int64_t items = (p.n + kVec - 1) / kVec;
  for (std::int64_t item = grid_thread_index(); item < items; item += grid_threads()) {
    const std::int64_t i = item * kVec;
    if (i + kVec <= p.n) {
      activation_step<A, kVec>(p, i);
    } else {
      for (std::int64_t j = i; j < p.n; ++j) activation_step<A, 1>(p, j);
    }
  }
}

template <class T>
struct AddParams {
  GlobalPtr<const T> a;
  GlobalPtr<const T> b;  // b_period elements; not read when b_period is 0
  GlobalPtr<T> out;      // may be a, or b when b_period == n
  std::int64_t n = 0;
  std::int64_t b_period = 0;
  float alpha = 1.0f;
  float beta = 1.0f;
};

template <int kVec, class T>
__device__ __forceinline__ void add_step(const AddParams<T>& p, std::int64_t i) {
  float v[kVec];
  load_halves<kVec>(p.a, i, v);
  if (p.b_period > 0) {
    float w[kVec];  // within one copy of b (see launch_add)
    load_halves<kVec>(p.b, i < p.b_period ? i : i % p.b_period, w);
    for (int k = 0; k < kVec; ++k) v[k] = v[k] * p.alpha + w[k] * p.beta;
  } else {
    for (int k = 0; k < kVec; ++k) v[k] *= p.alpha;
  }
  store_halves<kVec>(p.out, i, v);
}

template <int kVec, class T>
__global__ void __launch_bounds__(kElementwiseThreads) add_kernel(AddParams<T> p) {
  const std::int64_t items = (p.n + kVec - 1) / kVec;
  for (std::int64_t item = grid_thread_index(); item < items; item += grid_threads()) {
    const std::int64_t i = item * kVec;
    if (i + kVec <= p.n) {
      add_step<kVec>(p, i);
    } else {
      for (std::int64_t j = i; j < p.n; ++j) add_step<1>(p, j);
    }
  }
}

template <class T>
struct GegluParams {
  GlobalPtr<const T> x;  // rows of 2f: [hidden | gate]
  GlobalPtr<T> out;      // rows of f
  std::int64_t rows = 0;
  std::int64_t f = 0;
  std::int64_t x_row_stride = 0;
  std::int64_t out_row_stride = 0;
};

template <int kVec, class T>
__global__ void __launch_bounds__(kElementwiseThreads) geglu_kernel(GegluParams<T> p) {
  const std::int64_t per_row = p.f / kVec;  // kVec divides f on the vector path
  const std::int64_t items = p.rows * per_row;
  for (std::int64_t item = grid_thread_index(); item < items; item += grid_threads()) {
    const std::int64_t r = item / per_row;
    const std::int64_t c = (item - r * per_row) * kVec;
    float hidden[kVec];
    float gate[kVec];
    load_halves<kVec>(p.x, r * p.x_row_stride + c, hidden);
    load_halves<kVec>(p.x, r * p.x_row_stride + p.f + c, gate);
    for (int k = 0; k < kVec; ++k) hidden[k] *= activate<Act::Gelu>(gate[k]);
    store_halves<kVec>(p.out, r * p.out_row_stride + c, hidden);
  }
}

// ---- launchers

// out = act(x) over n contiguous elements; out may be x.
template <class T>
struct ActivationLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<T> out;
  std::int64_t n = 0;
  Act act = Act::None;
  Stream stream = nullptr;
};

template <class T>
void launch_activation(const ActivationLaunch<T>& l) {
  if (l.n == 0 || (l.act == Act::None && l.out.raw() == l.x.raw())) return;
  const ActivationParams<T> p{.x = l.x, .out = l.out, .n = l.n};
  with_vector_width(vector_aligned(l.x) && vector_aligned(l.out), [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    with_act(l.act, [&](auto act) {
      constexpr Act kAct = decltype(act)::value;
      launch(SDGEN_KERNEL(activation_kernel<kAct, kVec, T>),
             {.grid = elementwise_blocks((l.n + kVec - 1) / kVec), .block = kElementwiseThreads, .stream = l.stream},
             p);
    });
  });
}

// out = a * alpha + b * beta over geometry.n contiguous elements. b (optional: geometry.b_period 0)
// holds b_period elements repeated along a (b's shape a suffix of a's). out may be a, or b when
// b_period == n.
template <class T>
struct AddLaunch {
  GlobalPtr<const T> a;
  GlobalPtr<const T> b;
  GlobalPtr<T> out;
  AddGeometry geometry;
  float alpha = 1.0f;
  float beta = 1.0f;
  Stream stream = nullptr;
};

template <class T>
void launch_add(const AddLaunch<T>& l) {
  const AddGeometry& g = l.geometry;
  if (g.n == 0) return;
  const AddParams<T> p{.a = l.a, .b = l.b, .out = l.out, .n = g.n, .b_period = g.b_period, .alpha = l.alpha,
                    .beta = l.beta};
  // A vector of a never straddles two copies of b when b has a's shape or whole vectors per copy.
  const bool b_vectors =
      g.b_period == 0 || ((g.b_period == g.n || g.b_period % kHalvesPerVector == 0) && vector_aligned(l.b));
  with_vector_width(b_vectors && vector_aligned(l.a) && vector_aligned(l.out), [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    launch(SDGEN_KERNEL(add_kernel<kVec, T>),
           {.grid = elementwise_blocks((g.n + kVec - 1) / kVec), .block = kElementwiseThreads, .stream = l.stream}, p);
  });
}

// out[r, :] = x[r, :f] * gelu_erf(x[r, f:]) (diffusers GEGLU: hidden, then gate), f = out.cols;
// x and out are "rows" (unit stride along a row, one row stride); out never overlaps x.
template <class T>
struct GegluLaunch {
  GlobalPtr<const T> x;
  GlobalPtr<T> out;
  GegluGeometry geometry;
  Stream stream = nullptr;
};

template <class T>
void launch_geglu(const GegluLaunch<T>& l) {
  const GegluGeometry& g = l.geometry;
  if (g.out.rows == 0 || g.out.cols == 0) return;
  const GegluParams<T> p{.x = l.x,
                      .out = l.out,
                      .rows = g.out.rows,
                      .f = g.out.cols,
                      .x_row_stride = g.x.row_stride,
                      .out_row_stride = g.out.row_stride};
  // Every row start and both halves of a row must land on 16-byte boundaries.
  const bool vectors = g.out.cols % kHalvesPerVector == 0 && g.x.row_stride % kHalvesPerVector == 0 &&
                       g.out.row_stride % kHalvesPerVector == 0 && vector_aligned(l.x) && vector_aligned(l.out);
  with_vector_width(vectors, [&](auto vec) {
    constexpr int kVec = decltype(vec)::value;
    launch(SDGEN_KERNEL(geglu_kernel<kVec, T>),
           {.grid = elementwise_blocks(g.out.rows * (g.out.cols / kVec)), .block = kElementwiseThreads,
            .stream = l.stream},
           p);
  });
}

}  // namespace sdgen::cuda
