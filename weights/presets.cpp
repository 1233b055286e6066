// The preset configs, as the diffusers hub repositories define them (see presets.hpp for why they
// are JSON text). Only the keys that the hub files set and that describe inference are written;
// training-only keys (dropout, initializer_range, ...) and version stamps are left out, which the
// parsers would ignore anyway. The scheduler texts keep exactly the hub files' keys: absent keys
// must stay absent so that each scheduler class applies its own defaults, as diffusers does.
#include "weights/presets.hpp"

#include <string_view>

#include "lib/core/error.hpp"

namespace sdgen::weights {

namespace {

// ---- runwayml/stable-diffusion-v1-5 (now mirrored as stable-diffusion-v1-5/stable-diffusion-v1-5)

constexpr std::string_view kSd15Unet = R"({
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "use_linear_projection": false
})";

constexpr std::string_view kSd15Vae = R"({
  "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
  "out_channels": 3, "sample_size": 512, "scaling_factor": 0.18215,
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
})";

constexpr std::string_view kSd15TextEncoder = R"({
  "architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 768,
  "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
  "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12,
  "projection_dim": 768, "vocab_size": 49408
})";

constexpr std::string_view kSd15Scheduler = R"({
  "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false
})";

// ---- stabilityai/stable-diffusion-2-1 (768 px, v-prediction) and -2-1-base (512 px, epsilon)
// The two differ in the UNet's sample_size and upcast_attention (2.1 overflows fp16 in attention
// without it) and in the scheduler; text encoder and VAE are the same.

constexpr std::string_view kSd21Unet = R"({
  "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
  "norm_num_groups": 32, "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4,
  "sample_size": 96,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "upcast_attention": true, "use_linear_projection": true
})";

constexpr std::string_view kSd21BaseUnet = R"({
  "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
  "norm_num_groups": 32, "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4,
  "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "use_linear_projection": true
})";

constexpr std::string_view kSd21Vae = R"({
  "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
  "out_channels": 3, "sample_size": 768,
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
})";

// OpenCLIP ViT-H/14 has 24 layers; SD 2.x conditions on the penultimate one, so the diffusers
// config keeps 23 and the last layer is dropped.
constexpr std::string_view kSd21TextEncoder = R"({
  "architectures": ["CLIPTextModel"], "hidden_act": "gelu", "hidden_size": 1024,
  "intermediate_size": 4096, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
  "model_type": "clip_text_model", "num_attention_heads": 16, "num_hidden_layers": 23,
  "projection_dim": 512, "vocab_size": 49408
})";

constexpr std::string_view kSd21Scheduler = R"({
  "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
  "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true,
  "steps_offset": 1, "trained_betas": null
})";

constexpr std::string_view kSd21BaseScheduler = R"({
  "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
  "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
  "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
  "steps_offset": 1, "trained_betas": null
})";

struct PresetText {
  PresetId id;
  const char* name;
  const char* hub_repo;
  ModelFamily family;
  std::string_view unet, vae, text_encoder, scheduler;
  const char* pad_token;
};

constexpr PresetText kPresets[] = {
    {PresetId::SD15, "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", ModelFamily::SD1, kSd15Unet,
     kSd15Vae, kSd15TextEncoder, kSd15Scheduler, "<|endoftext|>"},
    {PresetId::SD21, "sd21", "stabilityai/stable-diffusion-2-1", ModelFamily::SD2, kSd21Unet, kSd21Vae,
     kSd21TextEncoder, kSd21Scheduler, "!"},
    {PresetId::SD21Base, "sd21-base", "stabilityai/stable-diffusion-2-1-base", ModelFamily::SD2,
     kSd21BaseUnet, kSd21Vae, kSd21TextEncoder, kSd21BaseScheduler, "!"},
};

Preset build(const PresetText& t) {
  // The "file" named in a (never expected) parse error: the preset and the hub file it mirrors.
  const auto where = [&](const char* file) { return cat("preset ", t.name, " (", t.hub_repo, " ", file, ")"); };
  Preset p;
  p.id = t.id;
  p.name = t.name;
  p.hub_repo = t.hub_repo;
  p.family = t.family;
  p.unet = parse_unet_config(t.unet, where("unet/config.json"));
  p.vae = parse_vae_config(t.vae, where("vae/config.json"));
  p.text_encoder = parse_text_encoder_config(t.text_encoder, where("text_encoder/config.json"));
  p.scheduler = parse_scheduler_config(t.scheduler, where("scheduler/scheduler_config.json"));
  p.tokenizer_pad_token = t.pad_token;
  return p;
}

}  // namespace

const Preset& get_preset(PresetId id) {
  static const Preset presets[] = {build(kPresets[0]), build(kPresets[1]), build(kPresets[2])};
  for (const auto& p : presets)
    if (p.id == id) return p;
  throw Error(cat("unknown preset id ", static_cast<int>(id)));
}

PresetId choose_preset(const LdmCheckpointInfo& checkpoint, PredictionOverride prediction) {
  const bool sd2 = checkpoint.text_encoder == LdmTextEncoder::OpenClip || checkpoint.text_hidden_size == 1024;
  if (!sd2) return PresetId::SD15;
  return prediction == PredictionOverride::Epsilon ? PresetId::SD21Base : PresetId::SD21;
}

}  // namespace sdgen::weights
