// Shapes and forward passes of diffusers' ResnetBlock2D, Downsample2D and Upsample2D (see
// resnet.hpp).
#include "lib/models/resnet.hpp"

#include "lib/core/error.hpp"

namespace sdgen::models {

ResnetBlock2D::ResnetBlock2D(const Options& o)
    : act(o.act),
      output_scale_factor(o.output_scale_factor),
      norm1({.num_groups = o.groups, .num_channels = o.in_channels, .eps = o.eps}),
      conv1({.in_channels = o.in_channels, .out_channels = o.out_channels, .kernel_size = 3, .padding = 1}),
      norm2({.num_groups = o.groups, .num_channels = o.out_channels, .eps = o.eps}),
      conv2({.in_channels = o.out_channels, .out_channels = o.out_channels, .kernel_size = 3, .padding = 1}) {
  if (o.temb_channels)
    time_emb_proj.emplace(nn::Linear::Options{.in_features = *o.temb_channels, .out_features = o.out_channels});
  if (o.in_channels != o.out_channels)
    conv_shortcut.emplace(nn::Conv2d::Options{.in_channels = o.in_channels, .out_channels = o.out_channels});
}

Activation ResnetBlock2D::forward(Ctx& ctx, const Tensor& x, const Tensor* temb_act) const {
  Activation shortcut;
  if (conv_shortcut) shortcut = conv_shortcut->forward(ctx, x);  // [B, H, W, out]
  Activation h = norm1.forward(ctx, x, act);                     // [B, H, W, in]
  return finish(ctx, std::move(h), conv_shortcut ? shortcut.view() : x, temb_act);
}

Activation ResnetBlock2D::forward(Ctx& ctx, Activation x, const Tensor* temb_act) const {
  if (!conv_shortcut) return forward(ctx, x.view(), temb_act);  // x is the residual: it must survive
  const Activation shortcut = conv_shortcut->forward(ctx, x);   // [B, H, W, out]
  Activation h = norm1.forward(ctx, std::move(x), act);         // [B, H, W, in], in place
  return finish(ctx, std::move(h), shortcut, temb_act);
}

Activation ResnetBlock2D::finish(Ctx& ctx, Activation h, const Tensor& residual, const Tensor* temb_act) const {
  Activation temb;
  if (time_emb_proj) {
    if (temb_act == nullptr) throw Error("ResnetBlock2D: a block with time_emb_proj needs the time embedding");
    temb = time_emb_proj->forward(ctx, *temb_act);  // [B, out]
  }
  h = conv1.forward(ctx, h, {.add_per_channel = time_emb_proj ? &temb.view() : nullptr});  // [B, H, W, out]
  temb.reset();
  h = norm2.forward(ctx, std::move(h), act);  // [B, H, W, out], in place; dropout is the identity here
  const float output_scale = static_cast<float>(1.0 / output_scale_factor);
  return conv2.forward(ctx, h, {.residual = &residual, .output_scale = output_scale});  // [B, H, W, out]
}

Downsample2D::Downsample2D(const Options& o)
    : conv({.in_channels = o.channels,
            .out_channels = o.channels,
            .kernel_size = 3,
            .stride = 2,
            .padding = o.padding}) {}

Activation Downsample2D::forward(Ctx& ctx, const Tensor& x) const { return conv.forward(ctx, x); }

Upsample2D::Upsample2D(std::int64_t channels)
    : conv({.in_channels = channels, .out_channels = channels, .kernel_size = 3, .padding = 1}) {}

Activation Upsample2D::forward(Ctx& ctx, Activation x, std::optional<SpatialSize> output_size) const {
  const Shape& s = x.view().shape;
  const SpatialSize size = output_size.value_or(SpatialSize{2 * s[1], 2 * s[2]});
  const Activation up = ctx.alloc({s[0], size.height, size.width, s[3]});  // [B, Ho, Wo, C]
  ctx.backend.upsample_nearest(x, up);
  x.reset();
  return conv.forward(ctx, up);  // [B, Ho, Wo, C]
}

}  // namespace sdgen::models
