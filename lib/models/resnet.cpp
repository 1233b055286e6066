// Shapes of diffusers' ResnetBlock2D, Downsample2D and Upsample2D (see resnet.hpp).
#include "lib/models/resnet.hpp"

namespace sdgen::models {

ResnetBlock2D::ResnetBlock2D(const Options& o)
    : norm1({.num_groups = o.groups, .num_channels = o.in_channels, .eps = o.eps}),
      conv1({.in_channels = o.in_channels, .out_channels = o.out_channels, .kernel_size = 3, .padding = 1}),
      norm2({.num_groups = o.groups, .num_channels = o.out_channels, .eps = o.eps}),
      conv2({.in_channels = o.out_channels, .out_channels = o.out_channels, .kernel_size = 3, .padding = 1}) {
  if (o.temb_channels)
    time_emb_proj.emplace(nn::Linear::Options{.in_features = *o.temb_channels, .out_features = o.out_channels});
  if (o.in_channels != o.out_channels)
    conv_shortcut.emplace(nn::Conv2d::Options{.in_channels = o.in_channels, .out_channels = o.out_channels});
}

Downsample2D::Downsample2D(const Options& o)
    : conv({.in_channels = o.channels,
            .out_channels = o.channels,
            .kernel_size = 3,
            .stride = 2,
            .padding = o.padding}) {}

Upsample2D::Upsample2D(std::int64_t channels)
    : conv({.in_channels = channels, .out_channels = channels, .kernel_size = 3, .padding = 1}) {}

}  // namespace sdgen::models
