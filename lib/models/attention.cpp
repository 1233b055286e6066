// Shapes and forward passes of diffusers' Attention, FeedForward, BasicTransformerBlock and
// Transformer2DModel (see attention.hpp).
#include "lib/models/attention.hpp"

#include "lib/core/error.hpp"

namespace sdgen::models {

namespace {

// diffusers' defaults inside Transformer2DModel: the group norm uses eps 1e-6, the block's layer
// norms norm_eps = 1e-5; FeedForward widens by mult = 4.
constexpr double kTransformerGroupNormEps = 1e-6;
constexpr double kTransformerLayerNormEps = 1e-5;
constexpr std::int64_t kFeedForwardMult = 4;

}  // namespace

Attention::Attention(const Options& o)
    : heads(o.heads),
      to_q({.in_features = o.query_dim, .out_features = o.heads * o.dim_head, .bias = o.qkv_bias}),
      to_k({.in_features = o.key_value_dim, .out_features = o.heads * o.dim_head, .bias = o.qkv_bias}),
      to_v({.in_features = o.key_value_dim, .out_features = o.heads * o.dim_head, .bias = o.qkv_bias}),
      to_out({.in_features = o.heads * o.dim_head, .out_features = o.query_dim}) {
  if (o.group_norm) group_norm.emplace(*o.group_norm);
}

GEGLU::GEGLU(std::int64_t dim_in, std::int64_t dim_out)
    : proj({.in_features = dim_in, .out_features = 2 * dim_out}) {}

FeedForward::FeedForward(std::int64_t dim)
    : net_0(dim, kFeedForwardMult * dim),
      net_2({.in_features = kFeedForwardMult * dim, .out_features = dim}) {}

BasicTransformerBlock::BasicTransformerBlock(const Options& o)
    : first_attention(o.first_attention),
      norm1({.dim = o.dim, .eps = kTransformerLayerNormEps}),
      attn1({.query_dim = o.dim,
             .key_value_dim = o.first_attention == FirstAttention::CrossAttention ? o.cross_attention_dim : o.dim,
             .heads = o.heads,
             .dim_head = o.dim_head}),
      norm2({.dim = o.dim, .eps = kTransformerLayerNormEps}),
      attn2({.query_dim = o.dim,
             .key_value_dim = o.cross_attention_dim,
             .heads = o.heads,
             .dim_head = o.dim_head}),
      norm3({.dim = o.dim, .eps = kTransformerLayerNormEps}),
      ff(o.dim) {}

Transformer2DModel::Transformer2DModel(const Options& o)
    : norm({.num_groups = o.norm_num_groups, .num_channels = o.in_channels, .eps = kTransformerGroupNormEps}),
      proj_in({.in_features = o.in_channels, .out_features = o.heads * o.dim_head, .stored = o.projection}),
      proj_out({.in_features = o.heads * o.dim_head, .out_features = o.in_channels, .stored = o.projection}) {
  transformer_blocks.reserve(static_cast<std::size_t>(o.num_layers));
  for (int i = 0; i < o.num_layers; ++i)
    transformer_blocks.emplace_back(BasicTransformerBlock::Options{
        .dim = o.heads * o.dim_head,
        .heads = o.heads,
        .dim_head = o.dim_head,
        .cross_attention_dim = o.cross_attention_dim,
        .first_attention = o.first_attention});
}

// ---- forward passes

Activation Attention::forward(Ctx& ctx, const Tensor& x, const Tensor& context, const Tensor* residual) const {
  Activation q = to_q.forward(ctx, x);                  // [B, N, heads * d]
  Activation k = to_k.forward(ctx, context);            // [B, M, heads * d]
  Activation v = to_v.forward(ctx, context);            // [B, M, heads * d]
  Activation o = ctx.alloc(q.view().shape);             // [B, N, heads * d]
  ctx.backend.attention(q, k, v, o, {.heads = heads});  // scale 1/sqrt(d), as diffusers
  // Released before the projection allocates, so the arena can reuse their space for its output.
  q.reset();
  k.reset();
  v.reset();
  return to_out.forward(ctx, o, {.residual = residual});  // [B, N, query_dim]
}

Activation Attention::forward_image(Ctx& ctx, const Tensor& x) const {
  if (!group_norm) throw Error("Attention::forward_image: this attention has no group_norm");
  const std::int64_t b = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3];
  const Tensor tokens = x.reshape({b, h * w, c});                      // [B, HW, C]
  const Activation n = group_norm->forward(ctx, x);                    // [B, H, W, C]
  const Tensor n_tokens = n.view().reshape({b, h * w, c});             // [B, HW, C]
  return forward(ctx, n_tokens, n_tokens, &tokens).reshaped(x.shape);  // [B, H, W, C]
}

Activation GEGLU::forward(Ctx& ctx, const Tensor& x) const {
  const Activation p = proj.forward(ctx, x);  // [B, N, 2F]
  Shape shape = p.view().shape;
  shape[shape.rank() - 1] /= 2;
  Activation out = ctx.alloc(shape);  // [B, N, F]
  ctx.backend.geglu(p, out);
  return out;
}

Activation FeedForward::forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const {
  const Activation g = net_0.forward(ctx, x);             // [B, N, 4 dim]
  return net_2.forward(ctx, g, {.residual = &residual});  // [B, N, dim]; net.1 is dropout
}

Activation BasicTransformerBlock::forward(Ctx& ctx, Activation h, const Tensor& encoder_hidden_states) const {
  Activation n = norm1.forward(ctx, h);  // [B, N, C]
  const Tensor& attn1_context = first_attention == FirstAttention::CrossAttention ? encoder_hidden_states : n.view();
  h = attn1.forward(ctx, n, attn1_context, &h.view());          // [B, N, C]
  n = norm2.forward(ctx, h);                                    // [B, N, C]
  h = attn2.forward(ctx, n, encoder_hidden_states, &h.view());  // [B, N, C]
  n = norm3.forward(ctx, h);                                    // [B, N, C]
  return ff.forward(ctx, n, h);                                 // [B, N, C]
}

Activation Transformer2DModel::forward(Ctx& ctx, const Tensor& x, const Tensor& encoder_hidden_states) const {
  const std::int64_t b = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3];
  const Tensor residual = x.reshape({b, hw, c});                      // [B, HW, C]
  Activation n = norm.forward(ctx, x);                                // [B, H, W, C]
  Activation h = proj_in.forward(ctx, n.view().reshape({b, hw, c}));  // [B, HW, inner]
  n.reset();
  for (const auto& block : transformer_blocks) h = block.forward(ctx, std::move(h), encoder_hidden_states);
  return proj_out.forward(ctx, h, {.residual = &residual}).reshaped(x.shape);  // [B, H, W, C]
}

}  // namespace sdgen::models
