// transformers models/clip/modeling_clip.py: CLIPTextModel, the text encoder of SD 1.x (OpenAI
// CLIP ViT-L/14, quick_gelu) and SD 2.x (OpenCLIP ViT-H/14 converted to transformers' layout,
// gelu). The structure is identical; the config says which activation and how wide/deep.
//
//   text_model.embeddings: token_embedding [vocab, hidden] + position_embedding [77, hidden]
//   text_model.encoder.layers[i]: pre-norm blocks, layer_norm1 -> causal self_attn (q/k/v/out
//       projections, all with bias) -> residual, layer_norm2 -> mlp (fc1 -> act -> fc2) -> residual
//   text_model.final_layer_norm
//
// Checkpoints exported by transformers before 4.31 also hold text_model.embeddings.position_ids,
// the buffer arange(max_position_embeddings); it is accepted and ignored (nn::IgnoredBuffer).
//
// forward() returns what SD conditions on: last_hidden_state, or with clip skip the output of an
// earlier layer passed through final_layer_norm, as diffusers' encode_prompt(clip_skip=k) does
// (hidden_states[-(k + 1)], then final_layer_norm). The skipped layers are not run. SD pipelines
// pass no attention mask: padding tokens are attended to, under the causal mask only.
// The pooled output (the EOS token's state) is not computed: SD 1.x/2.x do not use it.
#pragma once

#include <vector>

#include "lib/nn/layers.hpp"
#include "lib/nn/param.hpp"
#include "weights/configs.hpp"

namespace sdgen::models {

// How many final encoder layers to skip: diffusers' clip_skip (0: none; 1: the penultimate layer's
// output). AUTOMATIC1111's "Clip skip" setting N is ClipSkip{N - 1}.
struct ClipSkip {
  int layers = 0;
};

struct CLIPTextEmbeddings {
  nn::Embedding token_embedding;
  nn::Embedding position_embedding;
  nn::IgnoredBuffer position_ids;

  explicit CLIPTextEmbeddings(const weights::TextEncoderConfig& config);

  // input_ids [B, N] (I32) -> token + position embeddings [B, N, hidden]
  Activation forward(Ctx& ctx, const Tensor& input_ids) const;

  template <class V>
  void visit(V& v) {
    v("token_embedding", token_embedding);
    v("position_embedding", position_embedding);
    v("position_ids", position_ids);
  }
};

struct CLIPAttention {
  int heads = 1;
  nn::Linear k_proj;
  nn::Linear v_proj;
  nn::Linear q_proj;
  nn::Linear out_proj;

  explicit CLIPAttention(const weights::TextEncoderConfig& config);

  // x [B, N, hidden] -> causal self-attention + residual [B, N, hidden]
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const;

  template <class V>
  void visit(V& v) {
    v("k_proj", k_proj);
    v("v_proj", v_proj);
    v("q_proj", q_proj);
    v("out_proj", out_proj);
  }
};

struct CLIPMLP {
  Act act = Act::QuickGelu;  // hidden_act
  nn::Linear fc1;
  nn::Linear fc2;

  explicit CLIPMLP(const weights::TextEncoderConfig& config);

  // x [B, N, hidden] -> fc2(act(fc1(x))) + residual [B, N, hidden]
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const;

  template <class V>
  void visit(V& v) {
    v("fc1", fc1);
    v("fc2", fc2);
  }
};

struct CLIPEncoderLayer {
  CLIPAttention self_attn;
  nn::LayerNorm layer_norm1;
  CLIPMLP mlp;
  nn::LayerNorm layer_norm2;

  explicit CLIPEncoderLayer(const weights::TextEncoderConfig& config);

  // hidden_states [B, N, hidden] -> [B, N, hidden]
  Activation forward(Ctx& ctx, Activation hidden_states) const;

  template <class V>
  void visit(V& v) {
    v("self_attn", self_attn);
    v("layer_norm1", layer_norm1);
    v("mlp", mlp);
    v("layer_norm2", layer_norm2);
  }
};

struct CLIPEncoder {
  std::vector<CLIPEncoderLayer> layers;

  explicit CLIPEncoder(const weights::TextEncoderConfig& config);

  template <class V>
  void visit(V& v) {
    v("layers", layers);
  }
};

struct CLIPTextTransformer {
  CLIPTextEmbeddings embeddings;
  CLIPEncoder encoder;
  nn::LayerNorm final_layer_norm;

  explicit CLIPTextTransformer(const weights::TextEncoderConfig& config);

  template <class V>
  void visit(V& v) {
    v("embeddings", embeddings);
    v("encoder", encoder);
    v("final_layer_norm", final_layer_norm);
  }
};

struct CLIPTextModel {
  CLIPTextTransformer text_model;

  explicit CLIPTextModel(const weights::TextEncoderConfig& config);

  // input_ids [B, N] (I32, N <= max_position_embeddings) -> [B, N, hidden]: last_hidden_state,
  // or the clip-skipped equivalent. Skipping all layers or more is a UsageError.
  Activation forward(Ctx& ctx, const Tensor& input_ids, ClipSkip clip_skip = {}) const;

  template <class V>
  void visit(V& v) {
    v("text_model", text_model);
  }
};

}  // namespace sdgen::models
