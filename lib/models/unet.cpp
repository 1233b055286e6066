// Builds UNet2DConditionModel from its config, following the channel bookkeeping of diffusers'
// UNet2DConditionModel.__init__, and runs its forward pass (see unet.hpp).
#include "lib/models/unet.hpp"

#include <algorithm>
#include <cstddef>

#include "lib/core/error.hpp"

namespace sdgen::models {

namespace {

using weights::UNetConfig;

// The parser guarantees these; a config built another way must not index past a list.
const UNetConfig& checked(const UNetConfig& c) {
  const std::size_t blocks = c.down_block_types.size();
  const bool lengths_agree = blocks > 0 && c.up_block_types.size() == blocks &&
                             c.block_out_channels.size() == blocks && c.layers_per_block.size() == blocks &&
                             c.attention_heads.size() == blocks &&
                             c.transformer_layers_per_block.size() == blocks;
  if (!lengths_agree)
    throw ModelError(cat("UNet config: the per-block lists (down_block_types, up_block_types, "
                         "block_out_channels, layers_per_block, attention heads, "
                         "transformer_layers_per_block) must all have one entry per block"));
  if (std::ranges::any_of(c.attention_heads, [](int h) { return h <= 0; }))
    throw ModelError("UNet config: every block needs at least one attention head");
  return c;
}

CrossAttnOptions cross_attn(const UNetConfig& c, int heads, int transformer_layers) {
  return {.heads = heads,
          .transformer_layers = transformer_layers,
          .cross_attention_dim = c.cross_attention_dim,
          .projection = c.use_linear_projection ? nn::Linear::Stored::Matrix : nn::Linear::Stored::Conv1x1,
          .first_attention = c.only_cross_attention ? FirstAttention::CrossAttention : FirstAttention::SelfAttention};
}

std::vector<UNetDownBlock> make_down_blocks(const UNetConfig& c) {
  std::vector<UNetDownBlock> blocks;
  const std::size_t n = c.down_block_types.size();
  std::int64_t out = c.block_out_channels[0];
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t in = out;
    out = c.block_out_channels[i];
    const DownBlockOptions o{.in_channels = in,
                             .out_channels = out,
                             .temb_channels = c.time_embedding_dim,
                             .num_layers = c.layers_per_block[i],
                             .groups = c.norm_num_groups,
                             .eps = c.norm_eps,
                             .act = nn::activation_op(c.act_fn),
                             .add_downsample = i + 1 < n,
                             .downsample_padding = c.downsample_padding};
    if (c.down_block_types[i] == weights::DownBlockType::CrossAttnDownBlock2D)
      blocks.emplace_back(std::in_place_type<CrossAttnDownBlock2D>, o,
                          cross_attn(c, c.attention_heads[i], c.transformer_layers_per_block[i]));
    else
      blocks.emplace_back(std::in_place_type<DownBlock2D>, o);
  }
  return blocks;
}

// The up path walks the per-block lists in reverse; up block i mirrors down block n - 1 - i and
// has one resnet more than it (the extra one consumes the down block's input skip).
std::vector<UNetUpBlock> make_up_blocks(const UNetConfig& c) {
  std::vector<UNetUpBlock> blocks;
  const std::size_t n = c.up_block_types.size();
  const auto reversed = [n](const std::vector<int>& v, std::size_t i) { return v[n - 1 - i]; };
  std::int64_t out = reversed(c.block_out_channels, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t prev = out;
    out = reversed(c.block_out_channels, i);
    const UpBlockOptions o{.in_channels = reversed(c.block_out_channels, std::min(i + 1, n - 1)),
                           .prev_output_channel = prev,
                           .out_channels = out,
                           .temb_channels = c.time_embedding_dim,
                           .num_layers = reversed(c.layers_per_block, i) + 1,
                           .groups = c.norm_num_groups,
                           .eps = c.norm_eps,
                           .act = nn::activation_op(c.act_fn),
                           .add_upsample = i + 1 < n};
    if (c.up_block_types[i] == weights::UpBlockType::CrossAttnUpBlock2D)
      blocks.emplace_back(std::in_place_type<CrossAttnUpBlock2D>, o,
                          cross_attn(c, reversed(c.attention_heads, i), reversed(c.transformer_layers_per_block, i)));
    else
      blocks.emplace_back(std::in_place_type<UpBlock2D>, o);
  }
  return blocks;
}

}  // namespace

UNet2DConditionModel::UNet2DConditionModel(const UNetConfig& config)
    : act(nn::activation_op(checked(config).act_fn)),
      conv_in({.in_channels = config.in_channels,
               .out_channels = config.block_out_channels[0],
               .kernel_size = config.conv_in_kernel,
               .padding = (config.conv_in_kernel - 1) / 2}),
      time_proj(
          {.num_channels = config.block_out_channels[0],
           .args = {.flip_sin_to_cos = config.flip_sin_to_cos, .freq_shift = static_cast<float>(config.freq_shift)}}),
      time_embedding(config.block_out_channels[0], config.time_embedding_dim, act),
      down_blocks(make_down_blocks(config)),
      mid_block({.channels = config.block_out_channels.back(),
                 .temb_channels = config.time_embedding_dim,
                 .groups = config.norm_num_groups,
                 .eps = config.norm_eps,
                 .act = act,
                 .output_scale_factor = config.mid_block_scale_factor},
                cross_attn(config, config.attention_heads.back(), config.transformer_layers_per_block.back())),
      up_blocks(make_up_blocks(config)),
      conv_norm_out({.num_groups = config.norm_num_groups,
                     .num_channels = config.block_out_channels[0],
                     .eps = config.norm_eps}),
      conv_out({.in_channels = config.block_out_channels[0],
                .out_channels = config.out_channels,
                .kernel_size = config.conv_out_kernel,
                .padding = (config.conv_out_kernel - 1) / 2}) {}

Activation UNet2DConditionModel::forward(Ctx& ctx, const Tensor& sample, const Tensor& timestep,
                                         const Tensor& encoder_hidden_states) const {
  Activation emb;
  {
    const Activation t_emb = time_proj.forward(ctx, timestep);  // [B, C0]
    emb = time_embedding.forward(ctx, t_emb);                   // [B, T]
  }
  // Every resnet applies act to the embedding before projecting it: done once, in place.
  ctx.backend.activation(emb, emb, act);  // [B, T]
  const UNetConditioning cond{.temb_act = emb, .encoder_hidden_states = encoder_hidden_states};

  SkipStack skips;
  skips.push_back(conv_in.forward(ctx, sample));  // [B, H, W, C0]
  for (const auto& block : down_blocks)
    std::visit([&](const auto& b) { b.forward(ctx, skips.back().view(), cond, skips); }, block);  // pushes

  Activation h = mid_block.forward(ctx, skips.back(), cond);  // [B, H / 2^levels, W / 2^levels, C_last], rounded up
  for (const auto& block : up_blocks)
    h = std::visit([&](const auto& b) { return b.forward(ctx, std::move(h), cond, skips); }, block);  // pops
  if (!skips.empty()) throw Error("UNet: the up blocks left skip connections unused");

  h = conv_norm_out.forward(ctx, std::move(h), act);  // [B, H, W, C0], in place
  return conv_out.forward(ctx, h);                    // [B, H, W, out_channels]
}

}  // namespace sdgen::models
