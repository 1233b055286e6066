// Builds CLIPTextModel from its config and runs it (see clip_text.hpp).
#include "lib/models/clip_text.hpp"

#include "lib/core/error.hpp"

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
    : act(nn::activation_op(c.hidden_act)),
      fc1({.in_features = c.hidden_size, .out_features = c.intermediate_size}),
      fc2({.in_features = c.intermediate_size, .out_features = c.hidden_size}) {}

CLIPEncoderLayer::CLIPEncoderLayer(const TextEncoderConfig& c)
    : self_attn(c), layer_norm1(layer_norm(c)), mlp(c), layer_norm2(layer_norm(c)) {}

CLIPEncoder::CLIPEncoder(const TextEncoderConfig& c) {
  for (int i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(c);
}

CLIPTextTransformer::CLIPTextTransformer(const TextEncoderConfig& c)
    : embeddings(c), encoder(c), final_layer_norm(layer_norm(c)) {}

CLIPTextModel::CLIPTextModel(const TextEncoderConfig& c) : text_model(c) {}

// ---- forward passes

Activation CLIPTextEmbeddings::forward(Ctx& ctx, const Tensor& input_ids) const {
  Activation h = token_embedding.forward(ctx, input_ids);                      // [B, N, C]
  const Tensor positions = position_embedding.first_rows(input_ids.shape[1]);  // [N, C]: position_ids 0..N-1
  ctx.backend.add(h, &positions, h, {});                                       // [B, N, C], broadcast over B
  return h;
}

Activation CLIPAttention::forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const {
  Activation q = q_proj.forward(ctx, x);                                // [B, N, C]
  Activation k = k_proj.forward(ctx, x);                                // [B, N, C]
  Activation v = v_proj.forward(ctx, x);                                // [B, N, C]
  Activation o = ctx.alloc(q.view().shape);                             // [B, N, C]
  ctx.backend.attention(q, k, v, o, {.heads = heads, .causal = true});  // scale 1/sqrt(C / heads)
  q.reset();
  k.reset();
  v.reset();
  return out_proj.forward(ctx, o, {.residual = &residual});  // [B, N, C]
}

Activation CLIPMLP::forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const {
  const Activation h = fc1.forward(ctx, x, {.act = act});  // [B, N, intermediate]
  return fc2.forward(ctx, h, {.residual = &residual});     // [B, N, C]
}

Activation CLIPEncoderLayer::forward(Ctx& ctx, Activation h) const {
  Activation n = layer_norm1.forward(ctx, h);  // [B, N, C]
  h = self_attn.forward(ctx, n, h);            // [B, N, C]
  n = layer_norm2.forward(ctx, h);             // [B, N, C]
  return mlp.forward(ctx, n, h);               // [B, N, C]
}

Activation CLIPTextModel::forward(Ctx& ctx, const Tensor& input_ids, ClipSkip clip_skip) const {
  const auto& layers = text_model.encoder.layers;
  const int depth = static_cast<int>(layers.size());
  if (clip_skip.layers < 0 || clip_skip.layers >= depth)
    throw UsageError(
        cat("clip skip of ", clip_skip.layers, " layers is not possible: the text encoder has ", depth, " layers"));
  if (input_ids.rank() != 2 || input_ids.shape[1] > text_model.embeddings.position_embedding.weight.shape[0])
    throw Error(cat("text encoder: input_ids is ", input_ids.shape.str(),
                    "; expected [B, N] with N <= ", text_model.embeddings.position_embedding.weight.shape[0]));

  Activation h = text_model.embeddings.forward(ctx, input_ids);  // [B, N, C]
  for (int i = 0; i < depth - clip_skip.layers; ++i) h = layers[static_cast<std::size_t>(i)].forward(ctx, std::move(h));
  return text_model.final_layer_norm.forward(ctx, h);  // [B, N, C]
}

}  // namespace sdgen::models
