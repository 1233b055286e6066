// Builds CLIPTextModel from its config (see clip_text.hpp).
#include "lib/models/clip_text.hpp"

namespace sdgen::models {

namespace {

using weights::TextEncoderConfig;

nn::Linear square(const TextEncoderConfig& c) {
  return nn::Linear({.in_features = c.hidden_size, .out_features = c.hidden_size});
}

nn::LayerNorm layer_norm(const TextEncoderConfig& c) {
  return nn::LayerNorm({.dim = c.hidden_size, .eps = c.layer_norm_eps});
}

}  // namespace

CLIPTextEmbeddings::CLIPTextEmbeddings(const TextEncoderConfig& c)
    : token_embedding({.num_embeddings = c.vocab_size, .embedding_dim = c.hidden_size}),
      position_embedding({.num_embeddings = c.max_position_embeddings, .embedding_dim = c.hidden_size}) {}

CLIPAttention::CLIPAttention(const TextEncoderConfig& c)
    : heads(c.num_attention_heads), k_proj(square(c)), v_proj(square(c)), q_proj(square(c)), out_proj(square(c)) {}

CLIPMLP::CLIPMLP(const TextEncoderConfig& c)
    : fc1({.in_features = c.hidden_size, .out_features = c.intermediate_size}),
      fc2({.in_features = c.intermediate_size, .out_features = c.hidden_size}) {}

CLIPEncoderLayer::CLIPEncoderLayer(const TextEncoderConfig& c)
    : self_attn(c), layer_norm1(layer_norm(c)), mlp(c), layer_norm2(layer_norm(c)) {}

CLIPEncoder::CLIPEncoder(const TextEncoderConfig& c) {
  for (int i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(c);
}

CLIPTextTransformer::CLIPTextTransformer(const TextEncoderConfig& c)
    : embeddings(c), encoder(c), final_layer_norm(layer_norm(c)) {}

CLIPTextModel::CLIPTextModel(const TextEncoderConfig& c) : text_model(c) {}

}  // namespace sdgen::models
