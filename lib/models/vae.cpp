// Builds AutoencoderKL from its config, following diffusers' Encoder/Decoder constructors, and
// runs its decoder (see vae.hpp).
#include "lib/models/vae.hpp"

#include <cstddef>

#include "lib/core/error.hpp"

namespace sdgen::models {

namespace {

using weights::VaeConfig;

constexpr double kVaeEps = 1e-6;

const VaeConfig& checked(const VaeConfig& c) {
  if (c.block_out_channels.empty() || c.layers_per_block <= 0)
    throw ModelError("VAE config: block_out_channels and layers_per_block must describe at least one block");
  return c;
}

nn::Conv2d conv3x3(std::int64_t in, std::int64_t out) {
  return nn::Conv2d({.in_channels = in, .out_channels = out, .kernel_size = 3, .padding = 1});
}

UNetMidBlock2D::Options mid_block_options(const VaeConfig& c) {
  return {.channels = c.block_out_channels.back(),
          .groups = c.norm_num_groups,
          .eps = kVaeEps,
          .act = nn::activation_op(c.act_fn),
          .add_attention = c.mid_block_add_attention};
}

std::vector<DownEncoderBlock2D> encoder_blocks(const VaeConfig& c) {
  std::vector<DownEncoderBlock2D> blocks;
  const std::size_t n = c.block_out_channels.size();
  std::int64_t out = c.block_out_channels[0];
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t in = out;
    out = c.block_out_channels[i];
    // Padding 0: the encoder's Downsample2D pads one row and column (bottom/right) itself.
    blocks.emplace_back(DownBlockOptions{.in_channels = in,
                                         .out_channels = out,
                                         .num_layers = c.layers_per_block,
                                         .groups = c.norm_num_groups,
                                         .eps = kVaeEps,
                                         .act = nn::activation_op(c.act_fn),
                                         .add_downsample = i + 1 < n,
                                         .downsample_padding = 0});
  }
  return blocks;
}

std::vector<UpDecoderBlock2D> decoder_blocks(const VaeConfig& c) {
  std::vector<UpDecoderBlock2D> blocks;
  const std::size_t n = c.block_out_channels.size();
  std::int64_t out = c.block_out_channels.back();
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t prev = out;
    out = c.block_out_channels[n - 1 - i];
    blocks.emplace_back(UpDecoderBlock2D::Options{.in_channels = prev,
                                                  .out_channels = out,
                                                  .num_layers = c.layers_per_block + 1,
                                                  .groups = c.norm_num_groups,
                                                  .eps = kVaeEps,
                                                  .act = nn::activation_op(c.act_fn),
                                                  .add_upsample = i + 1 < n});
  }
  return blocks;
}

std::optional<nn::Conv2d> conv1x1_if(bool present, std::int64_t channels) {
  if (!present) return std::nullopt;
  return nn::Conv2d({.in_channels = channels, .out_channels = channels});
}

}  // namespace

Encoder::Encoder(const VaeConfig& c)
    : conv_in(conv3x3(c.in_channels, checked(c).block_out_channels[0])),
      down_blocks(encoder_blocks(c)),
      mid_block(mid_block_options(c)),
      conv_norm_out({.num_groups = c.norm_num_groups, .num_channels = c.block_out_channels.back(), .eps = kVaeEps}),
      // double_z: the mean and the log-variance of the latent.
      conv_out(conv3x3(c.block_out_channels.back(), 2 * std::int64_t{c.latent_channels})) {}

Decoder::Decoder(const VaeConfig& c)
    : conv_in(conv3x3(c.latent_channels, checked(c).block_out_channels.back())),
      mid_block(mid_block_options(c)),
      up_blocks(decoder_blocks(c)),
      conv_norm_out({.num_groups = c.norm_num_groups, .num_channels = c.block_out_channels[0], .eps = kVaeEps}),
      conv_out(conv3x3(c.block_out_channels[0], c.out_channels)) {}

AutoencoderKL::AutoencoderKL(const VaeConfig& c)
    : encoder(c),
      decoder(c),
      quant_conv(conv1x1_if(c.use_quant_conv, 2 * std::int64_t{c.latent_channels})),
      post_quant_conv(conv1x1_if(c.use_post_quant_conv, c.latent_channels)) {}

Activation Decoder::forward(Ctx& ctx, const Tensor& z) const {
  Activation h = conv_in.forward(ctx, z);                                    // [B, h, w, C_last]
  h = mid_block.forward(ctx, h);                                             // [B, h, w, C_last]
  for (const auto& block : up_blocks) h = block.forward(ctx, std::move(h));  // [B, 2h, 2w, C] per level
  h = conv_norm_out.forward(ctx, std::move(h), Act::Silu);                   // [B, H, W, C0], in place
  return conv_out.forward(ctx, h);                                           // [B, H, W, out_channels]
}

Activation AutoencoderKL::decode(Ctx& ctx, const Tensor& z) const {
  if (!post_quant_conv) return decoder.forward(ctx, z);
  const Activation q = post_quant_conv->forward(ctx, z);  // [B, h, w, latent_channels]
  return decoder.forward(ctx, q);                         // [B, H, W, out_channels]
}

}  // namespace sdgen::models
