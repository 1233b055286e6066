// Shapes and forward passes of diffusers' Timesteps and TimestepEmbedding (see embeddings.hpp).
#include "lib/models/embeddings.hpp"

namespace sdgen::models {

Activation Timesteps::forward(Ctx& ctx, const Tensor& timesteps) const {
  Activation out = ctx.alloc({timesteps.shape[0], num_channels});  // [B, C]
  ctx.backend.timestep_embedding(timesteps, out, args);
  return out;
}

TimestepEmbedding::TimestepEmbedding(std::int64_t in_channels, std::int64_t time_embed_dim, Act activation)
    : act(activation),
      linear_1({.in_features = in_channels, .out_features = time_embed_dim}),
      linear_2({.in_features = time_embed_dim, .out_features = time_embed_dim}) {}

Activation TimestepEmbedding::forward(Ctx& ctx, const Tensor& sample) const {
  const Activation h = linear_1.forward(ctx, sample, {.act = act});  // [B, T]
  return linear_2.forward(ctx, h);                                   // [B, T]
}

}  // namespace sdgen::models
