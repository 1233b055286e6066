// diffusers models/autoencoders/autoencoder_kl.py and vae.py: AutoencoderKL, SD's VAE.
//
//   encoder:  conv_in -> down_blocks (DownEncoderBlock2D, stride-2 between levels) -> mid_block
//             -> conv_norm_out -> act -> conv_out (2 x latent_channels: mean and log-variance)
//   quant_conv (1x1 over the moments), post_quant_conv (1x1 over the latent)
//   decoder:  conv_in -> mid_block -> up_blocks (UpDecoderBlock2D, block_out_channels reversed)
//             -> conv_norm_out -> act -> conv_out
//
// Text-to-image needs only post_quant_conv and the decoder, but checkpoints carry both halves and
// every tensor must be accounted for, so the encoder is described too (and img2img will use it;
// its forward, with the bottom/right padding of its down-samplings, is not written yet).
// All VAE norms use eps 1e-6; no block takes a time embedding. The decoder's conv_act is SiLU
// whatever act_fn says (diffusers hard-codes nn.SiLU there), while its resnets use act_fn.
#pragma once

#include <optional>
#include <vector>

#include "lib/models/unet_blocks.hpp"
#include "lib/nn/layers.hpp"
#include "weights/configs.hpp"

namespace sdgen::models {

struct Encoder {
  nn::Conv2d conv_in;
  std::vector<DownEncoderBlock2D> down_blocks;
  UNetMidBlock2D mid_block;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;

  explicit Encoder(const weights::VaeConfig& config);

  template <class V>
  void visit(V& v) {
    v("conv_in", conv_in);
    v("down_blocks", down_blocks);
    v("mid_block", mid_block);
    v("conv_norm_out", conv_norm_out);
    v("conv_out", conv_out);
  }
};

struct Decoder {
  nn::Conv2d conv_in;
  UNetMidBlock2D mid_block;
  std::vector<UpDecoderBlock2D> up_blocks;
  nn::GroupNorm conv_norm_out;
  nn::Conv2d conv_out;

  explicit Decoder(const weights::VaeConfig& config);

  // z [B, h, w, latent_channels] -> [B, h * 2^(levels - 1), w * 2^(levels - 1), out_channels]
  Activation forward(Ctx& ctx, const Tensor& z) const;

  template <class V>
  void visit(V& v) {
    v("conv_in", conv_in);
    v("mid_block", mid_block);
    v("up_blocks", up_blocks);
    v("conv_norm_out", conv_norm_out);
    v("conv_out", conv_out);
  }
};

struct AutoencoderKL {
  Encoder encoder;
  Decoder decoder;
  std::optional<nn::Conv2d> quant_conv;       // config use_quant_conv
  std::optional<nn::Conv2d> post_quant_conv;  // config use_post_quant_conv

  explicit AutoencoderKL(const weights::VaeConfig& config);

  // diffusers' AutoencoderKL.decode(z).sample: post_quant_conv (when present), then the decoder.
  // z: latents already divided by scaling_factor, [B, h, w, latent_channels] -> the image
  // [B, 8h, 8w, 3] for SD's VAE, roughly in [-1, 1] and not clamped.
  Activation decode(Ctx& ctx, const Tensor& z) const;

  template <class V>
  void visit(V& v) {
    v("encoder", encoder);
    v("decoder", decoder);
    v("quant_conv", quant_conv);
    v("post_quant_conv", post_quant_conv);
  }
};

}  // namespace sdgen::models
