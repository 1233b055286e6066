// ReferenceBackend: each op is its shared check, then its definition from kernels/backend.hpp as
// a loop (see reference_backend.hpp for why and for the precision). Elements are read through
// their tensor's strides by full index; for the operands the contract calls "rows", row r at
// r * row_stride; and by row-major position only where the check has required a contiguous
// tensor (elementwise ops, concat, embedding, group_norm's [B, pixels, C]).
#include "tests/support/reference_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "kernels/shape_backend.hpp"

namespace sdgen::test {

namespace {

// Element access through a tensor's strides: view(b, y, x, c) is the element [b, y, x, c].
template <class T>
class View {
 public:
  explicit View(const Tensor& t) : data_(static_cast<T*>(t.data)), strides_(t.strides) {}
  template <class... Index>
  T& operator()(Index... index) const {
    std::int64_t offset = 0;
    int dim = 0;
    ((offset += static_cast<std::int64_t>(index) * strides_[dim++]), ...);
    return data_[offset];
  }

 private:
  T* data_;
  Strides strides_;
};

// Row r of a "rows" operand: row<const float>(x, g.x, r) to read, row<float> to write.
template <class T>
T* row(const Tensor& t, const RowsView& rows, std::int64_t r) {
  return static_cast<T*>(t.data) + r * rows.row_stride;
}

float to_f32(double v) { return static_cast<float>(v); }

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Mean and 1/sqrt(variance + eps) of some values, two passes in double: the population variance
// (torch's norms divide by the count, not count - 1).
struct Moments {
  double mean = 0.0;
  double rstd = 0.0;
};
template <class ForEach>
Moments moments(const ForEach& for_each, std::int64_t count, float eps) {
  double sum = 0.0;
  for_each([&](double v) { sum += v; });
  const double mean = sum / static_cast<double>(count);
  double squares = 0.0;
  for_each([&](double v) { squares += (v - mean) * (v - mean); });
  return {mean, 1.0 / std::sqrt(squares / static_cast<double>(count) + static_cast<double>(eps))};
}

}  // namespace

double reference_act(Act act, double x) {
  switch (act) {
    case Act::None: return x;
    case Act::Silu: return x * sigmoid(x);
    case Act::Gelu: return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
    case Act::GeluTanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    case Act::QuickGelu: return x * sigmoid(1.702 * x);
  }
  return x;  // unreachable: the checks reject an unknown Act
}

OpSupport ReferenceBackend::op_support() {
  return OpSupport{.device = DeviceKind::Cpu, .activations = DType::F32, .params = DType::F32, .weights = {DType::F32}};
}

Tensor ReferenceBackend::prepare_weight(const Tensor& w, WeightUse use) {
  check_weight(op_support(), "prepare_weight", w, use);
  return w;
}

std::unique_ptr<Backend> ReferenceBackend::shape_only() const { return std::make_unique<ShapeBackend>(op_support()); }

// out[r, n] = act(sum_k x[r, k] w[n, k] + bias[n]) + residual[r, n]
void ReferenceBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) {
  const LinearGeometry g = check_linear(op_support(), x, w, out, args);
  const View<const float> weight(w);
  for (std::int64_t r = 0; r < g.x.rows; ++r) {
    const float* xr = row<const float>(x, g.x, r);
    float* yr = row<float>(out, g.out, r);
    for (std::int64_t n = 0; n < g.n; ++n) {
      double z = args.bias ? View<const float>(*args.bias)(n) : 0.0;
      for (std::int64_t k = 0; k < g.k; ++k) z += static_cast<double>(xr[k]) * weight(n, k);
      double y = reference_act(args.act, z);
      if (args.residual) y += row<const float>(*args.residual, g.residual, r)[n];
      yr[n] = to_f32(y);
    }
  }
}

// out[b, yo, xo, co] = (sum_{ky, kx, ci} x[b, yo*s - p + ky, xo*s - p + kx, ci] w[co, ky, kx, ci]
//                       + bias[co] + add_per_channel[b, co] + residual[b, yo, xo, co]) * output_scale,
// taps outside the image reading zero.
void ReferenceBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) {
  const Conv2dGeometry g = check_conv2d(op_support(), x, w, out, args);
  const View<const float> input(x), weight(w);
  const View<float> output(out);
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t yo = 0; yo < g.ho; ++yo)
      for (std::int64_t xo = 0; xo < g.wo; ++xo)
        for (std::int64_t co = 0; co < g.cout; ++co) {
          double acc = 0.0;
          for (std::int64_t ky = 0; ky < g.kh; ++ky) {
            const std::int64_t yi = yo * g.stride - g.padding + ky;
            if (yi < 0 || yi >= g.h) continue;
            for (std::int64_t kx = 0; kx < g.kw; ++kx) {
              const std::int64_t xi = xo * g.stride - g.padding + kx;
              if (xi < 0 || xi >= g.w) continue;
              for (std::int64_t ci = 0; ci < g.cin; ++ci)
                acc += static_cast<double>(input(b, yi, xi, ci)) * weight(co, ky, kx, ci);
            }
          }
          if (args.bias) acc += View<const float>(*args.bias)(co);
          if (args.add_per_channel) acc += View<const float>(*args.add_per_channel)(b, co);
          if (args.residual) acc += View<const float>(*args.residual)(b, yo, xo, co);
          output(b, yo, xo, co) = to_f32(acc * args.output_scale);
        }
}

// Per batch element and group of C/G adjacent channels over every pixel:
// out = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c], then SiLU if asked.
void ReferenceBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                                  const GroupNormArgs& args) {
  const GroupNormGeometry g = check_group_norm(op_support(), x, gamma, beta, out, args);
  // [B, H, W, C] and [B, N, C] are both [B, pixels, C] (the check asked for contiguous tensors).
  const Shape bpc{g.batch, g.pixels, g.channels};
  const View<const float> in(x.reshape(bpc)), scale(gamma), shift(beta);
  const View<float> output(out.reshape(bpc));
  const std::int64_t per_group = g.channels / g.groups;
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t group = 0; group < g.groups; ++group) {
      const std::int64_t c0 = group * per_group, c1 = c0 + per_group;
      const auto for_each = [&](auto&& f) {
        for (std::int64_t p = 0; p < g.pixels; ++p)
          for (std::int64_t c = c0; c < c1; ++c) f(static_cast<double>(in(b, p, c)));
      };
      // The statistics are complete before the first write, so out may be x.
      const Moments m = moments(for_each, g.pixels * per_group, args.eps);
      for (std::int64_t p = 0; p < g.pixels; ++p)
        for (std::int64_t c = c0; c < c1; ++c) {
          const double y = (in(b, p, c) - m.mean) * m.rstd * scale(c) + shift(c);
          output(b, p, c) = to_f32(args.silu ? reference_act(Act::Silu, y) : y);
        }
    }
}

// Per row: out = (x - mean) / sqrt(var + eps) * gamma + beta.
void ReferenceBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                                  const LayerNormArgs& args) {
  const LayerNormGeometry g = check_layer_norm(op_support(), x, gamma, beta, out, args);
  const View<const float> scale(gamma), shift(beta);
  for (std::int64_t r = 0; r < g.x.rows; ++r) {
    const float* xr = row<const float>(x, g.x, r);
    const auto for_each = [&](auto&& f) {
      for (std::int64_t c = 0; c < g.x.cols; ++c) f(static_cast<double>(xr[c]));
    };
    const Moments m = moments(for_each, g.x.cols, args.eps);
    float* yr = row<float>(out, g.out, r);  // may be xr: each element is read before it is written
    for (std::int64_t c = 0; c < g.x.cols; ++c) yr[c] = to_f32((xr[c] - m.mean) * m.rstd * scale(c) + shift(c));
  }
}

// Per batch, head h (columns [h*d, (h+1)*d)) and query i: s_j = scale * q_i . k_j over the keys j
// query i sees (all, or 0..i when causal), p = softmax(s), out_i = sum_j p_j v_j. The plain softmax
// over all visible keys: the contract's key tiles bound a backend's memory, not the result.
void ReferenceBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                 const AttentionArgs& args) {
  const AttentionGeometry g = check_attention(op_support(), q, k, v, out, args);
  const double scale = args.scale > 0.0f ? args.scale : 1.0 / std::sqrt(static_cast<double>(g.head_dim));
  const View<const float> query(q), key(k), value(v);
  const View<float> output(out);
  std::vector<double> p(static_cast<std::size_t>(g.nk));
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t h = 0; h < g.heads; ++h) {
      const std::int64_t c0 = h * g.head_dim;
      for (std::int64_t i = 0; i < g.nq; ++i) {
        const std::int64_t visible = g.causal ? std::min(i + 1, g.nk) : g.nk;
        double max_score = -INFINITY;
        for (std::int64_t j = 0; j < visible; ++j) {
          double dot = 0.0;
          for (std::int64_t t = 0; t < g.head_dim; ++t)
            dot += static_cast<double>(query(b, i, c0 + t)) * key(b, j, c0 + t);
          p[static_cast<std::size_t>(j)] = dot * scale;
          max_score = std::max(max_score, dot * scale);
        }
        // exp(s - max) / sum: the same ratios as exp(s) / sum, without overflow.
        double sum = 0.0;
        for (std::int64_t j = 0; j < visible; ++j) {
          double& pj = p[static_cast<std::size_t>(j)];
          pj = std::exp(pj - max_score);
          sum += pj;
        }
        for (std::int64_t t = 0; t < g.head_dim; ++t) {
          double acc = 0.0;
          for (std::int64_t j = 0; j < visible; ++j) acc += p[static_cast<std::size_t>(j)] * value(b, j, c0 + t);
          output(b, i, c0 + t) = to_f32(acc / sum);
        }
      }
    }
}

// out[r, i] = x[r, i] * gelu(x[r, F + i]) with the exact (erf) GELU, diffusers' GEGLU.
void ReferenceBackend::geglu(const Tensor& x, const Tensor& out) {
  const GegluGeometry g = check_geglu(op_support(), x, out);
  const std::int64_t f = g.out.cols;
  for (std::int64_t r = 0; r < g.x.rows; ++r) {
    const float* xr = row<const float>(x, g.x, r);
    float* yr = row<float>(out, g.out, r);
    for (std::int64_t i = 0; i < f; ++i) yr[i] = to_f32(xr[i] * reference_act(Act::Gelu, xr[f + i]));
  }
}

void ReferenceBackend::activation(const Tensor& x, const Tensor& out, Act act) {
  const std::int64_t n = check_activation(op_support(), x, out, act);
  const auto* in = static_cast<const float*>(x.data);
  auto* y = static_cast<float*>(out.data);  // may be in: element i is read before it is written
  for (std::int64_t i = 0; i < n; ++i) y[i] = act == Act::None ? in[i] : to_f32(reference_act(act, in[i]));
}

// out[i] = a[i] * alpha + b[i mod |b|] * beta: b's shape is a suffix of a's, so in row-major order
// it repeats every |b| elements.
void ReferenceBackend::add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) {
  const AddGeometry g = check_add(op_support(), a, b, out, args);
  const auto* pa = static_cast<const float*>(a.data);
  const auto* pb = b ? static_cast<const float*>(b->data) : nullptr;
  auto* y = static_cast<float*>(out.data);  // may be a or b: element i is read before it is written
  for (std::int64_t i = 0; i < g.n; ++i) {
    double sum = static_cast<double>(pa[i]) * args.alpha;
    if (pb) sum += static_cast<double>(pb[i % g.b_period]) * args.beta;
    y[i] = to_f32(sum);
  }
}

// torch's F.interpolate(mode="nearest") to an explicit size: source index
// min(floor(dst * float(in) / float(out)), in - 1), the scale and the product in F32.
void ReferenceBackend::upsample_nearest(const Tensor& x, const Tensor& out) {
  const UpsampleGeometry g = check_upsample_nearest(op_support(), x, out);
  const auto source = [](std::int64_t dst, std::int64_t in_size, std::int64_t out_size) {
    const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
    const auto src = static_cast<std::int64_t>(std::floor(static_cast<float>(dst) * scale));
    return std::min(src, in_size - 1);
  };
  const View<const float> in(x);
  const View<float> output(out);
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t y = 0; y < g.ho; ++y)
      for (std::int64_t xo = 0; xo < g.wo; ++xo)
        for (std::int64_t c = 0; c < g.c; ++c)
          output(b, y, xo, c) = in(b, source(y, g.h, g.ho), source(xo, g.w, g.wo), c);
}

// Per pixel: a's channels, then b's.
void ReferenceBackend::concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) {
  const ConcatGeometry g = check_concat_channels(op_support(), a, b, out);
  // All three are contiguous, so pixel p's channels start at p * (its channel count).
  const auto* pa = static_cast<const float*>(a.data);
  const auto* pb = static_cast<const float*>(b.data);
  auto* y = static_cast<float*>(out.data);
  for (std::int64_t p = 0; p < g.pixels; ++p) {
    for (std::int64_t c = 0; c < g.ca; ++c) y[p * (g.ca + g.cb) + c] = pa[p * g.ca + c];
    for (std::int64_t c = 0; c < g.cb; ++c) y[p * (g.ca + g.cb) + g.ca + c] = pb[p * g.cb + c];
  }
}

// diffusers' get_timestep_embedding, in F32 in torch's order as the contract says:
//   exponent = (-ln(max_period) * i) / (half - freq_shift); freq = exp(exponent); arg = t * freq;
// -ln(max_period) and half - freq_shift are Python floats that torch rounds to F32 when it
// combines them with an F32 tensor. exp, sin and cos are torch's F32 functions: here the exact
// value rounded to F32 (libm's double, rounded once).
void ReferenceBackend::timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) {
  const TimestepGeometry g = check_timestep_embedding(op_support(), t, out, args);
  const std::int64_t half = g.dim / 2;
  const float neg_log = to_f32(-std::log(static_cast<double>(args.max_period)));
  const float denom = to_f32(static_cast<double>(half) - static_cast<double>(args.freq_shift));
  const View<const float> steps(t);
  const View<float> output(out);
  for (std::int64_t b = 0; b < g.batch; ++b) {
    for (std::int64_t i = 0; i < half; ++i) {
      const float exponent = (neg_log * static_cast<float>(i)) / denom;
      const float freq = to_f32(std::exp(static_cast<double>(exponent)));
      const float arg = steps(b) * freq;
      const float s = to_f32(std::sin(static_cast<double>(arg))), c = to_f32(std::cos(static_cast<double>(arg)));
      output(b, i) = args.flip_sin_to_cos ? c : s;
      output(b, half + i) = args.flip_sin_to_cos ? s : c;
    }
    if (g.dim % 2 != 0) output(b, g.dim - 1) = 0.0f;  // diffusers pads an odd dim with a zero column
  }
}

// out[b, n, :] = table[ids[b, n], :]; every id is checked before anything is written.
void ReferenceBackend::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  const EmbeddingGeometry g = check_embedding(op_support(), ids, table, out);
  const auto* id = static_cast<const std::int32_t*>(ids.data);
  for (std::int64_t i = 0; i < g.tokens; ++i)
    if (id[i] < 0 || id[i] >= g.vocab)
      throw Error(cat("embedding: id ", id[i], " at position ", i, " is outside the table of ", g.vocab, " rows"));
  const View<const float> rows(table);
  auto* y = static_cast<float*>(out.data);
  for (std::int64_t i = 0; i < g.tokens; ++i)
    for (std::int64_t c = 0; c < g.dim; ++c) y[i * g.dim + c] = rows(id[i], c);
}

}  // namespace sdgen::test
