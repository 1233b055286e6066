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
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lib/models/attention.hpp"
#include "lib/models/resnet.hpp"
#include "lib/nn/layers.hpp"

namespace sdgen::models {

struct DownBlockOptions {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::optional<std::int64_t> temb_channels;  // absent in the VAE encoder
  int num_layers = 1;
  int groups = 32;
  double eps = 1e-6;
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
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;

  UNetMidBlock2DCrossAttn(const Options& options, const CrossAttnOptions& cross);

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
    bool add_upsample = true;
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<Upsample2D> upsamplers;

  explicit UpDecoderBlock2D(const Options& options);

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
    bool add_attention = true;
  };

  std::vector<ResnetBlock2D> resnets;
  std::vector<std::optional<Attention>> attentions;

  explicit UNetMidBlock2D(const Options& options);

  template <class V>
  void visit(V& v) {
    v("resnets", resnets);
    v("attentions", attentions);
  }
};

}  // namespace sdgen::models
