// LDM -> diffusers key mapping, as a table of rules generated from the configs.
//
// A rule is keyed by an LDM tensor name or by a module prefix ending in '.'; a key takes the
// longest rule that matches it (its full name first, then ever shorter prefixes), and the part of
// the key after a prefix is kept as is ("weight", "bias", or a whole transformer block's internals,
// which the two layouts spell identically). Longest-match lets a few exact rules (the reshaped VAE
// attention weights, the fused OpenCLIP q/k/v, the ignored position_ids) sit inside prefix rules.
//
// Rules are generated per module, listing every sub-module the LDM code has, so a stray name below
// a known module (a transformer block past the configured depth, an unknown resnet layer) matches
// nothing and is reported as unexpected here, instead of travelling on under a diffusers name.
#include "weights/key_mapping.hpp"

#include <array>
#include <charconv>
#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "lib/core/error.hpp"

namespace sdgen::weights {
namespace {

enum class Component { UNet, Vae, TextEncoder };

std::string_view component_name(Component c) {
  switch (c) {
    case Component::UNet: return "UNet";
    case Component::Vae: return "VAE";
    case Component::TextEncoder: return "text encoder";
  }
  return "?";
}

// How the diffusers tensor is cut out of the stored one.
enum class View {
  Whole,     // the stored tensor as it is
  Reshape,   // the same bytes under another shape (a 1x1 conv weight read as a linear weight)
  RowBlock,  // one of `block_count` equal blocks of rows of a tensor fused along dim 0
};

struct Target {
  Component component = Component::UNet;
  std::string name;  // the diffusers name, or a prefix when the rule is a prefix
  View view = View::Whole;
  std::vector<std::int64_t> shape;  // Reshape, RowBlock: the diffusers shape
  int block_index = 0;              // RowBlock
  int block_count = 1;              // RowBlock
};

// What one LDM key or prefix becomes; no targets means the tensor is ignored.
struct Rule {
  std::vector<Target> targets;
};

struct Match {
  const Rule* rule = nullptr;
  std::size_t matched_length = 0;  // characters of the key the rule consumed
};

class RuleTable {
 public:
  void rename(std::string ldm, Component c, std::string diffusers) {
    add(std::move(ldm), {Target{.component = c, .name = std::move(diffusers)}});
  }
  void reshape(std::string ldm, Component c, std::string diffusers,
               std::vector<std::int64_t> shape) {
    add(std::move(ldm), {Target{.component = c,
                                .name = std::move(diffusers),
                                .view = View::Reshape,
                                .shape = std::move(shape)}});
  }
  // `ldm` holds len(diffusers) blocks of `block_shape`, stacked along dim 0.
  void split_rows(std::string ldm, Component c, const std::vector<std::string>& diffusers,
                  const std::vector<std::int64_t>& block_shape) {
    std::vector<Target> targets;
    for (std::size_t i = 0; i < diffusers.size(); ++i)
      targets.push_back(Target{.component = c,
                               .name = diffusers[i],
                               .view = View::RowBlock,
                               .shape = block_shape,
                               .block_index = int(i),
                               .block_count = int(diffusers.size())});
    add(std::move(ldm), std::move(targets));
  }
  void ignore(std::string ldm) { add(std::move(ldm), {}); }

  std::optional<Match> find(std::string_view key) const {
    if (auto it = rules_.find(std::string(key)); it != rules_.end())
      return Match{&it->second, key.size()};
    for (auto dot = key.rfind('.'); dot != std::string_view::npos; dot = key.rfind('.', dot - 1)) {
      if (auto it = rules_.find(std::string(key.substr(0, dot + 1))); it != rules_.end())
        return Match{&it->second, dot + 1};
      if (dot == 0) break;
    }
    return std::nullopt;
  }

 private:
  void add(std::string ldm, std::vector<Target> targets) {
    rules_.insert_or_assign(std::move(ldm), Rule{std::move(targets)});
  }
  std::unordered_map<std::string, Rule> rules_;
};

// An LDM sub-module name and its diffusers counterpart.
struct Renamed {
  std::string_view ldm;
  std::string_view diffusers;
};

void rename_submodules(RuleTable& table, std::string_view ldm_prefix, Component c,
                       std::string_view diffusers_prefix, std::span<const Renamed> names) {
  for (const Renamed& n : names)
    table.rename(cat(ldm_prefix, n.ldm, "."), c, cat(diffusers_prefix, n.diffusers, "."));
}

// ---- UNet

constexpr std::string_view kUNetPrefix = "model.diffusion_model.";

// openaimodel.ResBlock -> ResnetBlock2D. in_layers/out_layers are Sequentials whose other entries
// (SiLU, dropout) have no weights.
constexpr std::array<Renamed, 6> kUNetResnet = {{{"in_layers.0", "norm1"},
                                                 {"in_layers.2", "conv1"},
                                                 {"emb_layers.1", "time_emb_proj"},
                                                 {"out_layers.0", "norm2"},
                                                 {"out_layers.3", "conv2"},
                                                 {"skip_connection", "conv_shortcut"}}};

void add_unet_resnet(RuleTable& table, std::string_view ldm, std::string_view diffusers) {
  rename_submodules(table, ldm, Component::UNet, diffusers, kUNetResnet);
}

// SpatialTransformer -> Transformer2DModel: the same names throughout, one rule per block so that
// the configured depth bounds what is accepted.
void add_unet_transformer(RuleTable& table, std::string_view ldm, std::string_view diffusers,
                          int depth) {
  constexpr std::array<Renamed, 3> kOuter = {
      {{"norm", "norm"}, {"proj_in", "proj_in"}, {"proj_out", "proj_out"}}};
  rename_submodules(table, ldm, Component::UNet, diffusers, kOuter);
  for (int t = 0; t < depth; ++t)
    table.rename(cat(ldm, "transformer_blocks.", t, "."), Component::UNet,
                 cat(diffusers, "transformer_blocks.", t, "."));
}

void check_unet_config(const SafeTensorsFile& file, const UNetConfig& c) {
  const std::size_t n = c.block_out_channels.size();
  if (n == 0)
    throw ModelError(
        cat(file.path().string(),
            ": cannot map the UNet tensors: the UNet config has no block_out_channels"));
  const auto check = [&](std::size_t size, std::string_view what) {
    if (size != n)
      throw ModelError(cat(file.path().string(),
                           ": cannot map the UNet tensors: the UNet config has ", n,
                           " block_out_channels but ", size, " ", what));
  };
  check(c.down_block_types.size(), "down_block_types");
  check(c.up_block_types.size(), "up_block_types");
  check(c.layers_per_block.size(), "layers_per_block");
  check(c.transformer_layers_per_block.size(), "transformer_layers_per_block");
}

void add_unet_rules(RuleTable& table, const SafeTensorsFile& file, const UNetConfig& c) {
  check_unet_config(file, c);
  const auto u = [](const auto&... parts) { return cat(kUNetPrefix, parts...); };
  const int levels = int(c.block_out_channels.size());

  table.rename(u("time_embed.0."), Component::UNet, "time_embedding.linear_1.");
  table.rename(u("time_embed.2."), Component::UNet, "time_embedding.linear_2.");
  table.rename(u("input_blocks.0.0."), Component::UNet, "conv_in.");

  // input_blocks: after conv_in, each level's resnets (each with its transformer, if the level has
  // attention at index 1), then one block holding only the downsampler, except on the last level.
  int block = 1;
  for (int i = 0; i < levels; ++i) {
    for (int j = 0; j < c.layers_per_block[i]; ++j, ++block) {
      add_unet_resnet(table, u("input_blocks.", block, ".0."),
                      cat("down_blocks.", i, ".resnets.", j, "."));
      if (c.down_block_types[i] == DownBlockType::CrossAttnDownBlock2D)
        add_unet_transformer(table, u("input_blocks.", block, ".1."),
                             cat("down_blocks.", i, ".attentions.", j, "."),
                             c.transformer_layers_per_block[i]);
    }
    if (i + 1 < levels) {
      table.rename(u("input_blocks.", block, ".0.op."), Component::UNet,
                   cat("down_blocks.", i, ".downsamplers.0.conv."));
      ++block;
    }
  }

  // UNetMidBlock2DCrossAttn, whose depth diffusers takes from the last down level.
  add_unet_resnet(table, u("middle_block.0."), "mid_block.resnets.0.");
  add_unet_transformer(table, u("middle_block.1."), "mid_block.attentions.0.",
                       c.transformer_layers_per_block.back());
  add_unet_resnet(table, u("middle_block.2."), "mid_block.resnets.1.");

  // output_blocks: the levels in reverse, one resnet more than the matching down level; in the
  // last block of each level but the last, the upsampler follows the resnet (and transformer).
  block = 0;
  for (int up = 0; up < levels; ++up) {
    const int level = levels - 1 - up;  // the down level this up block mirrors
    const int layers = c.layers_per_block[level] + 1;
    const bool has_attention = c.up_block_types[up] == UpBlockType::CrossAttnUpBlock2D;
    for (int j = 0; j < layers; ++j, ++block) {
      add_unet_resnet(table, u("output_blocks.", block, ".0."),
                      cat("up_blocks.", up, ".resnets.", j, "."));
      if (has_attention)
        add_unet_transformer(table, u("output_blocks.", block, ".1."),
                             cat("up_blocks.", up, ".attentions.", j, "."),
                             c.transformer_layers_per_block[level]);
      if (up + 1 < levels && j + 1 == layers)
        table.rename(u("output_blocks.", block, ".", has_attention ? 2 : 1, ".conv."),
                     Component::UNet, cat("up_blocks.", up, ".upsamplers.0.conv."));
    }
  }

  table.rename(u("out.0."), Component::UNet, "conv_norm_out.");
  table.rename(u("out.2."), Component::UNet, "conv_out.");
}

// ---- VAE

constexpr std::string_view kVaePrefix = "first_stage_model.";

constexpr std::array<Renamed, 5> kVaeResnet = {{{"norm1", "norm1"},
                                                {"conv1", "conv1"},
                                                {"norm2", "norm2"},
                                                {"conv2", "conv2"},
                                                {"nin_shortcut", "conv_shortcut"}}};

void add_vae_resnet(RuleTable& table, std::string_view ldm, std::string_view diffusers) {
  rename_submodules(table, ldm, Component::Vae, diffusers, kVaeResnet);
}

// mid.{block_1, attn_1, block_2} -> mid_block.{resnets.0, attentions.0, resnets.1}; the attention's
// 1x1 convolutions become linear layers of `channels` x `channels`.
void add_vae_mid_block(RuleTable& table, const std::string& ldm, const std::string& diffusers,
                       const VaeConfig& c) {
  add_vae_resnet(table, cat(ldm, "block_1."), cat(diffusers, "resnets.0."));
  add_vae_resnet(table, cat(ldm, "block_2."), cat(diffusers, "resnets.1."));
  if (c.mid_block_add_attention) {
    const std::int64_t channels = c.block_out_channels.back();
    const std::string attn = cat(ldm, "attn_1.");
    const std::string attention = cat(diffusers, "attentions.0.");
    table.rename(cat(attn, "norm."), Component::Vae, cat(attention, "group_norm."));
    constexpr std::array<Renamed, 4> kProjections = {
        {{"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}}};
    for (const Renamed& p : kProjections) {
      table.rename(cat(attn, p.ldm, "."), Component::Vae, cat(attention, p.diffusers, "."));
      table.reshape(cat(attn, p.ldm, ".weight"), Component::Vae,
                    cat(attention, p.diffusers, ".weight"), {channels, channels});
    }
  }
}

void add_vae_rules(RuleTable& table, const SafeTensorsFile& file, const VaeConfig& c) {
  if (c.block_out_channels.empty())
    throw ModelError(cat(file.path().string(),
                         ": cannot map the VAE tensors: the VAE config has no block_out_channels"));
  const int levels = int(c.block_out_channels.size());
  const auto v = [](const auto&... parts) { return cat(kVaePrefix, parts...); };

  // Encoder: down.i lines up with down_blocks.i; no downsampler on the last level.
  table.rename(v("encoder.conv_in."), Component::Vae, "encoder.conv_in.");
  for (int i = 0; i < levels; ++i) {
    for (int j = 0; j < c.layers_per_block; ++j)
      add_vae_resnet(table, v("encoder.down.", i, ".block.", j, "."),
                     cat("encoder.down_blocks.", i, ".resnets.", j, "."));
    if (i + 1 < levels)
      table.rename(v("encoder.down.", i, ".downsample.conv."), Component::Vae,
                   cat("encoder.down_blocks.", i, ".downsamplers.0.conv."));
  }
  add_vae_mid_block(table, v("encoder.mid."), "encoder.mid_block.", c);
  table.rename(v("encoder.norm_out."), Component::Vae, "encoder.conv_norm_out.");
  table.rename(v("encoder.conv_out."), Component::Vae, "encoder.conv_out.");

  // Decoder: LDM numbers up.i by resolution (up.0 is the full-size level, run last), diffusers
  // numbers up_blocks in execution order; up.0 has no upsampler.
  table.rename(v("decoder.conv_in."), Component::Vae, "decoder.conv_in.");
  add_vae_mid_block(table, v("decoder.mid."), "decoder.mid_block.", c);
  for (int up = 0; up < levels; ++up) {
    const int i = levels - 1 - up;
    for (int j = 0; j < c.layers_per_block + 1; ++j)
      add_vae_resnet(table, v("decoder.up.", i, ".block.", j, "."),
                     cat("decoder.up_blocks.", up, ".resnets.", j, "."));
    if (i > 0)
      table.rename(v("decoder.up.", i, ".upsample.conv."), Component::Vae,
                   cat("decoder.up_blocks.", up, ".upsamplers.0.conv."));
  }
  table.rename(v("decoder.norm_out."), Component::Vae, "decoder.conv_norm_out.");
  table.rename(v("decoder.conv_out."), Component::Vae, "decoder.conv_out.");

  if (c.use_quant_conv) table.rename(v("quant_conv."), Component::Vae, "quant_conv.");
  if (c.use_post_quant_conv)
    table.rename(v("post_quant_conv."), Component::Vae, "post_quant_conv.");
}

// ---- text encoder

constexpr std::string_view kClipPrefix = "cond_stage_model.transformer.text_model.";
constexpr std::string_view kOpenClipPrefix = "cond_stage_model.model.";
constexpr std::string_view kOpenClipLayers = "cond_stage_model.model.transformer.resblocks.";

// SD 1.x stores transformers' own CLIPTextModel under a prefix: only the prefix changes.
void add_clip_rules(RuleTable& table, const TextEncoderConfig& c) {
  const auto t = [](const auto&... parts) { return cat(kClipPrefix, parts...); };
  table.rename(t("embeddings."), Component::TextEncoder, "text_model.embeddings.");
  // A buffer (0..76) that newer transformers no longer save; nothing to load.
  table.ignore(t("embeddings.position_ids"));
  for (int l = 0; l < c.num_hidden_layers; ++l)
    table.rename(t("encoder.layers.", l, "."), Component::TextEncoder,
                 cat("text_model.encoder.layers.", l, "."));
  table.rename(t("final_layer_norm."), Component::TextEncoder, "text_model.final_layer_norm.");
}

// SD 2.x's OpenCLIP text tower, renamed to CLIPTextModel's names. Its in_proj tensors stack q, k
// and v along dim 0 (torch.nn.MultiheadAttention), which CLIPTextModel keeps as three linears.
void add_open_clip_rules(RuleTable& table, const SafeTensorsFile& file,
                         const TextEncoderConfig& c) {
  if (c.hidden_size <= 0)
    throw ModelError(
        cat(file.path().string(),
            ": cannot map the text encoder tensors: the text encoder config has hidden_size ",
            c.hidden_size));
  const auto o = [](const auto&... parts) { return cat(kOpenClipPrefix, parts...); };
  const std::int64_t width = c.hidden_size;
  table.rename(o("token_embedding."), Component::TextEncoder,
               "text_model.embeddings.token_embedding.");
  table.rename(o("positional_embedding"), Component::TextEncoder,
               "text_model.embeddings.position_embedding.weight");
  constexpr std::array<Renamed, 5> kLayer = {{{"ln_1", "layer_norm1"},
                                              {"ln_2", "layer_norm2"},
                                              {"attn.out_proj", "self_attn.out_proj"},
                                              {"mlp.c_fc", "mlp.fc1"},
                                              {"mlp.c_proj", "mlp.fc2"}}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string ldm = cat(kOpenClipLayers, l, ".");
    const std::string diffusers = cat("text_model.encoder.layers.", l, ".");
    rename_submodules(table, ldm, Component::TextEncoder, diffusers, kLayer);
    const auto qkv = [&](std::string_view param) {
      std::vector<std::string> names;
      for (std::string_view p : {"q_proj", "k_proj", "v_proj"})
        names.push_back(cat(diffusers, "self_attn.", p, ".", param));
      return names;
    };
    table.split_rows(cat(ldm, "attn.in_proj_weight"), Component::TextEncoder, qkv("weight"),
                     {width, width});
    table.split_rows(cat(ldm, "attn.in_proj_bias"), Component::TextEncoder, qkv("bias"), {width});
  }
  table.rename(o("ln_final."), Component::TextEncoder, "text_model.final_layer_norm.");
  // The projection into the joint image-text space and the contrastive temperature: training only.
  table.ignore(o("text_projection"));
  table.ignore(o("logit_scale"));
}

// SD 2.x runs the text tower to its penultimate layer, so diffusers' config has 23 of OpenCLIP's
// 24; the layers past num_hidden_layers are never used. Matched by number, as the file decides how
// many there are.
bool is_unused_open_clip_layer(std::string_view key, int num_hidden_layers) {
  if (!key.starts_with(kOpenClipLayers)) return false;
  key.remove_prefix(kOpenClipLayers.size());
  int layer = 0;
  const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), layer);
  return ec == std::errc() && end != key.data() + key.size() && *end == '.' &&
         layer >= num_hidden_layers;
}

// ---- the rest of a training checkpoint

void add_ignored_rules(RuleTable& table) {
  // The exponential moving average copy of the UNet (a second full UNet, flattened names).
  table.ignore("model_ema.");
  // ldm.models.diffusion.ddpm registers the training noise schedule as buffers; sdgen's schedulers
  // compute theirs from scheduler_config.
  for (std::string_view name :
       {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"})
    table.ignore(std::string(name));
}

// ---- mapping

std::int64_t element_count(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

TensorSource make_source(const SafeTensorsFile& file, const TensorInfo& stored,
                         const Target& target, const std::string& name) {
  TensorSource source{.file = &file, .stored = &stored, .shape = stored.shape};
  const auto mismatch = [&](std::span<const std::int64_t> expected, std::string_view detail) {
    return ModelError(cat(file.path().string(), ": tensor '", stored.name, "' (", detail, " ",
                          component_name(target.component), " '", name, "'): expected ",
                          shape_string(expected), ", got ", shape_string(stored.shape)));
  };
  switch (target.view) {
    case View::Whole: break;
    case View::Reshape:
      if (stored.numel() != element_count(target.shape)) throw mismatch(target.shape, "viewed as");
      source.shape = target.shape;
      break;
    case View::RowBlock: {
      std::vector<std::int64_t> fused = target.shape;
      fused[0] *= target.block_count;
      if (stored.shape != fused) throw mismatch(fused, "split into");
      source.shape = target.shape;
      source.byte_offset = std::size_t(target.block_index) *
                           std::size_t(element_count(target.shape)) * dtype_size(stored.dtype);
      break;
    }
  }
  return source;
}

}  // namespace

std::optional<LdmCheckpointInfo> inspect_ldm_checkpoint(const SafeTensorsFile& file) {
  bool has_unet = false;
  LdmCheckpointInfo info;
  for (const TensorInfo& t : file.tensors()) {
    const std::string_view name = t.name;
    has_unet = has_unet || name.starts_with(kUNetPrefix);
    if (name.starts_with(kOpenClipPrefix))
      info.text_encoder = LdmTextEncoder::OpenClip;
    else if (name.starts_with("cond_stage_model.transformer.") &&
             info.text_encoder == LdmTextEncoder::Absent)
      info.text_encoder = LdmTextEncoder::Clip;
  }
  if (!has_unet) return std::nullopt;
  const std::string token_embedding = info.text_encoder == LdmTextEncoder::OpenClip
                                          ? cat(kOpenClipPrefix, "token_embedding.weight")
                                          : cat(kClipPrefix, "embeddings.token_embedding.weight");
  if (const TensorInfo* t = file.find(token_embedding); t != nullptr && t->shape.size() == 2)
    info.text_hidden_size = t->shape[1];
  return info;
}

LdmMapping map_ldm_checkpoint(const SafeTensorsFile& file, const UNetConfig& unet,
                              const VaeConfig& vae, const TextEncoderConfig& text_encoder) {
  RuleTable table;
  add_unet_rules(table, file, unet);
  add_vae_rules(table, file, vae);
  add_clip_rules(table, text_encoder);
  add_open_clip_rules(table, file, text_encoder);
  add_ignored_rules(table);

  LdmMapping mapping;
  const auto tensors_of = [&](Component c) -> ComponentTensors& {
    switch (c) {
      case Component::UNet: return mapping.unet;
      case Component::Vae: return mapping.vae;
      case Component::TextEncoder: break;
    }
    return mapping.text_encoder;
  };

  for (const TensorInfo& stored : file.tensors()) {
    const std::optional<Match> match = table.find(stored.name);
    if (!match) {
      if (is_unused_open_clip_layer(stored.name, text_encoder.num_hidden_layers))
        mapping.ignored_keys.push_back(stored.name);
      else
        mapping.unexpected_keys.push_back(stored.name);
      continue;
    }
    if (match->rule->targets.empty()) {
      mapping.ignored_keys.push_back(stored.name);
      continue;
    }
    const std::string_view rest = std::string_view(stored.name).substr(match->matched_length);
    for (const Target& target : match->rule->targets) {
      std::string name = cat(target.name, rest);
      TensorSource source = make_source(file, stored, target, name);
      ComponentTensors& tensors = tensors_of(target.component);
      if (const auto it = tensors.find(name); it != tensors.end())
        throw ModelError(cat(file.path().string(), ": tensors '", it->second.stored->name,
                             "' and '", stored.name, "' both map to ",
                             component_name(target.component), " tensor '", name, "'"));
      tensors.emplace(std::move(name), std::move(source));
    }
  }
  return mapping;
}

}  // namespace sdgen::weights
