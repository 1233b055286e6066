// group_norm (+ SiLU) and layer_norm over NHWC / token rows, fp32 with statistics accumulated in
// double (group norm) or in 16 float lanes per row (layer norm).
//
// GroupNorm: x [B, P, C] (P = H*W), groups of C/G adjacent channels. In NHWC a group is not
// contiguous: each pixel row holds a slice of every group. So the statistics are gathered per
// channel (a loop over rows whose inner loop over channels vectorises, one double accumulator per
// channel: no reassociation needed) and folded into groups afterwards. Two passes (mean, then the
// mean of squared deviations) rather than E[x^2] - E[x]^2, which cancels catastrophically when
// |mean| >> std. The third pass applies per-channel scale/shift (gamma * rstd, beta - mean * that)
// and SiLU in the same loop, so GroupNorm + SiLU reads and writes the tensor once.
// Threads split the rows of each batch element; each writes its own partial sums, reduced after.
//
// LayerNorm: one row of C (<= 1280 in SD) per item; float lanes hold at most C/16 terms each,
// then the 16 lanes are summed in double.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/vec.hpp"

namespace sdgen::cpu {

namespace {

// Per-channel sums over rows [r0, r1) of one batch element, into acc[0..c).
void channel_sums(const float* x, std::int64_t c, std::int64_t r0, std::int64_t r1, double* acc) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* row = x + r * c;
    for (std::int64_t i = 0; i < c; ++i) acc[i] += static_cast<double>(row[i]);
  }
}

void channel_sq_dev(const float* x, std::int64_t c, std::int64_t r0, std::int64_t r1, const float* mean, double* acc) {
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* row = x + r * c;
    for (std::int64_t i = 0; i < c; ++i) {
      const double d = static_cast<double>(row[i]) - static_cast<double>(mean[i]);
      acc[i] += d * d;
    }
  }
}

// y = x * scale + shift per channel, then SiLU if asked, over rows [r0, r1).
void scale_shift(const float* x, float* y, std::int64_t c, std::int64_t r0, std::int64_t r1, const float* scale,
                 const float* shift, bool silu) {
  const std::int64_t full = c / kLanes * kLanes;
  const int tail = static_cast<int>(c - full);
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    for (std::int64_t i = 0; i < full; i += kLanes) {
      f32x16 v = load(xr + i) * load(scale + i) + load(shift + i);
      store(yr + i, silu ? vsilu(v) : v);
    }
    if (tail) {
      f32x16 v = load_partial(xr + full, tail) * load_partial(scale + full, tail) + load_partial(shift + full, tail);
      store_partial(yr + full, silu ? vsilu(v) : v, tail);
    }
  }
}

}  // namespace

void group_norm(Context& ctx, const GroupNormGeometry& g, const float* x, const float* gamma, const float* beta,
                float* out, const GroupNormArgs& args) {
  const std::int64_t c = g.channels, p = g.pixels, cg = c / g.groups;
  // Row chunks per batch element: enough for every thread, not so many that the partial sums cost.
  const std::int64_t chunks = std::min<std::int64_t>(p, 4 * ctx.threads);
  const std::int64_t items = g.batch * chunks;
  std::vector<double> partial(static_cast<std::size_t>(items * c));
  std::vector<float> mean_c(static_cast<std::size_t>(g.batch * c)), scale(mean_c.size()), shift(mean_c.size());
  std::vector<double> group_mean(static_cast<std::size_t>(g.batch * g.groups));
  const double count = static_cast<double>(p * cg);

  // Folds the per-chunk per-channel sums of batch element b into per-group sums.
  auto group_totals = [&](std::int64_t b, std::int64_t grp) {
    double s = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k)
      for (std::int64_t i = grp * cg; i < (grp + 1) * cg; ++i) s += partial[static_cast<std::size_t>((b * chunks + k) * c + i)];
    return s;
  };
  auto chunk_rows = [&](std::int64_t item, std::int64_t& b, std::int64_t& r0, std::int64_t& r1) {
    b = item / chunks;
    const std::int64_t k = item % chunks;
    r0 = p * k / chunks;
    r1 = p * (k + 1) / chunks;
  };

  // Pass 1: means.
  parallel_for(ctx.threads, items, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      std::int64_t b, r0, r1;
      chunk_rows(item, b, r0, r1);
      double* acc = partial.data() + item * c;
      std::fill(acc, acc + c, 0.0);
      channel_sums(x + b * p * c, c, r0, r1, acc);
    }
  });
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const double m = group_totals(b, grp) / count;
      group_mean[static_cast<std::size_t>(b * g.groups + grp)] = m;
      for (std::int64_t i = grp * cg; i < (grp + 1) * cg; ++i) mean_c[static_cast<std::size_t>(b * c + i)] = static_cast<float>(m);
    }

  // Pass 2: variances (biased, as torch), around the mean rounded to float, which is what the
  // normalisation subtracts; the rounding moves the variance by (mean - float(mean))^2, far below
  // float precision.
  parallel_for(ctx.threads, items, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      std::int64_t b, r0, r1;
      chunk_rows(item, b, r0, r1);
      double* acc = partial.data() + item * c;
      std::fill(acc, acc + c, 0.0);
      channel_sq_dev(x + b * p * c, c, r0, r1, mean_c.data() + b * c, acc);
    }
  });
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t grp = 0; grp < g.groups; ++grp) {
      const double var = group_totals(b, grp) / count;
      const double rstd = 1.0 / std::sqrt(var + static_cast<double>(args.eps));
      const double m = group_mean[static_cast<std::size_t>(b * g.groups + grp)];
      for (std::int64_t i = grp * cg; i < (grp + 1) * cg; ++i) {
        const double s = static_cast<double>(gamma[i]) * rstd;
        scale[static_cast<std::size_t>(b * c + i)] = static_cast<float>(s);
        shift[static_cast<std::size_t>(b * c + i)] = static_cast<float>(static_cast<double>(beta[i]) - m * s);
      }
    }

  // Pass 3: normalise, affine, SiLU.
  parallel_for(ctx.threads, items, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t item = i0; item < i1; ++item) {
      std::int64_t b, r0, r1;
      chunk_rows(item, b, r0, r1);
      scale_shift(x + b * p * c, out + b * p * c, c, r0, r1, scale.data() + b * c, shift.data() + b * c, args.silu);
    }
  });
}

void layer_norm(Context& ctx, const LayerNormGeometry& g, const float* x, const float* gamma, const float* beta,
                float* out, const LayerNormArgs& args) {
  const std::int64_t c = g.x.cols;
  const std::int64_t full = c / kLanes * kLanes;
  const int tail = static_cast<int>(c - full);
  parallel_for(ctx.threads, g.x.rows, 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * g.x.row_stride;
      float* yr = out + r * g.out.row_stride;
      f32x16 acc{};
      for (std::int64_t i = 0; i < full; i += kLanes) acc += load(xr + i);
      if (tail) acc += load_partial(xr + full, tail);
      double sum = 0.0;
      for (int l = 0; l < kLanes; ++l) sum += static_cast<double>(acc[l]);
      const float mean = static_cast<float>(sum / static_cast<double>(c));
      f32x16 sq{};
      for (std::int64_t i = 0; i < full; i += kLanes) {
        const f32x16 d = load(xr + i) - mean;
        sq += d * d;
      }
      if (tail) {
        // Zero lanes past the tail would add mean^2 each; mask them out.
        f32x16 d = load_partial(xr + full, tail) - mean;
        for (int l = tail; l < kLanes; ++l) d[l] = 0.0f;
        sq += d * d;
      }
      double ss = 0.0;
      for (int l = 0; l < kLanes; ++l) ss += static_cast<double>(sq[l]);
      const float rstd = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(c) + static_cast<double>(args.eps)));
      for (std::int64_t i = 0; i < full; i += kLanes)
        store(yr + i, (load(xr + i) - mean) * rstd * load(gamma + i) + load(beta + i));
      if (tail)
        store_partial(yr + full,
                      (load_partial(xr + full, tail) - mean) * rstd * load_partial(gamma + full, tail) +
                          load_partial(beta + full, tail),
                      tail);
    }
  });
}

}  // namespace sdgen::cpu
