// diffusers models/attention_processor.py (Attention) and models/attention.py (FeedForward,
// BasicTransformerBlock), plus models/transformers/transformer_2d.py (Transformer2DModel): the
// spatial transformer that follows each resnet in the UNet's cross-attention blocks.
//
// Attention projects queries from the image tokens and keys/values from the same tokens
// (self-attention) or from the text embedding (cross-attention, key/value width =
// cross_attention_dim). In the UNet to_q/to_k/to_v have no bias and to_out.0 has one; the VAE's
// mid-block attention has biases everywhere and normalises its input with its own group_norm.
// to_out is a ModuleList [Linear, Dropout] in diffusers, hence the name "to_out.0".
//
// Transformer2DModel: GroupNorm (eps 1e-6) -> proj_in -> transformer_blocks -> proj_out, plus the
// input. proj_in/proj_out are 1x1 convolutions in SD 1.x and linear layers in SD 2.x
// (use_linear_projection); both are nn::Linear here, differing only in the stored weight shape.
// A transformer block is LayerNorm + self-attention, LayerNorm + cross-attention, LayerNorm +
// GEGLU feed-forward, each added to its input.
//
// NHWC makes all of this transpose-free: an image [B, H, W, C] is the token sequence [B, H*W, C]
// by a reshape, and heads are column ranges of the projections, which the attention op reads in
// place. Every residual add is fused into the projection that ends its branch (to_out.0, ff.net.2,
// proj_out). upcast_attention (SD 2.1) asks diffusers to compute q k^T and the softmax in fp32
// when the model runs in fp16: every op of the op set accumulates in fp32 (backend.hpp), the
// attention's scores and softmax included, so the flag needs no code here.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lib/nn/layers.hpp"

namespace sdgen::models {

struct Attention {
  struct Options {
    std::int64_t query_dim = 0;
    std::int64_t key_value_dim = 0;  // = query_dim for self-attention
    int heads = 1;
    std::int64_t dim_head = 0;
    nn::Bias qkv_bias = nn::Bias::Without;
    std::optional<nn::GroupNorm::Options> group_norm;  // the VAE's attention normalises its input
  };

  int heads = 1;
  std::optional<nn::GroupNorm> group_norm;
  nn::Linear to_q;
  nn::Linear to_k;
  nn::Linear to_v;
  nn::Linear to_out;  // diffusers to_out[0]; to_out[1] is dropout

  explicit Attention(const Options& options);

  // x [B, N, query_dim]; context [B, M, key_value_dim] (x itself for self-attention); residual,
  // shaped as the output, is added by to_out.0 (null: none) -> [B, N, query_dim]
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor& context, const Tensor* residual) const;
  // The VAE's attention over an image, with its own group_norm and residual (rescale_output_factor
  // is 1): x [B, H, W, C] -> [B, H, W, C]
  Activation forward_image(Ctx& ctx, const Tensor& x) const;

  template <class V>
  void visit(V& v) {
    v("group_norm", group_norm);
    v("to_q", to_q);
    v("to_k", to_k);
    v("to_v", to_v);
    v("to_out.0", to_out);
  }
};

// GELU-gated linear unit: proj maps dim_in to twice the inner width, one half gating the other.
struct GEGLU {
  nn::Linear proj;

  GEGLU(std::int64_t dim_in, std::int64_t dim_out);

  // x [B, N, dim_in] -> [B, N, dim_out]: the first half of proj(x) times gelu(the second half)
  Activation forward(Ctx& ctx, const Tensor& x) const;

  template <class V>
  void visit(V& v) {
    v("proj", proj);
  }
};

// diffusers FeedForward with activation_fn="geglu" and mult=4: net = [GEGLU, Dropout, Linear].
struct FeedForward {
  GEGLU net_0;
  nn::Linear net_2;

  explicit FeedForward(std::int64_t dim);

  // x [B, N, dim] -> [B, N, dim] + residual
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor& residual) const;

  template <class V>
  void visit(V& v) {
    v("net.0", net_0);
    v("net.2", net_2);
  }
};

// What attn1 attends to: the image tokens (SD), or, with diffusers' only_cross_attention, the
// text embedding as attn2 does.
enum class FirstAttention { SelfAttention, CrossAttention };

struct BasicTransformerBlock {
  struct Options {
    std::int64_t dim = 0;
    int heads = 1;
    std::int64_t dim_head = 0;
    std::int64_t cross_attention_dim = 0;
    FirstAttention first_attention = FirstAttention::SelfAttention;
  };

  FirstAttention first_attention = FirstAttention::SelfAttention;
  nn::LayerNorm norm1;
  Attention attn1;  // self-attention, unless only_cross_attention
  nn::LayerNorm norm2;
  Attention attn2;  // cross-attention to the text embedding
  nn::LayerNorm norm3;
  FeedForward ff;

  explicit BasicTransformerBlock(const Options& options);

  // hidden_states [B, N, dim], encoder_hidden_states [B, M, cross_attention_dim] -> [B, N, dim]
  Activation forward(Ctx& ctx, Activation hidden_states, const Tensor& encoder_hidden_states) const;

  template <class V>
  void visit(V& v) {
    v("norm1", norm1);
    v("attn1", attn1);
    v("norm2", norm2);
    v("attn2", attn2);
    v("norm3", norm3);
    v("ff", ff);
  }
};

struct Transformer2DModel {
  struct Options {
    std::int64_t in_channels = 0;
    int heads = 1;
    std::int64_t dim_head = 0;  // diffusers passes in_channels / heads
    int num_layers = 1;
    std::int64_t cross_attention_dim = 0;
    int norm_num_groups = 32;
    nn::Linear::Stored projection = nn::Linear::Stored::Conv1x1;  // Matrix: use_linear_projection
    FirstAttention first_attention = FirstAttention::SelfAttention;
  };

  nn::GroupNorm norm;
  nn::Linear proj_in;
  std::vector<BasicTransformerBlock> transformer_blocks;
  nn::Linear proj_out;

  explicit Transformer2DModel(const Options& options);

  // x [B, H, W, C], encoder_hidden_states [B, M, cross_attention_dim] -> [B, H, W, C]
  Activation forward(Ctx& ctx, const Tensor& x, const Tensor& encoder_hidden_states) const;

  template <class V>
  void visit(V& v) {
    v("norm", norm);
    v("proj_in", proj_in);
    v("transformer_blocks", transformer_blocks);
    v("proj_out", proj_out);
  }
};

}  // namespace sdgen::models
