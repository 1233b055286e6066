// Shapes of diffusers' TimestepEmbedding (see embeddings.hpp).
#include "lib/models/embeddings.hpp"

namespace sdgen::models {

TimestepEmbedding::TimestepEmbedding(std::int64_t in_channels, std::int64_t time_embed_dim)
    : linear_1({.in_features = in_channels, .out_features = time_embed_dim}),
      linear_2({.in_features = time_embed_dim, .out_features = time_embed_dim}) {}

}  // namespace sdgen::models
