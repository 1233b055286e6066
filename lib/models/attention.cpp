// Shapes of diffusers' Attention, FeedForward, BasicTransformerBlock and Transformer2DModel (see
// attention.hpp).
#include "lib/models/attention.hpp"

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
    : norm1({.dim = o.dim, .eps = kTransformerLayerNormEps}),
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

}  // namespace sdgen::models
