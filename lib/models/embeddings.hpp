// diffusers models/embeddings.py: the two halves of the UNet's time conditioning.
//
// Timesteps (the UNet's `time_proj`, no weights): the sinusoidal features of the timestep,
// width block_out_channels[0], [cos, sin] with flip_sin_to_cos, frequencies shifted by freq_shift
// (get_timestep_embedding). TimestepEmbedding: the two-layer MLP (linear_1 -> act -> linear_2)
// that turns them into the time embedding every UNet resnet adds (width time_embed_dim, 4x by
// default).
#pragma once

#include <cstdint>

#include "lib/nn/layers.hpp"

namespace sdgen::models {

struct Timesteps {
  std::int64_t num_channels = 0;
  TimestepEmbeddingArgs args;

  // timesteps [B] (F32) -> [B, num_channels]
  Activation forward(Ctx& ctx, const Tensor& timesteps) const;

  template <class V>
  void visit(V& /*no parameters*/) {}
};

struct TimestepEmbedding {
  Act act = Act::Silu;
  nn::Linear linear_1;
  nn::Linear linear_2;

  TimestepEmbedding(std::int64_t in_channels, std::int64_t time_embed_dim, Act act);

  // sample [B, in_channels] -> [B, time_embed_dim]
  Activation forward(Ctx& ctx, const Tensor& sample) const;

  template <class V>
  void visit(V& v) {
    v("linear_1", linear_1);
    v("linear_2", linear_2);
  }
};

}  // namespace sdgen::models
