// diffusers models/unets/unet_2d_blocks.py: the blocks the UNet and the VAE are stacked from.
//
// UNet (every resnet takes the time embedding):
//   DownBlock2D / CrossAttnDownBlock2D   resnets[i] (then attentions[i]), then one stride-2
//                                        downsampler unless it is the last block
//   UNetMidBlock2DCrossAttn              resnets[0], then per layer attentions[i], resnets[i + 1]
//   UpBlock2D / CrossAttnUpBlock2D       resnets[i] (then attentions[i]), then one upsampler unless
//                                        it is the last block; resnet i takes the skip activation of
//                                        the matching down block concatenated to its input, which is
//                                        why its input width is (previous width + skip width)
// VAE (no time embedding):
//   DownEncoderBlock2D = DownBlock2D without time embedding (the same modules)
//   UpDecoderBlock2D                     resnets then an optional upsampler, no skip inputs
//   UNetMidBlock2D                       resnets[0], then per layer an optional single-head
//                                        attention (mid_block_add_attention) and a resnet
//
// ModuleLists of at most one element (downsamplers, upsamplers) are vectors, as in diffusers, so
// the names "downsamplers.0" and the forward loop over them come out the same.
//
// The skip connections are a stack of owning Activations (diffusers' down_block_res_samples): a
// down block pushes each output, and its last push is also what it passes on; an up block pops
// one per resnet. Each skip's memory is therefore released exactly when its resnet has read it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lib/core/ctx.hpp"
#include "lib/models/attention.hpp"
#include "lib/models/resnet.hpp"
#include "lib/nn/layers.hpp"

namespace sdgen::models {

// What every UNet block receives besides its input, the same for a whole forward pass.
struct UNetConditioning {
  const Tensor& temb_act;               // act(time embedding) [B, T], projected by each resnet
  const Tensor& encoder_hidden_states;  // [B, M, cross_attention_dim]
};

// The down path's outputs, consumed in reverse by the up path.
using SkipStack = std::vector<Activation>;

struct DownBlockOptions {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::optional<std::int64_t> temb_channels;  // absent in the VAE encoder
  int num_layers = 1;
  int groups = 32;
  double eps = 1e-6;
  Act act = Act::Silu;
  bool add_downsample = true;
  int downsample_padding = 1;
};

struct UpBlockOptions {
  std::int64_t in_channels = 0;          // input width of the matching down block (last skip)
  std::int64_t prev_output_channel = 0;  // width arriving from the block below
  std::int64_t out_channels = 0;
  std::int64_t temb_channels = 0;
  int num_layers = 1;
  int groups = 32;
  double eps = 1e-6;
  Act act = Act::Silu;
  bool add_upsample = true;
};

// What the cross-attention blocks add to their plain counterparts.
struct CrossAttnOptions {
  int heads = 1;
  int transformer_layers = 1;  // transformer_layers_per_block
  std::int64_t cross_attention_dim = 0;
  nn::Linear::Stored projection = nn::Linear::Stored::Conv1x1;
  FirstAttention first_attention = FirstAttention::SelfAttention;
};

struct DownBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Downsample2D> downsamplers;

  explicit DownBlock2D(const DownBlockOptions& options);

  // x [B, H, W, in] -> pushes [B, H, W, out] per resnet, then [B, H/2, W/2, out] if downsampling.
  // `x` is taken by value: it is usually skips.back(), which the pushes may move.
  void forward(Ctx& ctx, Tensor x, const UNetConditioning& cond, SkipStack& skips) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("downsamplers", downsamplers);
  }
};

using DownEncoderBlock2D = DownBlock2D;

struct CrossAttnDownBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::vector<Downsample2D> downsamplers;

  CrossAttnDownBlock2D(const DownBlockOptions& options, const CrossAttnOptions& cross);

  // As DownBlock2D, with each resnet followed by its transformer.
  void forward(Ctx& ctx, Tensor x, const UNetConditioning& cond, SkipStack& skips) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("attentions", attentions);
    v("downsamplers", downsamplers);
  }
};

struct UNetMidBlock2DCrossAttn {
  struct Options {
    std::int64_t channels = 0;
    std::int64_t temb_channels = 0;
    int groups = 32;
    double eps = 1e-5;
    Act act = Act::Silu;
    double output_scale_factor = 1.0;  // the UNet's mid_block_scale_factor
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;

  UNetMidBlock2DCrossAttn(const Options& options, const CrossAttnOptions& cross);

  // x [B, H, W, C] -> [B, H, W, C]
  Activation forward(Ctx& ctx, const Tensor& x, const UNetConditioning& cond) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("attentions", attentions);
  }
};

struct UpBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Upsample2D> upsamplers;

  explicit UpBlock2D(const UpBlockOptions& options);

  // x [B, H, W, prev] -> [B, 2H, 2W, out] (or [B, H, W, out] without upsampler); each resnet
  // first concatenates the popped skip to its input.
  Activation forward(Ctx& ctx, Activation x, const UNetConditioning& cond, SkipStack& skips) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("upsamplers", upsamplers);
  }
};

struct CrossAttnUpBlock2D {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::vector<Upsample2D> upsamplers;

  CrossAttnUpBlock2D(const UpBlockOptions& options, const CrossAttnOptions& cross);

  // As UpBlock2D, with each resnet followed by its transformer.
  Activation forward(Ctx& ctx, Activation x, const UNetConditioning& cond, SkipStack& skips) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("attentions", attentions);
    v("upsamplers", upsamplers);
  }
};

struct UpDecoderBlock2D {
  struct Options {
    std::int64_t in_channels = 0;
    std::int64_t out_channels = 0;
    int num_layers = 1;
    int groups = 32;
    double eps = 1e-6;
    Act act = Act::Silu;
    bool add_upsample = true;
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<Upsample2D> upsamplers;

  explicit UpDecoderBlock2D(const Options& options);

  // x [B, H, W, in] -> [B, 2H, 2W, out] (or [B, H, W, out] without upsampler)
  Activation forward(Ctx& ctx, Activation x) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("upsamplers", upsamplers);
  }
};

// The VAE's mid block. diffusers keeps a None in `attentions` when mid_block_add_attention is
// false; an empty optional here plays that part, so the resnet/attention pairing stays by index.
struct UNetMidBlock2D {
  struct Options {
    std::int64_t channels = 0;
    int groups = 32;
    double eps = 1e-6;
    Act act = Act::Silu;
    bool add_attention = true;
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<std::optional<Attention>> attentions;

  explicit UNetMidBlock2D(const Options& options);

  // x [B, H, W, C] -> [B, H, W, C]
  Activation forward(Ctx& ctx, const Tensor& x) const;

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("attentions", attentions);
  }
};

}  // namespace sdgen::models
