// Builds UNet2DConditionModel from its config, following the channel bookkeeping of diffusers'
// UNet2DConditionModel.__init__ (see unet.hpp).
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
    : conv_in({.in_channels = checked(config).in_channels,
               .out_channels = config.block_out_channels[0],
               .kernel_size = config.conv_in_kernel,
               .padding = (config.conv_in_kernel - 1) / 2}),
      time_embedding(config.block_out_channels[0], config.time_embedding_dim),
      down_blocks(make_down_blocks(config)),
      mid_block({.channels = config.block_out_channels.back(),
                 .temb_channels = config.time_embedding_dim,
                 .groups = config.norm_num_groups,
                 .eps = config.norm_eps},
                cross_attn(config, config.attention_heads.back(), config.transformer_layers_per_block.back())),
      up_blocks(make_up_blocks(config)),
      conv_norm_out({.num_groups = config.norm_num_groups,
                     .num_channels = config.block_out_channels[0],
                     .eps = config.norm_eps}),
      conv_out({.in_channels = config.block_out_channels[0],
                .out_channels = config.out_channels,
                .kernel_size = config.conv_out_kernel,
                .padding = (config.conv_out_kernel - 1) / 2}) {}

}  // namespace sdgen::models
