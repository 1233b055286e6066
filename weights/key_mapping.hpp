// Single-file Stable Diffusion checkpoints (the .safetensors most people download) keep the key
// names of the original CompVis/Stability "latent diffusion" code: one file holding
// model.diffusion_model.* (UNet), first_stage_model.* (VAE) and cond_stage_model.* (text encoder),
// with the UNet as flat numbered lists (input_blocks.7.1, output_blocks.5.2.conv) instead of
// diffusers' down_blocks/up_blocks. sdgen's model code only knows the diffusers names, so this file
// translates: it maps every stored tensor to its diffusers name, per component, without copying a
// byte (a TensorSource points into the memory-mapped file).
//
// The translation table is generated from the configs (number of blocks, layers per block, which
// blocks carry attention, transformer depth, VAE blocks), never from a list written for one model
// size, so SD 1.x, SD 2.x and the tiny test models all map with the same code. Its index arithmetic
// mirrors how the LDM UNet numbers its modules: input_blocks.0 is conv_in, then each down level
// appends layers_per_block blocks plus one downsampler (except the last level); output_blocks walk
// the levels in reverse with one extra block each, the upsampler sitting after the attention in the
// last block of every level but the last. The VAE decoder's `up.i` runs the opposite way round to
// diffusers' `up_blocks.i`.
//
// Two stored forms differ from diffusers by more than a name:
//  * the VAE mid-block attention's q/k/v/proj_out are 1x1 convolutions [C, C, 1, 1]; diffusers
//    holds them as linear [C, C] weights: the same bytes, only the shape differs;
//  * the SD 2.x text encoder (OpenCLIP) fuses q, k and v into one in_proj_weight [3D, D] /
//    in_proj_bias [3D]; each projection is a row block of it, i.e. a byte offset into it.
// Both are checked against the configs ("expected X, got Y") before a view is handed out.
//
// Keys that are known to be of no use to inference (EMA copies, the training schedule buffers,
// position_ids, OpenCLIP's projection head and the layers past num_hidden_layers that SD 2.x does
// not use) are returned as ignored. Any other key is returned as unexpected, not thrown: whether
// that is fatal is the caller's policy. Two keys mapping to one diffusers name is always an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "weights/configs.hpp"
#include "weights/model.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::weights {

// Which text encoder a single-file checkpoint carries, told by its key prefix.
enum class LdmTextEncoder {
  Absent,  // no cond_stage_model tensors
  Clip,    // SD 1.x: cond_stage_model.transformer.text_model.* (transformers' CLIPTextModel names)
  OpenClip,  // SD 2.x: cond_stage_model.model.* (the OpenCLIP ViT-H/14 text tower, fused q/k/v)
};

struct LdmCheckpointInfo {
  LdmTextEncoder text_encoder = LdmTextEncoder::Absent;
  // Width of the stored token embedding (768 for SD 1.x, 1024 for SD 2.x); 0 when there is none.
  // For messages and preset checks only: the architecture itself always comes from a config.
  std::int64_t text_hidden_size = 0;
};

// Whether `file` has the LDM single-file layout (some model.diffusion_model.* tensor), and if so
// which text encoder it carries; std::nullopt for any other layout (a diffusers component file,
// for instance). Reads only the header.
std::optional<LdmCheckpointInfo> inspect_ldm_checkpoint(const SafeTensorsFile& file);

struct LdmMapping {
  ComponentTensors unet;                     // diffusers UNet2DConditionModel names
  ComponentTensors vae;                      // diffusers AutoencoderKL names
  ComponentTensors text_encoder;             // transformers CLIPTextModel names (text_model.*)
  std::vector<std::string> ignored_keys;     // known to be safe to drop, in file order
  std::vector<std::string> unexpected_keys;  // belong to nothing sdgen knows, in file order
};

// Maps every tensor of an LDM single-file checkpoint to its diffusers name. Both text encoder
// layouts are recognised; the configs say how many layers and how wide. The sources point into
// `file`, which must outlive the result. Throws ModelError naming the file and the tensor when a
// reshaped or split tensor's size disagrees with the configs, when two keys map to one name, or
// when the configs' per-block lists disagree in length. Missing tensors are not detected here: the
// loader that binds names to modules reports them.
LdmMapping map_ldm_checkpoint(const SafeTensorsFile& file, const UNetConfig& unet,
                              const VaeConfig& vae, const TextEncoderConfig& text_encoder);

}  // namespace sdgen::weights
