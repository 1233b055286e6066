// The memory-bound ops: geglu, activation, add, nearest upsample, channel concat, timestep
// embedding, token embedding. Each is one pass over its tensors, split across threads in contiguous
// ranges, with the math on 16-lane vectors (vec.hpp). They are ours rather than oneDNN eltwise /
// binary / concat primitives because those would each need a primitive per shape and, for GEGLU
// (a * gelu(b) over the two halves of a row), two passes and a temporary.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/vec.hpp"

namespace sdgen::cpu {

namespace {

// Elements per thread below which splitting costs more than it saves (an OpenMP region costs a
// few microseconds; 16K floats take about as long to stream).
constexpr std::int64_t kMinElements = 1 << 14;

template <Act A>
f32x16 act(f32x16 x) {
  if constexpr (A == Act::Silu) return vsilu(x);
  if constexpr (A == Act::Gelu) return vgelu(x);
  if constexpr (A == Act::GeluTanh) return vgelu_tanh(x);
  if constexpr (A == Act::QuickGelu) return vquick_gelu(x);
  if constexpr (A == Act::None) return x;
}

template <Act A>
void activation_range(const float* x, float* out, std::int64_t b, std::int64_t e) {
  std::int64_t i = b;
  for (; i + kLanes <= e; i += kLanes) store(out + i, act<A>(load(x + i)));
  if (i < e) {
    const int n = static_cast<int>(e - i);
    store_partial(out + i, act<A>(load_partial(x + i, n)), n);
  }
}

}  // namespace

void activation(Context& ctx, std::int64_t n, const float* x, float* out, Act a) {
  parallel_for(ctx.threads, n, kMinElements, [&](std::int64_t b, std::int64_t e) {
    switch (a) {
      case Act::None:
        if (out != x) std::memcpy(out + b, x + b, static_cast<std::size_t>(e - b) * sizeof(float));
        break;
      case Act::Silu: activation_range<Act::Silu>(x, out, b, e); break;
      case Act::Gelu: activation_range<Act::Gelu>(x, out, b, e); break;
      case Act::GeluTanh: activation_range<Act::GeluTanh>(x, out, b, e); break;
      case Act::QuickGelu: activation_range<Act::QuickGelu>(x, out, b, e); break;
    }
  });
}

void geglu(Context& ctx, const GegluGeometry& g, const float* x, float* out) {
  const std::int64_t f = g.out.cols;
  parallel_for(ctx.threads, g.x.rows, std::max<std::int64_t>(1, kMinElements / f), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* hidden = x + r * g.x.row_stride;
      const float* gate = hidden + f;
      float* o = out + r * g.out.row_stride;
      std::int64_t i = 0;
      for (; i + kLanes <= f; i += kLanes) store(o + i, load(hidden + i) * vgelu(load(gate + i)));
      if (i < f) {
        const int n = static_cast<int>(f - i);
        store_partial(o + i, load_partial(hidden + i, n) * vgelu(load_partial(gate + i, n)), n);
      }
    }
  });
}

void add(Context& ctx, const AddGeometry& g, const float* a, const float* b, float* out, const AddArgs& args) {
  const float alpha = args.alpha, beta = args.beta;
  if (!b) {
    parallel_for(ctx.threads, g.n, kMinElements, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) out[i] = a[i] * alpha;
    });
    return;
  }
  // a is rows of b's size: b repeats along them.
  const std::int64_t period = g.b_period, rows = g.n / period;
  parallel_for(ctx.threads, rows, std::max<std::int64_t>(1, kMinElements / period), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* ar = a + r * period;
      float* o = out + r * period;
      for (std::int64_t i = 0; i < period; ++i) o[i] = ar[i] * alpha + b[i] * beta;
    }
  });
}

namespace {

// torch's nearest source index (upsample_nearest in ATen): the scale in F32, floored, clamped.
std::int64_t nearest_source(std::int64_t dst, std::int64_t in_size, std::int64_t out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  return std::min(static_cast<std::int64_t>(std::floor(static_cast<float>(dst) * scale)), in_size - 1);
}

}  // namespace

void upsample_nearest(Context& ctx, const UpsampleGeometry& g, const float* x, float* out) {
  const std::int64_t row = g.wo * g.c;
  const auto bytes = static_cast<std::size_t>(g.c) * sizeof(float);
  std::vector<std::int64_t> src_col(static_cast<std::size_t>(g.wo));
  for (std::int64_t xo = 0; xo < g.wo; ++xo) src_col[static_cast<std::size_t>(xo)] = nearest_source(xo, g.w, g.wo);
  parallel_for(ctx.threads, g.batch * g.ho, std::max<std::int64_t>(1, kMinElements / row), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {  // r = b * Ho + output row
      const std::int64_t b = r / g.ho, y = nearest_source(r % g.ho, g.h, g.ho);
      const float* src = x + ((b * g.h + y) * g.w) * g.c;
      float* dst = out + r * row;
      for (std::int64_t xo = 0; xo < g.wo; ++xo)
        std::memcpy(dst + xo * g.c, src + src_col[static_cast<std::size_t>(xo)] * g.c, bytes);
    }
  });
}

void concat_channels(Context& ctx, const ConcatGeometry& g, const float* a, const float* b, float* out) {
  const std::int64_t c = g.ca + g.cb;
  parallel_for(ctx.threads, g.pixels, std::max<std::int64_t>(1, kMinElements / c), [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      std::memcpy(out + p * c, a + p * g.ca, static_cast<std::size_t>(g.ca) * sizeof(float));
      std::memcpy(out + p * c + g.ca, b + p * g.cb, static_cast<std::size_t>(g.cb) * sizeof(float));
    }
  });
}

void timestep_embedding(Context&, const TimestepGeometry& g, const float* t, float* out, const TimestepEmbeddingArgs& args) {
  // In float, in the order diffusers' get_timestep_embedding computes it in torch, so the
  // rounding matches: exponent = (-ln(max_period) * i) / (half - shift); freq = exp(exponent);
  // arg = t * freq.
  const std::int64_t half = g.dim / 2;
  const float neg_log = static_cast<float>(-std::log(static_cast<double>(args.max_period)));
  const float denom = static_cast<float>(static_cast<double>(half) - static_cast<double>(args.freq_shift));
  for (std::int64_t b = 0; b < g.batch; ++b) {
    float* row = out + b * g.dim;
    for (std::int64_t i = 0; i < half; ++i) {
      const float exponent = (neg_log * static_cast<float>(i)) / denom;
      const float arg = t[b] * std::exp(exponent);
      const float s = std::sin(arg), c = std::cos(arg);
      row[i] = args.flip_sin_to_cos ? c : s;
      row[half + i] = args.flip_sin_to_cos ? s : c;
    }
    if (g.dim % 2) row[g.dim - 1] = 0.0f;
  }
}

void embedding(Context& ctx, const EmbeddingGeometry& g, const std::int32_t* ids, const float* table, float* out) {
  for (std::int64_t i = 0; i < g.tokens; ++i)
    if (ids[i] < 0 || ids[i] >= g.vocab)
      throw Error(cat("embedding: id ", ids[i], " at position ", i, " is outside the table of ", g.vocab, " rows"));
  const auto bytes = static_cast<std::size_t>(g.dim) * sizeof(float);
  parallel_for(ctx.threads, g.tokens, std::max<std::int64_t>(1, kMinElements / g.dim), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) std::memcpy(out + i * g.dim, table + ids[i] * g.dim, bytes);
  });
}

}  // namespace sdgen::cpu
