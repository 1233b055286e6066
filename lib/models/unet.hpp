// diffusers models/unets/unet_2d_condition.py: UNet2DConditionModel, the noise predictor of SD
// 1.x and 2.x, as a tree of modules whose member names are the checkpoint's names.
//
//   conv_in -> time_embedding (of the sinusoidal timestep) -> down_blocks -> mid_block ->
//   up_blocks (each consuming the down path's skips) -> conv_norm_out -> act -> conv_out
//
// Everything is built from weights::UNetConfig; nothing is inferred from tensor widths. The down
// and up paths are lists of sum types, as the config chooses a block class per position.
#pragma once

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
  nn::Conv2d conv_in;
  TimestepEmbedding time_embedding;
  std::vector<UNetDownBlock> down_blocks;
  UNetMidBlock2DCrossAttn mid_block;
  std::vector<UNetUpBlock> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;

  // The config must be one the parser accepted (weights/configs.hpp): per-block lists as long as
  // down_block_types, channels divisible by heads and groups.
  explicit UNet2DConditionModel(const weights::UNetConfig& config);

  template <class V>
  void visit(V& v) {
    v("conv_in", conv_in);
    v("time_embedding", time_embedding);
    v("down_blocks", down_blocks);
    v("mid_block", mid_block);
    v("up_blocks", up_blocks);
    v("conv_norm_out", conv_norm_out);
    v("conv_out", conv_out);
  }
};

}  // namespace sdgen::models
