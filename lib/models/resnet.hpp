// diffusers models/resnet.py: the residual block and the resamplers shared by the UNet and the VAE.
//
// ResnetBlock2D is GroupNorm -> act -> conv1 (+ projected time embedding) -> GroupNorm -> act ->
// conv2, added to the input, which goes through a 1x1 conv_shortcut when the channel count
// changes. The VAE's blocks have no time embedding, so time_emb_proj is optional as well.
// Downsample2D is a stride-2 3x3 convolution (the UNet pads by downsample_padding = 1; the VAE
// encoder pads by 0 and adds one row and column on the bottom/right itself). Upsample2D is a
// nearest 2x upsampling followed by a 3x3 convolution.
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
  };

  nn::GroupNorm norm1;
  nn::Conv2d conv1;
  std::optional<nn::Linear> time_emb_proj;  // present iff the block takes a time embedding
  nn::GroupNorm norm2;
  nn::Conv2d conv2;
  std::optional<nn::Conv2d> conv_shortcut;  // present iff in_channels != out_channels

  explicit ResnetBlock2D(const Options& options);

  template <class V>
  void visit(V& v) {
    v("norm1", norm1);
    v("conv1", conv1);
    v("time_emb_proj", time_emb_proj);
    v("norm2", norm2);
    v("conv2", conv2);
    v("conv_shortcut", conv_shortcut);
  }
};

struct Downsample2D {
  struct Options {
    std::int64_t channels = 0;
    int padding = 1;
  };

  nn::Conv2d conv;

  explicit Downsample2D(const Options& options);

  template <class V>
  void visit(V& v) {
    v("conv", conv);
  }
};

struct Upsample2D {
  nn::Conv2d conv;

  explicit Upsample2D(std::int64_t channels);

  template <class V>
  void visit(V& v) {
    v("conv", conv);
  }
};

}  // namespace sdgen::models
