// Config structs -> config.json text; see model_config_json.hpp for the conventions.
#include "app/model_config_json.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace sdgen::app {

namespace {

using json = nlohmann::ordered_json;  // keys in the order written, as the hub files list them

const char* activation_name(weights::Activation a) {
  switch (a) {
    case weights::Activation::Silu: return "silu";
    case weights::Activation::Gelu: return "gelu";
    case weights::Activation::QuickGelu: return "quick_gelu";
  }
  return "silu";
}

// One number when every block has the same value, else the list.
json per_block(const std::vector<int>& values) {
  if (!values.empty() && std::ranges::all_of(values, [&](int v) { return v == values.front(); }))
    return values.front();
  return values;
}

std::string text(const json& j) { return j.dump(2) + "\n"; }

template <class T>
void set_if(json& j, const char* key, const std::optional<T>& value) {
  if (value) j[key] = *value;
}

}  // namespace

std::string unet_config_json(const weights::UNetConfig& c) {
  json j;
  j["_class_name"] = "UNet2DConditionModel";
  j["act_fn"] = activation_name(c.act_fn);
  j["attention_head_dim"] = per_block(c.attention_heads);
  j["block_out_channels"] = c.block_out_channels;
  j["center_input_sample"] = false;
  j["conv_in_kernel"] = c.conv_in_kernel;
  j["conv_out_kernel"] = c.conv_out_kernel;
  j["cross_attention_dim"] = c.cross_attention_dim;
  json down = json::array();
  for (auto t : c.down_block_types)
    down.push_back(t == weights::DownBlockType::CrossAttnDownBlock2D ? "CrossAttnDownBlock2D" : "DownBlock2D");
  j["down_block_types"] = down;
  j["downsample_padding"] = c.downsample_padding;
  j["flip_sin_to_cos"] = c.flip_sin_to_cos;
  j["freq_shift"] = c.freq_shift;
  j["in_channels"] = c.in_channels;
  j["layers_per_block"] = per_block(c.layers_per_block);
  j["mid_block_scale_factor"] = c.mid_block_scale_factor;
  j["norm_eps"] = c.norm_eps;
  j["norm_num_groups"] = c.norm_num_groups;
  j["only_cross_attention"] = c.only_cross_attention;
  j["out_channels"] = c.out_channels;
  j["sample_size"] = c.sample_size;
  if (c.block_out_channels.empty() || c.time_embedding_dim != c.block_out_channels.front() * 4)
    j["time_embedding_dim"] = c.time_embedding_dim;
  j["transformer_layers_per_block"] = per_block(c.transformer_layers_per_block);
  json up = json::array();
  for (auto t : c.up_block_types)
    up.push_back(t == weights::UpBlockType::CrossAttnUpBlock2D ? "CrossAttnUpBlock2D" : "UpBlock2D");
  j["up_block_types"] = up;
  j["upcast_attention"] = c.upcast_attention;
  j["use_linear_projection"] = c.use_linear_projection;
  return text(j);
}

std::string vae_config_json(const weights::VaeConfig& c) {
  json j;
  j["_class_name"] = "AutoencoderKL";
  j["act_fn"] = activation_name(c.act_fn);
  j["block_out_channels"] = c.block_out_channels;
  j["down_block_types"] = std::vector<std::string>(c.block_out_channels.size(), "DownEncoderBlock2D");
  j["force_upcast"] = c.force_upcast;
  j["in_channels"] = c.in_channels;
  j["latent_channels"] = c.latent_channels;
  j["layers_per_block"] = c.layers_per_block;
  j["mid_block_add_attention"] = c.mid_block_add_attention;
  j["norm_num_groups"] = c.norm_num_groups;
  j["out_channels"] = c.out_channels;
  j["sample_size"] = c.sample_size;
  j["scaling_factor"] = c.scaling_factor;
  set_if(j, "shift_factor", c.shift_factor);
  j["up_block_types"] = std::vector<std::string>(c.block_out_channels.size(), "UpDecoderBlock2D");
  j["use_post_quant_conv"] = c.use_post_quant_conv;
  j["use_quant_conv"] = c.use_quant_conv;
  return text(j);
}

std::string text_encoder_config_json(const weights::TextEncoderConfig& c) {
  json j;
  j["architectures"] = {"CLIPTextModel"};
  j["bos_token_id"] = 0;
  j["eos_token_id"] = 2;
  j["hidden_act"] = activation_name(c.hidden_act);
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["model_type"] = "clip_text_model";
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["pad_token_id"] = 1;
  j["projection_dim"] = c.projection_dim;
  j["vocab_size"] = c.vocab_size;
  return text(j);
}

std::string scheduler_config_json(const weights::SchedulerConfig& c) {
  json j = json::object();
  if (!c.class_name.empty()) j["_class_name"] = c.class_name;
  set_if(j, "num_train_timesteps", c.num_train_timesteps);
  set_if(j, "beta_start", c.beta_start);
  set_if(j, "beta_end", c.beta_end);
  set_if(j, "beta_schedule", c.beta_schedule);
  set_if(j, "trained_betas", c.trained_betas);
  set_if(j, "prediction_type", c.prediction_type);
  set_if(j, "timestep_spacing", c.timestep_spacing);
  set_if(j, "steps_offset", c.steps_offset);
  set_if(j, "set_alpha_to_one", c.set_alpha_to_one);
  set_if(j, "skip_prk_steps", c.skip_prk_steps);
  set_if(j, "clip_sample", c.clip_sample);
  set_if(j, "clip_sample_range", c.clip_sample_range);
  set_if(j, "rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  set_if(j, "use_karras_sigmas", c.use_karras_sigmas);
  set_if(j, "use_exponential_sigmas", c.use_exponential_sigmas);
  set_if(j, "use_beta_sigmas", c.use_beta_sigmas);
  set_if(j, "use_lu_lambdas", c.use_lu_lambdas);
  set_if(j, "use_flow_sigmas", c.use_flow_sigmas);
  set_if(j, "sigma_min", c.sigma_min);
  set_if(j, "sigma_max", c.sigma_max);
  set_if(j, "timestep_type", c.timestep_type);
  set_if(j, "interpolation_type", c.interpolation_type);
  set_if(j, "final_sigmas_type", c.final_sigmas_type);
  set_if(j, "lower_order_final", c.lower_order_final);
  set_if(j, "euler_at_final", c.euler_at_final);
  // Python writes an infinite value as the bare literal -Infinity (not JSON, but what diffusers
  // saves and reads); nlohmann cannot emit it, so a placeholder string is unquoted below.
  const bool infinite_lambda = c.lambda_min_clipped && std::isinf(*c.lambda_min_clipped);
  if (infinite_lambda)
    j["lambda_min_clipped"] = *c.lambda_min_clipped < 0 ? "-Infinity" : "Infinity";
  else
    set_if(j, "lambda_min_clipped", c.lambda_min_clipped);
  set_if(j, "variance_type", c.variance_type);
  set_if(j, "solver_order", c.solver_order);
  set_if(j, "algorithm_type", c.algorithm_type);
  set_if(j, "solver_type", c.solver_type);
  set_if(j, "thresholding", c.thresholding);
  std::string out = text(j);
  if (infinite_lambda) {
    const std::string quoted = *c.lambda_min_clipped < 0 ? "\"-Infinity\"" : "\"Infinity\"";
    const auto at = out.find("\"lambda_min_clipped\": " + quoted);
    out.replace(out.find(quoted, at), quoted.size(), quoted.substr(1, quoted.size() - 2));
  }
  return out;
}

std::string model_index_json(const weights::SchedulerConfig& scheduler) {
  const json none = {nullptr, nullptr};
  json j;
  j["_class_name"] = "StableDiffusionPipeline";
  j["feature_extractor"] = none;
  j["image_encoder"] = none;
  j["requires_safety_checker"] = false;
  j["safety_checker"] = none;
  j["scheduler"] = {"diffusers", scheduler.class_name.empty() ? "PNDMScheduler" : scheduler.class_name};
  j["text_encoder"] = {"transformers", "CLIPTextModel"};
  j["tokenizer"] = {"transformers", "CLIPTokenizer"};
  j["unet"] = {"diffusers", "UNet2DConditionModel"};
  j["vae"] = {"diffusers", "AutoencoderKL"};
  return text(j);
}

}  // namespace sdgen::app
