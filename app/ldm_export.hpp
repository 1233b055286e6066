// The LDM single-file layout of a model given by its diffusers tensor names: which key each
// tensor is stored under, and which stored tensors are made of several diffusers ones. This is
// the inverse of weights/key_mapping.hpp, for `sdgen make-model --single-file`.
//
// Why a second table rather than inverting the first: the reading side is a rule table private to
// key_mapping.cpp, keyed by LDM prefixes and built for lookups in that direction. So the inverse is
// generated here from the same configs by the same index arithmetic, module by module (UNet
// input_blocks/middle_block/output_blocks, the VAE's reversed decoder levels, CLIP's prefix or
// OpenCLIP's resblocks), and kept honest by the reader: check_ldm_round_trip() maps the written
// file back with map_ldm_checkpoint() and requires exactly the original names and shapes, and the
// tests compare every byte.
//
// Stored forms that differ from diffusers by more than a name (the same two the reader undoes):
//   * the VAE mid-block attention's q/k/v/proj_out weights are stored as 1x1 convolutions,
//     [C, C, 1, 1] instead of [C, C];
//   * OpenCLIP (SD 2.x) fuses q, k and v into in_proj_weight [3D, D] and in_proj_bias [3D]: one
//     stored tensor made of three diffusers tensors, one after the other.
// Only tensors the diffusers model has are written: no EMA copy, no training buffers, no
// position_ids, no OpenCLIP projection head or unused last layer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lib/models/random_weights.hpp"
#include "weights/configs.hpp"
#include "weights/key_mapping.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::app {

enum class ModelComponent { UNet, Vae, TextEncoder };

// A component's diffusers tensors, in the order they are to be written.
struct ComponentParameters {
  ModelComponent component = ModelComponent::UNet;
  std::vector<models::RandomParameter> parameters;
};

// One tensor of the single file.
struct LdmTensor {
  std::string key;                   // "model.diffusion_model.input_blocks.1.0.in_layers.0.weight"
  std::vector<std::int64_t> shape;   // as stored
  ModelComponent component = ModelComponent::UNet;
  std::vector<const models::RandomParameter*> parts;  // the diffusers tensors it holds, in row order
};

// The single file's tensors, in the components' order. `text_encoder_layout` chooses CLIP
// (SD 1.x) or OpenCLIP (SD 2.x) keys. Throws Error for a diffusers name the layout has no key for.
// The result points into `components`, which must outlive it.
std::vector<LdmTensor> ldm_layout(std::span<const ComponentParameters> components, const weights::UNetConfig& unet,
                                  const weights::VaeConfig& vae, const weights::TextEncoderConfig& text_encoder,
                                  weights::LdmTextEncoder text_encoder_layout);

// Maps the written `file` back through map_ldm_checkpoint() and throws Error unless it yields
// exactly the diffusers names and shapes of `components` and nothing else.
void check_ldm_round_trip(const weights::SafeTensorsFile& file, std::span<const ComponentParameters> components,
                          const weights::UNetConfig& unet, const weights::VaeConfig& vae,
                          const weights::TextEncoderConfig& text_encoder);

}  // namespace sdgen::app
