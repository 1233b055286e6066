// Fuzzes the model folder's JSON config parsers: unet/vae/text_encoder config.json,
// model_index.json and scheduler_config.json. Every input goes through all five parsers: the seeds
// are one file of each kind, and a mutation of one kind is as good a test of the others as any.
//
// Invariants are the parsers' documented promises (weights/configs.hpp, scheduler_config.hpp): a
// config that parses has positive sizes, per-block lists as long as the block list, channels
// divisible by the norm groups and the hidden size by the heads; a model index names the five
// components an SD pipeline needs; a scheduler config's enumerated strings are ones sdgen knows.
#include <algorithm>
#include <array>
#include <cmath>

#include "tests/fuzz/fuzz_support.hpp"
#include "weights/configs.hpp"
#include "weights/scheduler_config.hpp"

using namespace sdgen;
using namespace sdgen::weights;

namespace {

const std::filesystem::path kWhere = "fuzz/config.json";

bool all_positive(const std::vector<int>& values) {
  return std::all_of(values.begin(), values.end(), [](int v) { return v > 0; });
}

void check_unet(const UNetConfig& c) {
  const std::size_t blocks = c.block_out_channels.size();
  fuzz::check(blocks > 0 && all_positive(c.block_out_channels), "unet: block_out_channels must be positive");
  fuzz::check(c.down_block_types.size() == blocks && c.up_block_types.size() == blocks &&
                  c.layers_per_block.size() == blocks && c.attention_heads.size() == blocks &&
                  c.transformer_layers_per_block.size() == blocks,
              "unet: a per-block list disagrees with block_out_channels in length");
  fuzz::check(all_positive(c.layers_per_block) && all_positive(c.attention_heads) &&
                  all_positive(c.transformer_layers_per_block),
              "unet: a per-block count is not positive");
  fuzz::check(c.sample_size > 0 && c.in_channels > 0 && c.out_channels > 0 && c.cross_attention_dim > 0 &&
                  c.norm_num_groups > 0 && c.time_embedding_dim > 0 && c.conv_in_kernel > 0 &&
                  c.conv_out_kernel > 0,
              "unet: a size is not positive");
  fuzz::check(c.conv_in_kernel % 2 == 1 && c.conv_out_kernel % 2 == 1, "unet: a conv kernel is even");
  for (const int ch : c.block_out_channels)
    fuzz::check(ch % c.norm_num_groups == 0, "unet: block_out_channels not divisible by norm_num_groups");
  fuzz::check(std::isfinite(c.norm_eps) && c.norm_eps > 0, "unet: norm_eps not positive");
  fuzz::check(std::isfinite(c.mid_block_scale_factor) && c.mid_block_scale_factor > 0,
              "unet: mid_block_scale_factor not positive");
}

void check_vae(const VaeConfig& c) {
  fuzz::check(!c.block_out_channels.empty() && all_positive(c.block_out_channels), "vae: block_out_channels");
  fuzz::check(c.in_channels > 0 && c.out_channels > 0 && c.latent_channels > 0 && c.layers_per_block > 0 &&
                  c.norm_num_groups > 0 && c.sample_size > 0,
              "vae: a size is not positive");
  for (const int ch : c.block_out_channels)
    fuzz::check(ch % c.norm_num_groups == 0, "vae: block_out_channels not divisible by norm_num_groups");
  fuzz::check(std::isfinite(c.scaling_factor), "vae: scaling_factor not finite");
}

void check_text_encoder(const TextEncoderConfig& c) {
  fuzz::check(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 &&
                  c.num_attention_heads > 0 && c.max_position_embeddings > 0 && c.projection_dim > 0,
              "text encoder: a size is not positive");
  fuzz::check(c.hidden_size % c.num_attention_heads == 0, "text encoder: hidden_size not divisible by heads");
  fuzz::check(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0, "text encoder: layer_norm_eps");
}

void check_model_index(const ModelIndex& index) {
  for (const char* name : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
    fuzz::check(std::any_of(index.components.begin(), index.components.end(),
                            [&](const ModelIndexEntry& e) { return e.name == name; }),
                cat("model index: accepted without its ", name));
}

template <std::size_t N>
void check_one_of(const std::optional<std::string>& value, const std::array<std::string_view, N>& known,
                  std::string_view key) {
  if (value)
    fuzz::check(std::find(known.begin(), known.end(), *value) != known.end(),
                cat("scheduler: accepted an unknown ", key, " '", *value, "'"));
}

void check_scheduler(const SchedulerConfig& c) {
  check_one_of(c.beta_schedule, std::array<std::string_view, 3>{"linear", "scaled_linear", "squaredcos_cap_v2"},
               "beta_schedule");
  check_one_of(c.prediction_type, std::array<std::string_view, 3>{"epsilon", "v_prediction", "sample"},
               "prediction_type");
  check_one_of(c.timestep_spacing, std::array<std::string_view, 3>{"leading", "trailing", "linspace"},
               "timestep_spacing");
  fuzz::check(c.source == kWhere, "scheduler: source is not the file it came from");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  fuzz::accepts([&] { check_unet(parse_unet_config(text, kWhere)); });
  fuzz::accepts([&] { check_vae(parse_vae_config(text, kWhere)); });
  fuzz::accepts([&] { check_text_encoder(parse_text_encoder_config(text, kWhere)); });
  fuzz::accepts([&] { check_model_index(parse_model_index(text, kWhere)); });
  fuzz::accepts([&] { check_scheduler(parse_scheduler_config(text, kWhere)); });
  return 0;
}
