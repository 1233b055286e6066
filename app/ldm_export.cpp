// diffusers -> LDM key generation; see ldm_export.hpp. The loops mirror add_unet_rules and
// add_vae_rules in weights/key_mapping.cpp, in the other direction.
#include "app/ldm_export.hpp"

#include <optional>
#include <string_view>
#include <unordered_map>

#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

// How a diffusers tensor is stored.
enum class Stored {
  Renamed,     // same shape, another key
  Conv1x1,     // [C, C] stored as [C, C, 1, 1]
  FusedBlock,  // rows `block` of 3 of a fused tensor
};

struct Rule {
  std::string ldm;  // a key, or a key prefix when the rule is a prefix
  Stored stored = Stored::Renamed;
  int block = 0;  // FusedBlock
};

// Diffusers prefix (ending in '.') or full name -> LDM; the longest match wins, so exact rules
// (the reshaped and fused tensors) sit inside the prefix rules of their module.
class InverseTable {
 public:
  void rename(std::string diffusers, std::string ldm) { rules_.insert_or_assign(std::move(diffusers), Rule{std::move(ldm)}); }
  void conv1x1(std::string diffusers, std::string ldm) {
    rules_.insert_or_assign(std::move(diffusers), Rule{std::move(ldm), Stored::Conv1x1});
  }
  void fused(std::string diffusers, std::string ldm, int block) {
    rules_.insert_or_assign(std::move(diffusers), Rule{std::move(ldm), Stored::FusedBlock, block});
  }

  // The rule and the LDM key for `name`, or nullopt.
  std::optional<std::pair<Rule, std::string>> find(std::string_view name) const {
    if (auto it = rules_.find(std::string(name)); it != rules_.end()) return std::pair{it->second, it->second.ldm};
    for (auto dot = name.rfind('.'); dot != std::string_view::npos && dot > 0; dot = name.rfind('.', dot - 1))
      if (auto it = rules_.find(std::string(name.substr(0, dot + 1))); it != rules_.end())
        return std::pair{it->second, cat(it->second.ldm, name.substr(dot + 1))};
    return std::nullopt;
  }

 private:
  std::unordered_map<std::string, Rule> rules_;
};

constexpr std::string_view kUNetPrefix = "model.diffusion_model.";
constexpr std::string_view kVaePrefix = "first_stage_model.";

// ResnetBlock2D -> openaimodel.ResBlock
void unet_resnet(InverseTable& t, const std::string& diffusers, const std::string& ldm) {
  constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"norm1", "in_layers.0"}, {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
      {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
  for (const auto& [d, l] : kNames) t.rename(cat(diffusers, d, "."), cat(ldm, l, "."));
}

void add_unet(InverseTable& t, const weights::UNetConfig& c) {
  const auto u = [](const auto&... parts) { return cat(kUNetPrefix, parts...); };
  const int levels = int(c.block_out_channels.size());
  if (c.down_block_types.size() != std::size_t(levels) || c.up_block_types.size() != std::size_t(levels) ||
      c.layers_per_block.size() != std::size_t(levels))
    throw Error("cannot lay out the UNet as a single file: its config's per-block lists differ in length");
  t.rename("conv_in.", u("input_blocks.0.0."));
  t.rename("time_embedding.linear_1.", u("time_embed.0."));
  t.rename("time_embedding.linear_2.", u("time_embed.2."));

  // input_blocks: after conv_in, each level's resnets (with their transformers), then a block
  // holding only the downsampler, except after the last level.
  int block = 1;
  for (int i = 0; i < levels; ++i) {
    for (int j = 0; j < c.layers_per_block[i]; ++j, ++block) {
      unet_resnet(t, cat("down_blocks.", i, ".resnets.", j, "."), u("input_blocks.", block, ".0."));
      if (c.down_block_types[i] == weights::DownBlockType::CrossAttnDownBlock2D)
        t.rename(cat("down_blocks.", i, ".attentions.", j, "."), u("input_blocks.", block, ".1."));
    }
    if (i + 1 < levels) t.rename(cat("down_blocks.", i, ".downsamplers.0.conv."), u("input_blocks.", block++, ".0.op."));
  }

  unet_resnet(t, "mid_block.resnets.0.", u("middle_block.0."));
  t.rename("mid_block.attentions.0.", u("middle_block.1."));
  unet_resnet(t, "mid_block.resnets.1.", u("middle_block.2."));

  // output_blocks: the levels in reverse with one resnet more; the upsampler closes each level
  // but the last, after the resnet and (when the level has one) the transformer.
  block = 0;
  for (int up = 0; up < levels; ++up) {
    const int layers = c.layers_per_block[levels - 1 - up] + 1;
    const bool attention = c.up_block_types[up] == weights::UpBlockType::CrossAttnUpBlock2D;
    for (int j = 0; j < layers; ++j, ++block) {
      unet_resnet(t, cat("up_blocks.", up, ".resnets.", j, "."), u("output_blocks.", block, ".0."));
      if (attention) t.rename(cat("up_blocks.", up, ".attentions.", j, "."), u("output_blocks.", block, ".1."));
      if (up + 1 < levels && j + 1 == layers)
        t.rename(cat("up_blocks.", up, ".upsamplers.0.conv."), u("output_blocks.", block, ".", attention ? 2 : 1, ".conv."));
    }
  }
  t.rename("conv_norm_out.", u("out.0."));
  t.rename("conv_out.", u("out.2."));
}

// ResnetBlock2D inside the VAE: the same names but the shortcut.
void vae_resnet(InverseTable& t, const std::string& diffusers, const std::string& ldm) {
  t.rename(diffusers, ldm);
  t.rename(cat(diffusers, "conv_shortcut."), cat(ldm, "nin_shortcut."));
}

void vae_mid_block(InverseTable& t, const std::string& diffusers, const std::string& ldm) {
  vae_resnet(t, cat(diffusers, "resnets.0."), cat(ldm, "block_1."));
  vae_resnet(t, cat(diffusers, "resnets.1."), cat(ldm, "block_2."));
  const std::string attention = cat(diffusers, "attentions.0.");
  const std::string attn = cat(ldm, "attn_1.");
  t.rename(cat(attention, "group_norm."), cat(attn, "norm."));
  constexpr std::pair<std::string_view, std::string_view> kProjections[] = {
      {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"}};
  for (const auto& [d, l] : kProjections) {
    t.rename(cat(attention, d, "."), cat(attn, l, "."));
    t.conv1x1(cat(attention, d, ".weight"), cat(attn, l, ".weight"));
  }
}

void add_vae(InverseTable& t, const weights::VaeConfig& c) {
  const auto v = [](const auto&... parts) { return cat(kVaePrefix, parts...); };
  const int levels = int(c.block_out_channels.size());
  t.rename("encoder.conv_in.", v("encoder.conv_in."));
  for (int i = 0; i < levels; ++i) {
    for (int j = 0; j < c.layers_per_block; ++j)
      vae_resnet(t, cat("encoder.down_blocks.", i, ".resnets.", j, "."), v("encoder.down.", i, ".block.", j, "."));
    if (i + 1 < levels)
      t.rename(cat("encoder.down_blocks.", i, ".downsamplers.0.conv."), v("encoder.down.", i, ".downsample.conv."));
  }
  vae_mid_block(t, "encoder.mid_block.", v("encoder.mid."));
  t.rename("encoder.conv_norm_out.", v("encoder.norm_out."));
  t.rename("encoder.conv_out.", v("encoder.conv_out."));

  // The decoder's up_blocks run from the smallest resolution; LDM numbers up.i from the largest.
  t.rename("decoder.conv_in.", v("decoder.conv_in."));
  vae_mid_block(t, "decoder.mid_block.", v("decoder.mid."));
  for (int up = 0; up < levels; ++up) {
    const int i = levels - 1 - up;
    for (int j = 0; j < c.layers_per_block + 1; ++j)
      vae_resnet(t, cat("decoder.up_blocks.", up, ".resnets.", j, "."), v("decoder.up.", i, ".block.", j, "."));
    if (i > 0) t.rename(cat("decoder.up_blocks.", up, ".upsamplers.0.conv."), v("decoder.up.", i, ".upsample.conv."));
  }
  t.rename("decoder.conv_norm_out.", v("decoder.norm_out."));
  t.rename("decoder.conv_out.", v("decoder.conv_out."));
  t.rename("quant_conv.", v("quant_conv."));
  t.rename("post_quant_conv.", v("post_quant_conv."));
}

void add_clip(InverseTable& t) { t.rename("text_model.", "cond_stage_model.transformer.text_model."); }

void add_open_clip(InverseTable& t, const weights::TextEncoderConfig& c) {
  const std::string o = "cond_stage_model.model.";
  t.rename("text_model.embeddings.token_embedding.", o + "token_embedding.");
  t.rename("text_model.embeddings.position_embedding.weight", o + "positional_embedding");
  constexpr std::pair<std::string_view, std::string_view> kLayer[] = {{"layer_norm1", "ln_1"},
                                                                      {"layer_norm2", "ln_2"},
                                                                      {"self_attn.out_proj", "attn.out_proj"},
                                                                      {"mlp.fc1", "mlp.c_fc"},
                                                                      {"mlp.fc2", "mlp.c_proj"}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string diffusers = cat("text_model.encoder.layers.", l, ".");
    const std::string ldm = cat(o, "transformer.resblocks.", l, ".");
    for (const auto& [d, x] : kLayer) t.rename(cat(diffusers, d, "."), cat(ldm, x, "."));
    int block = 0;
    for (std::string_view projection : {"q_proj", "k_proj", "v_proj"}) {
      t.fused(cat(diffusers, "self_attn.", projection, ".weight"), cat(ldm, "attn.in_proj_weight"), block);
      t.fused(cat(diffusers, "self_attn.", projection, ".bias"), cat(ldm, "attn.in_proj_bias"), block);
      ++block;
    }
  }
  t.rename("text_model.final_layer_norm.", o + "ln_final.");
}

const char* component_name(ModelComponent c) {
  switch (c) {
    case ModelComponent::UNet: return "UNet";
    case ModelComponent::Vae: return "VAE";
    case ModelComponent::TextEncoder: return "text encoder";
  }
  return "?";
}

}  // namespace

std::vector<LdmTensor> ldm_layout(std::span<const ComponentParameters> components, const weights::UNetConfig& unet,
                                  const weights::VaeConfig& vae, const weights::TextEncoderConfig& text_encoder,
                                  weights::LdmTextEncoder text_encoder_layout) {
  InverseTable unet_table, vae_table, text_table;
  add_unet(unet_table, unet);
  add_vae(vae_table, vae);
  if (text_encoder_layout == weights::LdmTextEncoder::OpenClip)
    add_open_clip(text_table, text_encoder);
  else
    add_clip(text_table);

  std::vector<LdmTensor> out;
  std::unordered_map<std::string, std::size_t> index;  // key -> position in `out`
  for (const auto& component : components) {
    const InverseTable& table = component.component == ModelComponent::UNet  ? unet_table
                                : component.component == ModelComponent::Vae ? vae_table
                                                                             : text_table;
    for (const auto& p : component.parameters) {
      const auto found = table.find(p.name);
      if (!found)
        throw Error(cat("no single-file key for ", component_name(component.component), " tensor '", p.name, "'"));
      const auto& [rule, key] = *found;
      auto [it, added] = index.emplace(key, out.size());
      if (added) out.push_back({key, p.shape, component.component, {}});
      LdmTensor& tensor = out[it->second];
      switch (rule.stored) {
        case Stored::Renamed: tensor.parts = {&p}; break;
        case Stored::Conv1x1:
          tensor.shape.insert(tensor.shape.end(), {1, 1});
          tensor.parts = {&p};
          break;
        case Stored::FusedBlock:
          if (tensor.parts.empty()) {
            tensor.parts.resize(3);
            tensor.shape[0] *= 3;
          }
          tensor.parts[std::size_t(rule.block)] = &p;
          break;
      }
    }
  }
  for (const auto& t : out)
    for (const auto* part : t.parts)
      if (part == nullptr) throw Error(cat("single-file tensor '", t.key, "' is missing one of its fused parts"));
  return out;
}

void check_ldm_round_trip(const weights::SafeTensorsFile& file, std::span<const ComponentParameters> components,
                          const weights::UNetConfig& unet, const weights::VaeConfig& vae,
                          const weights::TextEncoderConfig& text_encoder) {
  const weights::LdmMapping mapping = weights::map_ldm_checkpoint(file, unet, vae, text_encoder);
  const auto fail = [&](const std::string& what) {
    throw Error(cat(file.path().string(), ": the single file does not read back as the model written (", what,
                    "); this is a bug in sdgen's single-file layout"));
  };
  if (!mapping.unexpected_keys.empty()) fail(cat("unexpected key '", mapping.unexpected_keys.front(), "'"));
  if (!mapping.ignored_keys.empty()) fail(cat("ignored key '", mapping.ignored_keys.front(), "'"));
  for (const auto& component : components) {
    const weights::ComponentTensors& read = component.component == ModelComponent::UNet  ? mapping.unet
                                            : component.component == ModelComponent::Vae ? mapping.vae
                                                                                         : mapping.text_encoder;
    if (read.size() != component.parameters.size())
      fail(cat(component_name(component.component), ": ", read.size(), " tensors instead of ",
               component.parameters.size()));
    for (const auto& p : component.parameters) {
      const auto it = read.find(p.name);
      if (it == read.end()) fail(cat(component_name(component.component), " tensor '", p.name, "' is missing"));
      if (it->second.shape != p.shape)
        fail(cat(component_name(component.component), " tensor '", p.name, "' has shape ",
                 weights::shape_string(it->second.shape)));
    }
  }
}

}  // namespace sdgen::app
