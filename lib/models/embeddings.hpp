// diffusers models/embeddings.py: TimestepEmbedding, the two-layer MLP (linear_1 -> act ->
// linear_2) that turns the sinusoidal timestep features (width block_out_channels[0]) into the
// time embedding every UNet resnet adds (width time_embed_dim, 4x by default). The sinusoidal
// Timesteps projection before it has no weights.
#pragma once

#include <cstdint>

#include "lib/nn/layers.hpp"

namespace sdgen::models {

struct TimestepEmbedding {
  nn::Linear linear_1;
  nn::Linear linear_2;

  TimestepEmbedding(std::int64_t in_channels, std::int64_t time_embed_dim);

  template <class V>
  void visit(V& v) {
    v("linear_1", linear_1);
    v("linear_2", linear_2);
  }
};

}  // namespace sdgen::models
