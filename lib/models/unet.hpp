// diffusers models/unets/unet_2d_condition.py: UNet2DConditionModel, the noise predictor of SD
// 1.x and 2.x, as a tree of modules whose member names are the checkpoint's names.
//
//   conv_in -> time_embedding (of the sinusoidal timestep) -> down_blocks -> mid_block ->
//   up_blocks (each consuming the down path's skips) -> conv_norm_out -> act -> conv_out
//
// Everything is built from weights::UNetConfig; nothing is inferred from tensor widths. The down
// and up paths are lists of sum types, as the config chooses a block class per position.
//
// forward() is diffusers' forward for SD 1.x/2.x: NHWC in, NHWC out; the prediction (epsilon,
// v or sample) is whatever the model was trained for, the scheduler's business. The UNet runs at
// any latent size, as diffusers does: a stride-2 down-sampling rounds an odd side up, and the up
// block above it then up-samples to its skip's size instead of 2x (next_skip_size).
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "lib/models/embeddings.hpp"
#include "lib/models/unet_blocks.hpp"
#include "lib/nn/layers.hpp"
#include "weights/configs.hpp"

namespace sdgen::models {

using UNetDownBlock = std::variant<DownBlock2D, CrossAttnDownBlock2D>;
using UNetUpBlock = std::variant<UpBlock2D, CrossAttnUpBlock2D>;

struct UNet2DConditionModel {
  Act act = Act::Silu;  // act_fn: resnets, the time embedding, conv_act
  nn::Conv2d conv_in;
  Timesteps time_proj;
  TimestepEmbedding time_embedding;
  std::vector<UNetDownBlock> down_blocks;
  UNetMidBlock2DCrossAttn mid_block;
  std::vector<UNetUpBlock> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;

  // The config must be one the parser accepted (weights/configs.hpp): per-block lists as long as
  // down_block_types, channels divisible by heads and groups.
  explicit UNet2DConditionModel(const weights::UNetConfig& config);

  // sample [B, H, W, in_channels], timestep [B] (F32), encoder_hidden_states [B, M,
  // cross_attention_dim] -> [B, H, W, out_channels].
  Activation forward(Ctx& ctx, const Tensor& sample, const Tensor& timestep, const Tensor& encoder_hidden_states) const;

  template <class V>
  void visit(V& v) {
    v("conv_in", conv_in);
    v("time_proj", time_proj);
    v("time_embedding", time_embedding);
    v("down_blocks", down_blocks);
    v("mid_block", mid_block);
    v("up_blocks", up_blocks);
    v("conv_norm_out", conv_norm_out);
    v("conv_out", conv_out);
  }
};

}  // namespace sdgen::models
