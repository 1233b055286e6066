// The op set's argument rules (see op_checks.hpp). Every rule here is one a backend relies on: a
// shape that disagrees, a dtype it cannot compute in, a layout its kernels do not read, or an
// output that overlaps an input the op is still reading.
#include "kernels/op_checks.hpp"

#include <cmath>

namespace sdgen {

std::string DTypeSet::str() const {
  std::string s;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::F64, DType::I64})
    if (contains(t)) s += (s.empty() ? "" : ", ") + std::string(dtype_name(t));
  return s;
}

namespace {

// ---- generic rules

[[noreturn]] void fail(std::string_view op, const std::string& what) { throw Error(cat(op, ": ", what)); }

std::string describe(std::string_view name, const Tensor& t) { return cat(name, " is ", t.shape.str()); }

// Every dimension at least 1 and every stride non-negative, on the backend's device.
void check_basic(const OpSupport& s, std::string_view op, std::string_view name, const Tensor& t) {
  if (t.device.kind != s.device)
    fail(op, cat(name, " is on ", t.device.kind == DeviceKind::Cpu ? "the CPU" : "a CUDA device",
                 " but this backend runs on ", s.device == DeviceKind::Cpu ? "the CPU" : "a CUDA device"));
  if (t.rank() < 1) fail(op, cat(name, " has rank 0"));
  for (int i = 0; i < t.rank(); ++i) {
    if (t.shape[i] < 1) fail(op, cat(describe(name, t), ", which has an empty dimension"));
    if (t.layout == Layout::Strided && t.strides.rank() != t.rank())
      fail(op, cat(describe(name, t), " with strides ", t.strides.str(), " of another rank"));
    if (t.layout == Layout::Strided && t.strides[i] < 0)
      fail(op, cat(describe(name, t), " with a negative stride ", t.strides.str()));
  }
}

void check_dtype(std::string_view op, std::string_view name, const Tensor& t, DType want) {
  if (t.dtype != want)
    fail(op, cat(name, " is ", dtype_name(t.dtype), " ", t.shape.str(), "; expected ", dtype_name(want)));
}

void check_rank(std::string_view op, std::string_view name, const Tensor& t, int rank) {
  if (t.rank() != rank) fail(op, cat(describe(name, t), "; expected rank ", rank));
}

void check_strided(std::string_view op, std::string_view name, const Tensor& t) {
  if (t.layout != Layout::Strided)
    fail(op, cat(name, " ", t.shape.str(), " is a packed weight; only linear and conv2d take those"));
}

// An activation: strided, on the device, in the activation dtype.
void check_activation_tensor(const OpSupport& s, std::string_view op, std::string_view name, const Tensor& t) {
  check_basic(s, op, name, t);
  check_strided(op, name, t);
  check_dtype(op, name, t, s.activations);
}

void check_contiguous(std::string_view op, std::string_view name, const Tensor& t) {
  if (!t.is_contiguous())
    fail(op, cat(describe(name, t), " with strides ", t.strides.str(), "; expected a contiguous tensor"));
}

// bias/gamma/beta: [n], contiguous, in the params dtype.
void check_vector(const OpSupport& s, std::string_view op, std::string_view name, const Tensor& t,
                  std::int64_t n, const std::string& context) {
  check_basic(s, op, name, t);
  check_strided(op, name, t);
  check_dtype(op, name, t, s.params);
  if (t.rank() != 1 || t.shape[0] != n)
    fail(op, cat(context, " but ", name, " is ", t.shape.str(), "; expected [", n, "]"));
  check_contiguous(op, name, t);
}

// The first and one-past-last byte a strided tensor touches.
struct ByteSpan {
  const char* begin;
  const char* end;
};
ByteSpan span_of(const Tensor& t) {
  std::int64_t last = 0;
  for (int i = 0; i < t.rank(); ++i) last += (t.shape[i] - 1) * t.strides[i];
  const auto* p = static_cast<const char*>(t.data);
  return {p, p + (last + 1) * static_cast<std::int64_t>(dtype_size(t.dtype))};
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.data == b.data && a.dtype == b.dtype && a.shape == b.shape && a.strides == b.strides;
}

enum class InPlace { Forbidden, Allowed };

// out must not overlap `in` (a planning pass may pass null data: nothing to compare then).
void check_no_overlap(std::string_view op, std::string_view out_name, const Tensor& out, std::string_view in_name,
                      const Tensor& in, InPlace in_place) {
  if (out.data == nullptr || in.data == nullptr || in.layout != Layout::Strided) return;
  const ByteSpan a = span_of(out), b = span_of(in);
  if (a.begin >= b.end || b.begin >= a.end) return;
  if (in_place == InPlace::Allowed && same_view(out, in)) return;
  fail(op, cat(out_name, " ", out.shape.str(), " overlaps ", in_name, " ", in.shape.str(),
               in_place == InPlace::Allowed ? " without being the same view (only exact in-place use is allowed)"
                                            : " (this op cannot run in place)"));
}

// [..., cols] with unit stride in the last dimension and leading dimensions that collapse to one row
// stride (dimensions of size 1 may have any stride, as in torch).
RowsView rows_of(std::string_view op, std::string_view name, const Tensor& t) {
  if (t.shape.back() > 1 && t.strides.back() != 1)
    fail(op, cat(describe(name, t), " with strides ", t.strides.str(), "; its last dimension must have stride 1"));
  RowsView r{1, t.shape.back(), 0};
  std::int64_t next = 0;  // the stride the next outer dimension must have to collapse
  for (int i = t.rank() - 2; i >= 0; --i) {
    if (t.shape[i] == 1) continue;
    if (r.rows == 1) {
      r.row_stride = t.strides[i];
    } else if (t.strides[i] != next) {
      fail(op, cat(describe(name, t), " with strides ", t.strides.str(),
                   "; its leading dimensions must collapse to one row stride"));
    }
    next = t.strides[i] * t.shape[i];
    r.rows *= t.shape[i];
  }
  if (r.rows == 1) r.row_stride = r.cols;
  if (r.row_stride < r.cols)
    fail(op, cat(describe(name, t), " with strides ", t.strides.str(), "; its rows overlap"));
  return r;
}

bool same_leading(const Tensor& a, const Tensor& b) {
  if (a.rank() != b.rank()) return false;
  for (int i = 0; i + 1 < a.rank(); ++i)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

void check_act(std::string_view op, Act act) {
  if (act_name(act) == "?") fail(op, cat("unknown activation ", static_cast<int>(act)));
}

void check_op_weight(const OpSupport& s, std::string_view op, const Tensor& w, int rank) {
  check_basic(s, op, "w", w);
  if (!s.weights.contains(w.dtype))
    fail(op, cat("w is ", dtype_name(w.dtype), " ", w.shape.str(), "; expected one of ", s.weights.str()));
  check_rank(op, "w", w, rank);
  if (w.layout == Layout::Strided) check_contiguous(op, "w", w);
}

bool finite_positive(float v) { return std::isfinite(v) && v > 0.0f; }

}  // namespace

std::string_view act_name(Act act) {
  switch (act) {
    case Act::None: return "none";
    case Act::Silu: return "silu";
    case Act::Gelu: return "gelu";
    case Act::GeluTanh: return "gelu_tanh";
    case Act::QuickGelu: return "quick_gelu";
  }
  return "?";
}

// ---- the ops

LinearGeometry check_linear(const OpSupport& s, const Tensor& x, const Tensor& w, const Tensor& out,
                            const LinearArgs& args) {
  constexpr std::string_view op = "linear";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  check_op_weight(s, op, w, 2);
  check_act(op, args.act);
  LinearGeometry g;
  g.n = w.shape[0];
  g.k = w.shape[1];
  if (x.shape.back() != g.k)
    fail(op, cat("x is ", x.shape.str(), " but w is ", w.shape.str(), "; x's last dimension must be ", g.k));
  if (!same_leading(x, out) || out.shape.back() != g.n)
    fail(op, cat("x is ", x.shape.str(), " and w is ", w.shape.str(), " but out is ", out.shape.str(),
                 "; expected x's leading dimensions then ", g.n));
  g.x = rows_of(op, "x", x);
  g.out = rows_of(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, InPlace::Forbidden);
  if (args.bias) check_vector(s, op, "bias", *args.bias, g.n, cat("w is ", w.shape.str()));
  if (args.residual) {
    check_activation_tensor(s, op, "residual", *args.residual);
    if (!(args.residual->shape == out.shape))
      fail(op, cat("out is ", out.shape.str(), " but residual is ", args.residual->shape.str()));
    g.residual = rows_of(op, "residual", *args.residual);
    check_no_overlap(op, "out", out, "residual", *args.residual, InPlace::Forbidden);
  }
  return g;
}

Conv2dGeometry check_conv2d(const OpSupport& s, const Tensor& x, const Tensor& w, const Tensor& out,
                            const Conv2dArgs& args) {
  constexpr std::string_view op = "conv2d";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  check_op_weight(s, op, w, 4);
  check_rank(op, "x", x, 4);
  check_rank(op, "out", out, 4);
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  if (args.stride < 1 || args.padding < 0)
    fail(op, cat("stride ", args.stride, " and padding ", args.padding, "; expected stride >= 1, padding >= 0"));
  if (!std::isfinite(args.output_scale)) fail(op, cat("output_scale ", args.output_scale, " is not finite"));
  Conv2dGeometry g;
  g.batch = x.shape[0];
  g.h = x.shape[1];
  g.w = x.shape[2];
  g.cin = x.shape[3];
  g.cout = w.shape[0];
  g.kh = w.shape[1];
  g.kw = w.shape[2];
  g.stride = args.stride;
  g.padding = args.padding;
  if (w.shape[3] != g.cin)
    fail(op, cat("x is ", x.shape.str(), " but w is ", w.shape.str(), " (OHWI); w's last dimension must be ", g.cin));
  if (g.h + 2 * g.padding < g.kh || g.w + 2 * g.padding < g.kw)
    fail(op, cat("x is ", x.shape.str(), " with padding ", g.padding, ", smaller than the kernel ", w.shape.str()));
  g.ho = (g.h + 2 * g.padding - g.kh) / g.stride + 1;
  g.wo = (g.w + 2 * g.padding - g.kw) / g.stride + 1;
  if (!(out.shape == Shape{g.batch, g.ho, g.wo, g.cout}))
    fail(op, cat("x is ", x.shape.str(), ", w is ", w.shape.str(), ", stride ", g.stride, ", padding ", g.padding,
                 " but out is ", out.shape.str(), "; expected ", Shape{g.batch, g.ho, g.wo, g.cout}.str()));
  check_no_overlap(op, "out", out, "x", x, InPlace::Forbidden);
  if (args.bias) check_vector(s, op, "bias", *args.bias, g.cout, cat("w is ", w.shape.str()));
  if (args.add_per_channel) {
    const Tensor& a = *args.add_per_channel;
    check_basic(s, op, "add_per_channel", a);
    check_strided(op, "add_per_channel", a);
    check_dtype(op, "add_per_channel", a, s.params);
    if (!(a.shape == Shape{g.batch, g.cout}))
      fail(op, cat("out is ", out.shape.str(), " but add_per_channel is ", a.shape.str(), "; expected ",
                   Shape{g.batch, g.cout}.str()));
    check_contiguous(op, "add_per_channel", a);
    check_no_overlap(op, "out", out, "add_per_channel", a, InPlace::Forbidden);
  }
  if (args.residual) {
    const Tensor& r = *args.residual;
    check_activation_tensor(s, op, "residual", r);
    if (!(r.shape == out.shape)) fail(op, cat("out is ", out.shape.str(), " but residual is ", r.shape.str()));
    check_contiguous(op, "residual", r);
    check_no_overlap(op, "out", out, "residual", r, InPlace::Forbidden);
  }
  return g;
}

GroupNormGeometry check_group_norm(const OpSupport& s, const Tensor& x, const Tensor& gamma,
                                   const Tensor& beta, const Tensor& out, const GroupNormArgs& args) {
  constexpr std::string_view op = "group_norm";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  if (x.rank() != 3 && x.rank() != 4) fail(op, cat(describe("x", x), "; expected [B, H, W, C] or [B, N, C]"));
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  if (!(out.shape == x.shape)) fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str()));
  GroupNormGeometry g;
  g.batch = x.shape[0];
  g.channels = x.shape.back();
  g.pixels = x.numel() / (g.batch * g.channels);
  g.groups = args.groups;
  if (args.groups < 1 || g.channels % args.groups != 0)
    fail(op, cat("x is ", x.shape.str(), " but groups is ", args.groups, "; the channels must split evenly"));
  if (!finite_positive(args.eps)) fail(op, cat("eps ", args.eps, " must be positive"));
  check_vector(s, op, "gamma", gamma, g.channels, describe("x", x));
  check_vector(s, op, "beta", beta, g.channels, describe("x", x));
  check_no_overlap(op, "out", out, "x", x, InPlace::Allowed);
  return g;
}

LayerNormGeometry check_layer_norm(const OpSupport& s, const Tensor& x, const Tensor& gamma,
                                   const Tensor& beta, const Tensor& out, const LayerNormArgs& args) {
  constexpr std::string_view op = "layer_norm";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  if (!(out.shape == x.shape)) fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str()));
  if (!finite_positive(args.eps)) fail(op, cat("eps ", args.eps, " must be positive"));
  LayerNormGeometry g{rows_of(op, "x", x), rows_of(op, "out", out)};
  check_vector(s, op, "gamma", gamma, g.x.cols, describe("x", x));
  check_vector(s, op, "beta", beta, g.x.cols, describe("x", x));
  check_no_overlap(op, "out", out, "x", x, InPlace::Allowed);
  return g;
}

AttentionGeometry check_attention(const OpSupport& s, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const AttentionArgs& args) {
  constexpr std::string_view op = "attention";
  const std::pair<std::string_view, const Tensor*> all[] = {{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}};
  for (const auto& [name, t] : all) {
    check_activation_tensor(s, op, name, *t);
    check_rank(op, name, *t, 3);
    if (t->strides[2] != 1)
      fail(op, cat(describe(name, *t), " with strides ", t->strides.str(), "; its last dimension must have stride 1"));
  }
  if (args.heads < 1) fail(op, cat("heads is ", args.heads, "; expected at least 1"));
  const std::int64_t c = q.shape[2];
  if (c % args.heads != 0) fail(op, cat("q is ", q.shape.str(), " but heads is ", args.heads, "; the channels must split evenly"));
  if (!(k.shape == v.shape)) fail(op, cat("k is ", k.shape.str(), " but v is ", v.shape.str(), "; expected equal shapes"));
  if (k.shape[0] != q.shape[0] || k.shape[2] != c)
    fail(op, cat("q is ", q.shape.str(), " but k is ", k.shape.str(), "; expected [", q.shape[0], ", Nk, ", c, "]"));
  if (!(out.shape == q.shape)) fail(op, cat("q is ", q.shape.str(), " but out is ", out.shape.str()));
  if (!std::isfinite(args.scale) || args.scale < 0.0f)
    fail(op, cat("scale ", args.scale, " must be positive (or 0 for 1/sqrt(head_dim))"));
  AttentionGeometry g;
  g.batch = q.shape[0];
  g.nq = q.shape[1];
  g.nk = k.shape[1];
  g.heads = args.heads;
  g.head_dim = c / args.heads;
  g.scale = args.scale > 0.0f ? args.scale : 1.0f / std::sqrt(static_cast<float>(g.head_dim));
  g.causal = args.causal;
  g.q = {q.strides[0], q.strides[1]};
  g.k = {k.strides[0], k.strides[1]};
  g.v = {v.strides[0], v.strides[1]};
  g.out = {out.strides[0], out.strides[1]};
  if (g.out.row_stride < c || g.out.batch_stride < g.nq * g.out.row_stride)
    fail(op, cat(describe("out", out), " with strides ", out.strides.str(), "; its rows overlap"));
  for (const auto& [name, t] : all)
    if (name != "out") check_no_overlap(op, "out", out, name, *t, InPlace::Forbidden);
  return g;
}

GegluGeometry check_geglu(const OpSupport& s, const Tensor& x, const Tensor& out) {
  constexpr std::string_view op = "geglu";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  if (x.shape.back() % 2 != 0) fail(op, cat(describe("x", x), "; its last dimension must be even"));
  if (!same_leading(x, out) || out.shape.back() * 2 != x.shape.back())
    fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str(), "; expected x's leading dimensions then ",
                 x.shape.back() / 2));
  GegluGeometry g{rows_of(op, "x", x), rows_of(op, "out", out)};
  check_no_overlap(op, "out", out, "x", x, InPlace::Forbidden);
  return g;
}

std::int64_t check_activation(const OpSupport& s, const Tensor& x, const Tensor& out, Act act) {
  constexpr std::string_view op = "activation";
  check_act(op, act);
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  if (!(out.shape == x.shape)) fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str()));
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  check_no_overlap(op, "out", out, "x", x, InPlace::Allowed);
  return x.numel();
}

AddGeometry check_add(const OpSupport& s, const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) {
  constexpr std::string_view op = "add";
  check_activation_tensor(s, op, "a", a);
  check_activation_tensor(s, op, "out", out);
  check_contiguous(op, "a", a);
  check_contiguous(op, "out", out);
  if (!(out.shape == a.shape)) fail(op, cat("a is ", a.shape.str(), " but out is ", out.shape.str()));
  if (!std::isfinite(args.alpha) || !std::isfinite(args.beta))
    fail(op, cat("alpha ", args.alpha, " and beta ", args.beta, " must be finite"));
  check_no_overlap(op, "out", out, "a", a, InPlace::Allowed);
  AddGeometry g{a.numel(), 0};
  if (b) {
    check_activation_tensor(s, op, "b", *b);
    check_contiguous(op, "b", *b);
    bool suffix = b->rank() <= a.rank();
    for (int i = 0; suffix && i < b->rank(); ++i) suffix = b->shape.back(i) == a.shape.back(i);
    if (!suffix)
      fail(op, cat("a is ", a.shape.str(), " but b is ", b->shape.str(), "; b's shape must equal a trailing part of a's"));
    g.b_period = b->numel();
    check_no_overlap(op, "out", out, "b", *b, b->shape == a.shape ? InPlace::Allowed : InPlace::Forbidden);
  }
  return g;
}

UpsampleGeometry check_upsample_nearest(const OpSupport& s, const Tensor& x, const Tensor& out) {
  constexpr std::string_view op = "upsample_nearest";
  check_activation_tensor(s, op, "x", x);
  check_activation_tensor(s, op, "out", out);
  check_rank(op, "x", x, 4);
  check_rank(op, "out", out, 4);
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  const UpsampleGeometry g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], out.shape[1], out.shape[2]};
  if (out.shape[0] != g.batch || out.shape[3] != g.c || g.ho < 1 || g.wo < 1)
    fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str(),
                 "; out must have x's batch and channels and a positive height and width"));
  check_no_overlap(op, "out", out, "x", x, InPlace::Forbidden);
  return g;
}

ConcatGeometry check_concat_channels(const OpSupport& s, const Tensor& a, const Tensor& b, const Tensor& out) {
  constexpr std::string_view op = "concat_channels";
  check_activation_tensor(s, op, "a", a);
  check_activation_tensor(s, op, "b", b);
  check_activation_tensor(s, op, "out", out);
  check_contiguous(op, "a", a);
  check_contiguous(op, "b", b);
  check_contiguous(op, "out", out);
  if (!same_leading(a, b))
    fail(op, cat("a is ", a.shape.str(), " but b is ", b.shape.str(), "; all but the last dimension must agree"));
  if (!same_leading(a, out) || out.shape.back() != a.shape.back() + b.shape.back())
    fail(op, cat("a is ", a.shape.str(), " and b is ", b.shape.str(), " but out is ", out.shape.str(),
                 "; expected the leading dimensions then ", a.shape.back() + b.shape.back()));
  check_no_overlap(op, "out", out, "a", a, InPlace::Forbidden);
  check_no_overlap(op, "out", out, "b", b, InPlace::Forbidden);
  return {a.numel() / a.shape.back(), a.shape.back(), b.shape.back()};
}

TimestepGeometry check_timestep_embedding(const OpSupport& s, const Tensor& t, const Tensor& out,
                                          const TimestepEmbeddingArgs& args) {
  constexpr std::string_view op = "timestep_embedding";
  check_basic(s, op, "t", t);
  check_strided(op, "t", t);
  check_dtype(op, "t", t, DType::F32);  // timesteps are F32 whatever the activations: fp16 would round them
  check_activation_tensor(s, op, "out", out);
  check_rank(op, "t", t, 1);
  check_rank(op, "out", out, 2);
  check_contiguous(op, "t", t);
  check_contiguous(op, "out", out);
  if (out.shape[0] != t.shape[0]) fail(op, cat("t is ", t.shape.str(), " but out is ", out.shape.str()));
  const std::int64_t half = out.shape[1] / 2;
  if (half < 1) fail(op, cat(describe("out", out), "; the embedding needs at least 2 columns"));
  if (!finite_positive(args.max_period) || !std::isfinite(args.freq_shift) || static_cast<float>(half) == args.freq_shift)
    fail(op, cat("max_period ", args.max_period, " and freq_shift ", args.freq_shift, " with ", half,
                 " frequencies; expected max_period > 0 and freq_shift != ", half));
  check_no_overlap(op, "out", out, "t", t, InPlace::Forbidden);
  return {t.shape[0], out.shape[1]};
}

EmbeddingGeometry check_embedding(const OpSupport& s, const Tensor& ids, const Tensor& table, const Tensor& out) {
  constexpr std::string_view op = "embedding";
  check_basic(s, op, "ids", ids);
  check_strided(op, "ids", ids);
  check_dtype(op, "ids", ids, DType::I32);
  check_activation_tensor(s, op, "table", table);
  check_activation_tensor(s, op, "out", out);
  check_rank(op, "ids", ids, 2);
  check_rank(op, "table", table, 2);
  check_contiguous(op, "ids", ids);
  check_contiguous(op, "table", table);
  check_contiguous(op, "out", out);
  const Shape want{ids.shape[0], ids.shape[1], table.shape[1]};
  if (!(out.shape == want))
    fail(op, cat("ids is ", ids.shape.str(), " and table is ", table.shape.str(), " but out is ", out.shape.str(),
                 "; expected ", want.str()));
  check_no_overlap(op, "out", out, "table", table, InPlace::Forbidden);
  check_no_overlap(op, "out", out, "ids", ids, InPlace::Forbidden);
  return {ids.numel(), table.shape[0], table.shape[1]};
}

void check_weight(const OpSupport& s, std::string_view op, const Tensor& w, WeightUse use) {
  check_basic(s, op, "w", w);
  check_strided(op, "w", w);
  if (!DTypeSet{DType::F32, DType::F16, DType::BF16}.contains(w.dtype))
    fail(op, cat("w is ", dtype_name(w.dtype), " ", w.shape.str(), "; expected a floating-point weight"));
  const int rank = use == WeightUse::Conv2d ? 4 : use == WeightUse::Vector ? 1 : 2;
  check_rank(op, "w", w, rank);
  check_contiguous(op, "w", w);
}

std::int64_t check_transfer(const OpSupport& s, std::string_view op, const Tensor& host, const Tensor& mine) {
  if (host.device.kind != DeviceKind::Cpu) fail(op, cat("the host tensor ", host.shape.str(), " is not in host memory"));
  check_basic(s, op, "the backend's tensor", mine);
  check_strided(op, "the backend's tensor", mine);
  check_contiguous(op, "the host tensor", host);
  check_contiguous(op, "the backend's tensor", mine);
  if (!(host.shape == mine.shape))
    fail(op, cat("the host tensor is ", host.shape.str(), " but the backend's is ", mine.shape.str()));
  if (host.dtype != DType::F32 && host.dtype != DType::I32)
    fail(op, cat("the host tensor is ", dtype_name(host.dtype), "; expected F32 or I32"));
  if (mine.dtype != host.dtype && !(host.dtype == DType::F32 && mine.dtype == s.activations))
    fail(op, cat("the host tensor is ", dtype_name(host.dtype), " but the backend's is ", dtype_name(mine.dtype)));
  return host.numel();
}

std::int64_t check_convert(const OpSupport& s, const Tensor& x, const Tensor& out) {
  constexpr std::string_view op = "convert";
  const DTypeSet allowed{DType::F32, s.activations};
  for (const auto& [name, t] : {std::pair<std::string_view, const Tensor*>{"x", &x}, {"out", &out}}) {
    check_basic(s, op, name, *t);
    check_strided(op, name, *t);
    check_contiguous(op, name, *t);
    if (!allowed.contains(t->dtype))
      fail(op, cat(name, " is ", dtype_name(t->dtype), "; expected one of ", allowed.str()));
  }
  if (!(x.shape == out.shape)) fail(op, cat("x is ", x.shape.str(), " but out is ", out.shape.str()));
  check_no_overlap(op, "out", out, "x", x, InPlace::Forbidden);
  return x.numel();
}

std::int64_t check_scheduler_step(const OpSupport& s, std::span<const StepCoefficients> steps, int call,
                                  const StepTensors& t) {
  constexpr std::string_view op = "scheduler_step";
  if (call < 0 || static_cast<std::size_t>(call) >= steps.size())
    fail(op, cat("call ", call, " is outside the ", steps.size(), " steps given"));
  const StepCoefficients& c = steps[static_cast<std::size_t>(call)];
  const auto f32 = [&](std::string_view name, const Tensor& x) {
    check_basic(s, op, name, x);
    check_strided(op, name, x);
    check_contiguous(op, name, x);
    check_dtype(op, name, x, DType::F32);
  };
  f32("sample", t.sample);
  const std::int64_t n = t.sample.numel();
  check_basic(s, op, "model_output", t.model_output);
  check_strided(op, "model_output", t.model_output);
  check_contiguous(op, "model_output", t.model_output);
  check_dtype(op, "model_output", t.model_output, s.activations);
  const std::int64_t rows = c.guidance == StepGuidance::ClassifierFree ? 2 : 1;
  if (t.model_output.numel() != rows * n)
    fail(op, cat("model_output is ", t.model_output.shape.str(), " but the sample is ", t.sample.shape.str(),
                 rows == 2 ? " (guidance needs both halves)" : ""));
  const auto reads = [&](StepTerm term) { return ((c.reads >> static_cast<int>(term)) & 1u) != 0u; };
  const auto present = [&](std::string_view name, const Tensor* x) {
    if (x == nullptr) fail(op, cat("the step needs ", name, ", which is missing"));
    f32(name, *x);
    if (x->numel() != n) fail(op, cat(name, " is ", x->shape.str(), " but the sample is ", t.sample.shape.str()));
  };
  if (reads(StepTerm::Noise)) present("noise", t.noise);
  for (int slot = 0; slot < kStepHistorySlots; ++slot) {
    const auto term = static_cast<StepTerm>(static_cast<int>(StepTerm::History0) + slot);
    bool written = false;
    for (int k = 0; k < c.write_count; ++k) written = written || c.write_targets[k] == term;
    if (reads(term) || written) present(cat("history slot ", slot), t.history[static_cast<std::size_t>(slot)]);
  }
  return n;
}

std::int64_t check_model_input(const OpSupport& s, std::span<const StepCoefficients> steps, int call,
                               const Tensor& latents, const Tensor& unet_in, const Tensor& t) {
  constexpr std::string_view op = "model_input";
  if (call < 0 || static_cast<std::size_t>(call) >= steps.size())
    fail(op, cat("call ", call, " is outside the ", steps.size(), " steps given"));
  for (const auto& [name, x] :
       {std::pair<std::string_view, const Tensor*>{"latents", &latents}, {"unet_in", &unet_in}, {"t", &t}}) {
    check_basic(s, op, name, *x);
    check_strided(op, name, *x);
    check_contiguous(op, name, *x);
  }
  check_dtype(op, "latents", latents, DType::F32);
  check_dtype(op, "unet_in", unet_in, s.activations);
  check_dtype(op, "t", t, DType::F32);
  check_rank(op, "t", t, 1);
  const std::int64_t n = latents.rank() > 0 ? latents.shape[0] : 0;
  bool copies = latents.rank() == unet_in.rank() && n > 0 && unet_in.shape[0] % n == 0;
  for (int i = 1; copies && i < latents.rank(); ++i) copies = latents.shape[i] == unet_in.shape[i];
  if (!copies || t.shape[0] != unet_in.shape[0])
    fail(op, cat("latents ", latents.shape.str(), ", unet_in ", unet_in.shape.str(), " and t ", t.shape.str(),
                 "; expected unet_in to be whole copies of the latents and one timestep per row"));
  check_no_overlap(op, "unet_in", unet_in, "latents", latents, InPlace::Forbidden);
  check_no_overlap(op, "t", t, "latents", latents, InPlace::Forbidden);
  check_no_overlap(op, "t", t, "unet_in", unet_in, InPlace::Forbidden);
  return latents.numel();
}

}  // namespace sdgen
