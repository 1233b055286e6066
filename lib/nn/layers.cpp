// Parameter shapes of the leaf layers, as torch.nn creates them, and their forward passes: one
// backend op each (see layers.hpp).
#include "lib/nn/layers.hpp"

#include "lib/core/error.hpp"

namespace sdgen::nn {

namespace {

// `shape` with its innermost dimension replaced by `last`.
Shape with_last(Shape shape, std::int64_t last) {
  shape[shape.rank() - 1] = last;
  return shape;
}

}  // namespace

Act activation_op(weights::Activation activation) {
  switch (activation) {
    case weights::Activation::Silu: return Act::Silu;
    case weights::Activation::Gelu: return Act::Gelu;
    case weights::Activation::QuickGelu: return Act::QuickGelu;
  }
  throw Error("unknown activation");
}

// ---- Linear

Linear::Linear(const Options& o)
    : out_features(o.out_features),
      weight{.shape = o.stored == Stored::Conv1x1 ? std::vector<std::int64_t>{o.out_features, o.in_features, 1, 1}
                                                  : std::vector<std::int64_t>{o.out_features, o.in_features},
             .use = ParamUse::LinearWeight} {
  if (o.bias == Bias::With) bias = Param{.shape = {o.out_features}};
}

Activation Linear::forward(Ctx& ctx, const Tensor& x, const LinearEpilogue& epilogue) const {
  Activation out = ctx.alloc(with_last(x.shape, out_features));  // [..., out]
  ctx.backend.linear(x, weight.value, out,
                     {.bias = bias ? &bias->value : nullptr, .act = epilogue.act, .residual = epilogue.residual});
  return out;
}

// ---- Conv2d

Conv2d::Conv2d(const Options& o)
    : out_channels(o.out_channels),
      kernel_size(o.kernel_size),
      stride(o.stride),
      padding(o.padding),
      weight{.shape = {o.out_channels, o.in_channels, o.kernel_size, o.kernel_size}, .use = ParamUse::Conv2dWeight},
      bias{.shape = {o.out_channels}} {}

Activation Conv2d::forward(Ctx& ctx, const Tensor& x, const ConvEpilogue& epilogue) const {
  if (x.rank() != 4) throw Error(cat("conv2d: x is ", x.shape.str(), "; expected [B, H, W, C]"));
  const auto out_size = [&](std::int64_t in) { return (in + 2 * padding - kernel_size) / stride + 1; };
  Activation out = ctx.alloc({x.shape[0], out_size(x.shape[1]), out_size(x.shape[2]), out_channels});
  ctx.backend.conv2d(x, weight.value, out,
                     {.stride = stride,
                      .padding = padding,
                      .bias = &bias.value,
                      .add_per_channel = epilogue.add_per_channel,
                      .residual = epilogue.residual,
                      .output_scale = epilogue.output_scale});
  return out;
}

// ---- GroupNorm

GroupNorm::GroupNorm(const Options& o)
    : num_groups(o.num_groups), eps(o.eps), weight{.shape = {o.num_channels}}, bias{.shape = {o.num_channels}} {
  // torch refuses to build such a layer too; the group count comes from a config file.
  if (o.num_groups <= 0 || o.num_channels % o.num_groups != 0)
    throw ModelError(cat("the configured norm_num_groups (", o.num_groups, ") does not divide the ",
                         o.num_channels, " channels of a group norm in this architecture"));
}

namespace {

// out = act(group_norm(x)); out may be x.
void group_norm_act(Ctx& ctx, const GroupNorm& norm, const Tensor& x, const Tensor& out, Act act) {
  ctx.backend.group_norm(x, norm.weight.value, norm.bias.value, out,
                         {.groups = norm.num_groups, .eps = static_cast<float>(norm.eps), .silu = act == Act::Silu});
  if (act != Act::None && act != Act::Silu) ctx.backend.activation(out, out, act);
}

}  // namespace

Activation GroupNorm::forward(Ctx& ctx, const Tensor& x, Act act) const {
  Activation out = ctx.alloc(x.shape);
  group_norm_act(ctx, *this, x, out, act);
  return out;
}

Activation GroupNorm::forward(Ctx& ctx, Activation x, Act act) const {
  group_norm_act(ctx, *this, x, x, act);
  return x;
}

// ---- LayerNorm

LayerNorm::LayerNorm(const Options& o) : eps(o.eps), weight{.shape = {o.dim}}, bias{.shape = {o.dim}} {}

Activation LayerNorm::forward(Ctx& ctx, const Tensor& x) const {
  Activation out = ctx.alloc(x.shape);
  ctx.backend.layer_norm(x, weight.value, bias.value, out, {.eps = static_cast<float>(eps)});
  return out;
}

// ---- Embedding

Embedding::Embedding(const Options& o)
    : weight{.shape = {o.num_embeddings, o.embedding_dim}, .use = ParamUse::EmbeddingTable} {}

Activation Embedding::forward(Ctx& ctx, const Tensor& ids) const {
  Shape shape = ids.shape;
  shape.push_back(weight.shape[1]);
  Activation out = ctx.alloc(shape);  // [B, N, embedding_dim]
  ctx.backend.embedding(ids, weight.value, out);
  return out;
}

Tensor Embedding::first_rows(std::int64_t n) const {
  const Tensor& table = weight.value;
  if (n > table.shape[0])
    throw Error(cat("embedding: ", n, " positions requested from a table of ", table.shape[0], " rows"));
  return Tensor{table.data,   table.dtype, {n, table.shape[1]}, {table.strides[0], table.strides[1]},
                table.device, table.layout};
}

}  // namespace sdgen::nn
