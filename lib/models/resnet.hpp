// diffusers models/resnet.py: the residual block and the resamplers shared by the UNet and the VAE.
//
// ResnetBlock2D is GroupNorm -> act -> conv1 (+ projected time embedding) -> GroupNorm -> act ->
// conv2, added to the input, which goes through a 1x1 conv_shortcut when the channel count
// changes; the sum is divided by output_scale_factor (the UNet mid block's mid_block_scale_factor,
// 1 everywhere else). The VAE's blocks have no time embedding, so time_emb_proj is optional.
// Downsample2D is a stride-2 3x3 convolution (the UNet pads by downsample_padding = 1; the VAE
// encoder pads by 0 and adds one row and column on the bottom/right itself). Upsample2D is a
// nearest 2x upsampling followed by a 3x3 convolution.
//
// Fusions: the SiLU of each norm is part of the group_norm op; the time embedding's per-channel
// add is part of conv1; the shortcut add and the output scale are part of conv2. So a resnet is
// five ops (six with a shortcut, plus its time projection), each reading its input once.
//
// Memory: norm2 runs in place on conv1's output. A caller that gives its input up (the overloads
// taking an Activation) lets the block free it early: with a conv_shortcut the input is not the
// residual, so norm1 overwrites it once the shortcut is computed, and Upsample2D frees its input
// before its convolution. At the VAE decoder's last level (512x512 px) that lowers the decode's
// peak from 640 to 512 MiB.
#pragma once

#include <cstdint>
#include <optional>

#include "lib/nn/layers.hpp"

namespace sdgen::models {

struct ResnetBlock2D {
  struct Options {
    std::int64_t in_channels = 0;
    std::int64_t out_channels = 0;
    std::optional<std::int64_t> temb_channels;  // absent in the VAE
    int groups = 32;
    double eps = 1e-6;
    Act act = Act::Silu;  // the model's act_fn
    double output_scale_factor = 1.0;
  };

  Act act = Act::Silu;
  double output_scale_factor = 1.0;
  nn::GroupNorm norm1;
  nn::Conv2d conv1;
  std::optional<nn::Linear> time_emb_proj;  // present iff the block takes a time embedding
  nn::GroupNorm norm2;
  nn::Conv2d conv2;
  std::optional<nn::Conv2d> conv_shortcut;  // present iff in_channels != out_channels

  explicit ResnetBlock2D(const Options& options);

  // x [B, H, W, in] -> [B, H, W, out]. temb_act: act(time embedding) [B, T], which diffusers
  // applies inside every resnet and the UNet computes once for all of them; null in the VAE.
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor* temb_act) const;
  // The same, taking x over (see the top of this file).
  Activation forward(Ctx& ctx, Activation x, const Tensor* temb_act) const;

  template <class V>
  void visit(V& v) {
    v("norm1", norm1);
    v("conv1", conv1);
    v("time_emb_proj", time_emb_proj);
    v("norm2", norm2);
    v("conv2", conv2);
    v("conv_shortcut", conv_shortcut);
  }

 private:
  // conv1 (+ the time embedding) -> norm2 -> conv2 (+ residual), from norm1's output.
  Activation finish(Ctx& ctx, Activation h, const Tensor& residual, const Tensor* temb_act) const;
};

struct Downsample2D {
  struct Options {
    std::int64_t channels = 0;
    int padding = 1;
  };

  nn::Conv2d conv;

  explicit Downsample2D(const Options& options);

  // x [B, H, W, C] -> [B, (H + 2p - 3) / 2 + 1, (W + 2p - 3) / 2 + 1, C]
  Activation forward(Ctx& ctx, const Tensor& x) const;

  template <class V>
  void visit(V& v) {
    v("conv", conv);
  }
};

// An image's height and width, for up-samplings told their output size.
struct SpatialSize {
  std::int64_t height = 0, width = 0;
};

struct Upsample2D {
  nn::Conv2d conv;

  explicit Upsample2D(std::int64_t channels);

  // x [B, H, W, C] -> [B, 2H, 2W, C], or [B, output_size, C] when given (diffusers' output_size:
  // the UNet's skip size when a side was odd on the way down); x is freed once upsampled.
  Activation forward(Ctx& ctx, Activation x, std::optional<SpatialSize> output_size = std::nullopt) const;

  template <class V>
  void visit(V& v) {
    v("conv", conv);
  }
};

}  // namespace sdgen::models
