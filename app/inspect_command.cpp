// `sdgen inspect MODEL`: what sdgen makes of a model without running it.
//
// Opens the model as generation would (the same OpenOptions, so --config, --tokenizer and
// --prediction behave identically), builds the three networks from their configs, binds every
// tensor, and prints what a user needs to check a download or a single-file checkpoint: the layout
// and family, where the configs came from, each component's files, dtypes and parameter count, the
// configuration values that distinguish models, and every tensor that does not fit. A model with
// any such tensor is then refused with the same error generation would give, so the exit status
// says whether the model is usable.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "app/model_options.hpp"
#include "lib/core/error.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/vae.hpp"
#include "lib/models/weight_binding.hpp"
#include "weights/model.hpp"

namespace sdgen::app {

namespace {

using weights::Activation;

template <class T>
std::string list(const std::vector<T>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += cat(i ? ", " : "", values[i]);
  return s + "]";
}

const char* name(Activation a) {
  switch (a) {
    case Activation::Silu: return "silu";
    case Activation::Gelu: return "gelu";
    case Activation::QuickGelu: return "quick_gelu";
  }
  return "?";
}

const char* name(weights::DownBlockType t) {
  return t == weights::DownBlockType::CrossAttnDownBlock2D ? "CrossAttnDownBlock2D" : "DownBlock2D";
}

const char* name(weights::UpBlockType t) {
  return t == weights::UpBlockType::CrossAttnUpBlock2D ? "CrossAttnUpBlock2D" : "UpBlock2D";
}

template <class T>
std::string names(const std::vector<T>& types) {
  std::string s;
  for (std::size_t i = 0; i < types.size(); ++i) s += cat(i ? ", " : "", name(types[i]));
  return s;
}

const char* yes_no(bool b) { return b ? "yes" : "no"; }

void print_component(const models::WeightReport& r, const std::string& config_summary) {
  std::string dtypes;
  for (const auto& [dtype, count] : r.dtypes) dtypes += cat(dtypes.empty() ? "" : ", ", dtype_name(dtype), " x", count);
  std::printf("%s: %zu tensors, %lld parameters (%.2f M), dtypes %s\n", r.component.c_str(), r.tensor_count,
              static_cast<long long>(r.parameter_count), static_cast<double>(r.parameter_count) / 1e6,
              dtypes.empty() ? "none bound" : dtypes.c_str());
  for (const auto& file : r.files) std::printf("  file: %s\n", file.string().c_str());
  std::printf("%s", config_summary.c_str());
  if (!r.ignored.empty()) std::printf("  ignored: %zu legacy buffer(s) (%s)\n", r.ignored.size(), r.ignored[0].c_str());
  const auto problems = models::describe_problems(r);
  if (!problems.empty()) std::printf("  %zu tensor problem(s):\n", problems.size());
  for (const auto& line : problems) std::printf("    %s\n", line.c_str());
}

std::string unet_summary(const weights::UNetConfig& c) {
  return cat("  down blocks: ", names(c.down_block_types), "\n  up blocks: ", names(c.up_block_types),
             "\n  block_out_channels ", list(c.block_out_channels), ", layers_per_block ", list(c.layers_per_block),
             ", attention heads ", list(c.attention_heads), ", transformer layers ",
             list(c.transformer_layers_per_block), "\n  cross_attention_dim ", c.cross_attention_dim,
             ", linear projection ", yes_no(c.use_linear_projection), ", upcast attention ",
             yes_no(c.upcast_attention), ", sample_size ", c.sample_size, " (", 8 * c.sample_size, " px)\n");
}

std::string vae_summary(const weights::VaeConfig& c) {
  return cat("  block_out_channels ", list(c.block_out_channels), ", layers_per_block ", c.layers_per_block,
             ", latent_channels ", c.latent_channels, ", scaling_factor ", c.scaling_factor, "\n");
}

std::string text_encoder_summary(const weights::TextEncoderConfig& c) {
  return cat("  hidden_size ", c.hidden_size, ", layers ", c.num_hidden_layers, ", heads ", c.num_attention_heads,
             ", intermediate_size ", c.intermediate_size, ", hidden_act ", name(c.hidden_act), ", vocab_size ",
             c.vocab_size, ", max_position_embeddings ", c.max_position_embeddings, "\n");
}

void run_inspect(const weights::OpenOptions& options) {
  const weights::OpenedModel m = weights::open_model(options);

  std::printf("model: %s\n", m.source.string().c_str());
  std::printf("layout: %s\n", m.layout == weights::ModelLayout::DiffusersFolder ? "diffusers folder"
                                                                                 : "single-file checkpoint (LDM keys)");
  std::printf("family: %s\n", m.family == weights::ModelFamily::SD1 ? "SD 1.x" : "SD 2.x");
  std::printf("configs: %s\n", m.config_origin.c_str());
  std::printf("tokenizer: %s\n", m.tokenizer_dir.string().c_str());
  std::printf("scheduler: %s, prediction_type %s\n",
              m.scheduler.class_name.empty() ? "(unnamed)" : m.scheduler.class_name.c_str(),
              m.scheduler.prediction_type ? m.scheduler.prediction_type->c_str() : "epsilon (default)");
  if (!m.ignored_keys.empty())
    std::printf("ignored keys: %zu (EMA copies, training buffers, ...; first: %s)\n", m.ignored_keys.size(),
                m.ignored_keys[0].c_str());

  models::UNet2DConditionModel unet(m.unet);
  models::AutoencoderKL vae(m.vae);
  models::CLIPTextModel text_encoder(m.text_encoder);
  const std::vector<models::WeightReport> reports = {
      models::bind_weights("unet", unet, m.unet_tensors),
      models::bind_weights("vae", vae, m.vae_tensors),
      models::bind_weights("text_encoder", text_encoder, m.text_encoder_tensors),
  };
  print_component(reports[0], unet_summary(m.unet));
  print_component(reports[1], vae_summary(m.vae));
  print_component(reports[2], text_encoder_summary(m.text_encoder));
  std::fflush(stdout);  // the listing first, then the error main() prints on stderr
  for (const auto& r : reports) models::require_complete(r);
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Open a model, check every tensor against its configs, and describe it");
  auto args = add_model_options(*cmd);  // filled while parsing, read by the callback
  cmd->add_option("model", args->model, "The model, as for -m");
  cmd->callback([args] { run_inspect(args->open_options()); });
}

}  // namespace sdgen::app
