// Typed configurations of the three networks, read from the diffusers config.json files (or from
// a preset for single-file checkpoints). Nothing about the architecture is ever guessed from tensor
// widths: every field here comes from a config key or is that key's diffusers/transformers default
// when the key is absent (or null, which diffusers treats the same way). A default-constructed
// struct therefore IS the library's default configuration; the comment on a field says where that
// default differs or needs explaining. Values sdgen cannot run (an SDXL addition embedding, an
// unknown block type, ...) are refused by the parsers with a message naming the file and the key.
//
// Lists that diffusers accepts either as one value or as one value per block (layers_per_block,
// attention heads, transformer_layers_per_block) are stored expanded, one entry per down block.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdgen::weights {

enum class Activation { Silu, Gelu, QuickGelu };  // act_fn / hidden_act

enum class DownBlockType { DownBlock2D, CrossAttnDownBlock2D };
enum class UpBlockType { UpBlock2D, CrossAttnUpBlock2D };

// diffusers UNet2DConditionModel (defaults: its __init__ signature).
struct UNetConfig {
  int sample_size = 64;  // latent size the model was trained at (image = 8x). diffusers' default
                         // is None, which its pipeline cannot use; 64 is SD 1.x's value
  int in_channels = 4;
  int out_channels = 4;
  bool flip_sin_to_cos = true;
  int freq_shift = 0;
  std::vector<DownBlockType> down_block_types = {
      DownBlockType::CrossAttnDownBlock2D, DownBlockType::CrossAttnDownBlock2D,
      DownBlockType::CrossAttnDownBlock2D, DownBlockType::DownBlock2D};
  std::vector<UpBlockType> up_block_types = {
      UpBlockType::UpBlock2D, UpBlockType::CrossAttnUpBlock2D, UpBlockType::CrossAttnUpBlock2D,
      UpBlockType::CrossAttnUpBlock2D};
  std::vector<int> block_out_channels = {320, 640, 1280, 1280};
  std::vector<int> layers_per_block = {2, 2, 2, 2};  // per down block; up blocks have one more
  // Per down block: the NUMBER of heads (up blocks use the list reversed, the mid block the last
  // entry). diffusers' `attention_head_dim` key means this when `num_attention_heads` is absent:
  // the SD quirk, kept by diffusers for compatibility with the released hub configs.
  std::vector<int> attention_heads = {8, 8, 8, 8};
  std::vector<int> transformer_layers_per_block = {1, 1, 1, 1};  // per down block
  int cross_attention_dim = 1280;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  bool only_cross_attention = false;
  int norm_num_groups = 32;
  double norm_eps = 1e-5;
  Activation act_fn = Activation::Silu;
  int downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int conv_in_kernel = 3;
  int conv_out_kernel = 3;
  int time_embedding_dim = 1280;  // resolved: absent means block_out_channels[0] * 4
};

// diffusers AutoencoderKL, SD's VAE (defaults: its __init__ signature).
struct VaeConfig {
  int in_channels = 3;
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> block_out_channels = {64};  // encoder order; the decoder runs them reversed
  int layers_per_block = 1;                     // encoder; the decoder has one more per block
  int norm_num_groups = 32;
  Activation act_fn = Activation::Silu;
  int sample_size = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;  // SD pipelines ignore it (SD3/Flux VAEs use it)
  bool mid_block_add_attention = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool force_upcast = true;
};

// transformers CLIPTextConfig (defaults: its __init__ signature).
struct TextEncoderConfig {
  int vocab_size = 49408;
  int hidden_size = 512;
  int intermediate_size = 2048;
  int num_hidden_layers = 12;
  int num_attention_heads = 8;
  int max_position_embeddings = 77;
  Activation hidden_act = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;
  int projection_dim = 512;
};

// One "name": [library, class] entry of model_index.json.
struct ModelIndexEntry {
  std::string name;        // "unet"
  std::string library;     // "diffusers"
  std::string class_name;  // "UNet2DConditionModel"
};

// The part of model_index.json sdgen uses.
struct ModelIndex {
  std::string pipeline_class;               // "_class_name": "StableDiffusionPipeline", ...
  std::vector<ModelIndexEntry> components;  // entries with a non-null [library, class]
};

// Parsers of the config files' text; `where` names the file in every message. Unknown keys are
// ignored (hub files carry many that do not change inference). A known key with the wrong JSON
// type, an out-of-range value, or a feature sdgen does not implement is a ModelError that names
// the file and the key. Each parser also checks the config's internal consistency (list lengths,
// channels divisible by norm groups and by heads).
UNetConfig parse_unet_config(std::string_view json_text, const std::filesystem::path& where);
VaeConfig parse_vae_config(std::string_view json_text, const std::filesystem::path& where);
TextEncoderConfig parse_text_encoder_config(std::string_view json_text,
                                            const std::filesystem::path& where);
// Also refuses pipelines sdgen cannot run (SDXL's second text encoder, a UNet/VAE/text encoder
// of another class) and requires the five components an SD text-to-image pipeline needs.
ModelIndex parse_model_index(std::string_view json_text, const std::filesystem::path& where);

}  // namespace sdgen::weights
