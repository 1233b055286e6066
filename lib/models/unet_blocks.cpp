// Shapes and forward passes of the diffusers UNet/VAE blocks (see unet_blocks.hpp). The channel
// bookkeeping follows unet_2d_blocks.py: a down block's first resnet changes the width, an up
// block's resnets each take one skip activation concatenated to their input.
#include "lib/models/unet_blocks.hpp"

#include "lib/core/error.hpp"

namespace sdgen::models {

namespace {

std::vector<ResnetBlock2D> down_resnets(const DownBlockOptions& o) {
  std::vector<ResnetBlock2D> resnets;
  for (int i = 0; i < o.num_layers; ++i)
    resnets.emplace_back(ResnetBlock2D::Options{.in_channels = i == 0 ? o.in_channels : o.out_channels,
                                                .out_channels = o.out_channels,
                                                .temb_channels = o.temb_channels,
                                                .groups = o.groups,
                                                .eps = o.eps,
                                                .act = o.act});
  return resnets;
}

std::vector<Downsample2D> make_downsamplers(const DownBlockOptions& o) {
  std::vector<Downsample2D> result;
  if (o.add_downsample)
    result.emplace_back(Downsample2D::Options{.channels = o.out_channels, .padding = o.downsample_padding});
  return result;
}

// Resnet i of an up block reads the block's running width (the block below's output for i = 0)
// plus the skip it pops: the matching down block's output, or for the last resnet that block's
// input.
std::vector<ResnetBlock2D> up_resnets(const UpBlockOptions& o) {
  std::vector<ResnetBlock2D> resnets;
  for (int i = 0; i < o.num_layers; ++i) {
    const std::int64_t skip = i == o.num_layers - 1 ? o.in_channels : o.out_channels;
    const std::int64_t running = i == 0 ? o.prev_output_channel : o.out_channels;
    resnets.emplace_back(ResnetBlock2D::Options{.in_channels = running + skip,
                                                .out_channels = o.out_channels,
                                                .temb_channels = o.temb_channels,
                                                .groups = o.groups,
                                                .eps = o.eps,
                                                .act = o.act});
  }
  return resnets;
}

std::vector<Upsample2D> make_upsamplers(bool add_upsample, std::int64_t channels) {
  std::vector<Upsample2D> result;
  if (add_upsample) result.emplace_back(channels);
  return result;
}

// One Transformer2DModel per resnet; diffusers gives it in_channels / heads as the head width.
std::vector<Transformer2DModel> transformers(int count, std::int64_t channels, int groups,
                                             const CrossAttnOptions& cross) {
  std::vector<Transformer2DModel> result;
  for (int i = 0; i < count; ++i)
    result.emplace_back(Transformer2DModel::Options{.in_channels = channels,
                                                    .heads = cross.heads,
                                                    .dim_head = channels / cross.heads,
                                                    .num_layers = cross.transformer_layers,
                                                    .cross_attention_dim = cross.cross_attention_dim,
                                                    .norm_num_groups = groups,
                                                    .projection = cross.projection,
                                                    .first_attention = cross.first_attention});
  return result;
}

}  // namespace

DownBlock2D::DownBlock2D(const DownBlockOptions& o) : resnets(down_resnets(o)), downsamplers(make_downsamplers(o)) {}

CrossAttnDownBlock2D::CrossAttnDownBlock2D(const DownBlockOptions& o, const CrossAttnOptions& cross)
    : resnets(down_resnets(o)),
      attentions(transformers(o.num_layers, o.out_channels, o.groups, cross)),
      downsamplers(make_downsamplers(o)) {}

UNetMidBlock2DCrossAttn::UNetMidBlock2DCrossAttn(const Options& o, const CrossAttnOptions& cross)
    : attentions(transformers(1, o.channels, o.groups, cross)) {
  // resnets[0], then one (attention, resnet) pair per layer; SD's mid block has one layer.
  for (int i = 0; i < 2; ++i)
    resnets.emplace_back(ResnetBlock2D::Options{.in_channels = o.channels,
                                                .out_channels = o.channels,
                                                .temb_channels = o.temb_channels,
                                                .groups = o.groups,
                                                .eps = o.eps,
                                                .act = o.act,
                                                .output_scale_factor = o.output_scale_factor});
}

UpBlock2D::UpBlock2D(const UpBlockOptions& o)
    : resnets(up_resnets(o)), upsamplers(make_upsamplers(o.add_upsample, o.out_channels)) {}

CrossAttnUpBlock2D::CrossAttnUpBlock2D(const UpBlockOptions& o, const CrossAttnOptions& cross)
    : resnets(up_resnets(o)),
      attentions(transformers(o.num_layers, o.out_channels, o.groups, cross)),
      upsamplers(make_upsamplers(o.add_upsample, o.out_channels)) {}

UpDecoderBlock2D::UpDecoderBlock2D(const Options& o)
    : upsamplers(make_upsamplers(o.add_upsample, o.out_channels)) {
  for (int i = 0; i < o.num_layers; ++i)
    resnets.emplace_back(ResnetBlock2D::Options{.in_channels = i == 0 ? o.in_channels : o.out_channels,
                                                .out_channels = o.out_channels,
                                                .groups = o.groups,
                                                .eps = o.eps,
                                                .act = o.act});
}

UNetMidBlock2D::UNetMidBlock2D(const Options& o) {
  const ResnetBlock2D::Options resnet{
      .in_channels = o.channels, .out_channels = o.channels, .groups = o.groups, .eps = o.eps, .act = o.act};
  resnets.emplace_back(resnet);
  // One layer: an attention over all channels as a single head (attention_head_dim = channels),
  // with biases on every projection and its own group norm, then a resnet.
  if (o.add_attention)
    attentions.emplace_back(Attention::Options{
        .query_dim = o.channels,
        .key_value_dim = o.channels,
        .heads = 1,
        .dim_head = o.channels,
        .qkv_bias = nn::Bias::With,
        .group_norm = nn::GroupNorm::Options{.num_groups = o.groups, .num_channels = o.channels, .eps = o.eps}});
  else
    attentions.emplace_back(std::nullopt);
  resnets.emplace_back(resnet);
}

// ---- forward passes

namespace {

// Pops the newest skip and returns [x, skip] along the channels (diffusers' torch.cat order).
Activation concat_skip(Ctx& ctx, const Tensor& x, SkipStack& skips) {
  if (skips.empty()) throw Error("UNet up block: no skip connection left to concatenate");
  const Activation skip = std::move(skips.back());
  skips.pop_back();
  Activation out = ctx.alloc({x.shape[0], x.shape[1], x.shape[2], x.shape[3] + skip.view().shape[3]});
  ctx.backend.concat_channels(x, skip, out);  // [B, H, W, Cx + Cskip]
  return out;
}

// diffusers' upsample_size: the next skip's size, which is 2H, 2W unless a side was odd on the
// way down (then the stride-2 convolution rounded it up and the up path must match it).
std::optional<SpatialSize> next_skip_size(const SkipStack& skips) {
  if (skips.empty()) return std::nullopt;
  const Shape& s = skips.back().view().shape;
  return SpatialSize{s[1], s[2]};
}

}  // namespace

void DownBlock2D::forward(Ctx& ctx, Tensor x, const UNetConditioning& cond, SkipStack& skips) const {
  for (const auto& resnet : resnets) {
    skips.push_back(resnet.forward(ctx, x, &cond.temb_act));  // [B, H, W, out]
    x = skips.back().view();
  }
  for (const auto& downsampler : downsamplers) skips.push_back(downsampler.forward(ctx, x));  // [B, H/2, W/2, out]
}

void CrossAttnDownBlock2D::forward(Ctx& ctx, Tensor x, const UNetConditioning& cond, SkipStack& skips) const {
  for (std::size_t i = 0; i < resnets.size(); ++i) {
    const Activation h = resnets[i].forward(ctx, x, &cond.temb_act);             // [B, H, W, out]
    skips.push_back(attentions[i].forward(ctx, h, cond.encoder_hidden_states));  // [B, H, W, out]
    x = skips.back().view();
  }
  for (const auto& downsampler : downsamplers) skips.push_back(downsampler.forward(ctx, x));  // [B, H/2, W/2, out]
}

Activation UNetMidBlock2DCrossAttn::forward(Ctx& ctx, const Tensor& x, const UNetConditioning& cond) const {
  Activation h = resnets[0].forward(ctx, x, &cond.temb_act);  // [B, H, W, C]
  for (std::size_t i = 0; i < attentions.size(); ++i) {
    h = attentions[i].forward(ctx, h, cond.encoder_hidden_states);  // [B, H, W, C]
    h = resnets[i + 1].forward(ctx, std::move(h), &cond.temb_act);  // [B, H, W, C]
  }
  return h;
}

Activation UpBlock2D::forward(Ctx& ctx, Activation x, const UNetConditioning& cond, SkipStack& skips) const {
  for (const auto& resnet : resnets) {
    Activation joined = concat_skip(ctx, x, skips);              // [B, H, W, C + skip]
    x = resnet.forward(ctx, std::move(joined), &cond.temb_act);  // [B, H, W, out]
  }
  for (const auto& upsampler : upsamplers)
    x = upsampler.forward(ctx, std::move(x), next_skip_size(skips));  // [B, 2H, 2W, out]
  return x;
}

Activation CrossAttnUpBlock2D::forward(Ctx& ctx, Activation x, const UNetConditioning& cond, SkipStack& skips) const {
  for (std::size_t i = 0; i < resnets.size(); ++i) {
    Activation joined = concat_skip(ctx, x, skips);                  // [B, H, W, C + skip]
    x = resnets[i].forward(ctx, std::move(joined), &cond.temb_act);  // [B, H, W, out]
    x = attentions[i].forward(ctx, x, cond.encoder_hidden_states);   // [B, H, W, out]
  }
  for (const auto& upsampler : upsamplers)
    x = upsampler.forward(ctx, std::move(x), next_skip_size(skips));  // [B, 2H, 2W, out]
  return x;
}

Activation UpDecoderBlock2D::forward(Ctx& ctx, Activation x) const {
  for (const auto& resnet : resnets) x = resnet.forward(ctx, std::move(x), nullptr);  // [B, H, W, out]
  for (const auto& upsampler : upsamplers) x = upsampler.forward(ctx, std::move(x));  // [B, 2H, 2W, out]
  return x;
}

Activation UNetMidBlock2D::forward(Ctx& ctx, const Tensor& x) const {
  Activation h = resnets[0].forward(ctx, x, nullptr);  // [B, H, W, C]
  for (std::size_t i = 0; i < attentions.size(); ++i) {
    if (attentions[i]) h = attentions[i]->forward_image(ctx, h);  // [B, H, W, C]
    h = resnets[i + 1].forward(ctx, std::move(h), nullptr);       // [B, H, W, C]
  }
  return h;
}

}  // namespace sdgen::models
