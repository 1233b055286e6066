// Parsers of the diffusers/transformers config.json files into the typed structs of configs.hpp.
//
// The files are untrusted and written by many tools over several diffusers versions, so each key
// is read through one small reader that knows the file's name: absent and null both mean "the
// library default" (diffusers writes null for unset optionals), a wrong JSON type or an
// out-of-range value is a ModelError naming the file and the key, and keys that select a feature
// sdgen does not implement are refused with the reason. Unknown keys are ignored: hub configs carry
// training-only keys (dropout, initializer_range, ...) and keys of newer diffusers versions whose
// defaults leave the SD architecture unchanged.
//
// After reading, each parser checks what the model code relies on and diffusers checks at model
// construction: per-block lists as long as the block list, positive sizes, channels divisible by
// the GroupNorm groups and by the attention heads.
#include "weights/configs.hpp"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "lib/core/error.hpp"

namespace sdgen::weights {

namespace {

using json = nlohmann::json;

// Reads typed values out of one config file's top-level object.
class ConfigReader {
 public:
  ConfigReader(std::string_view text, const std::filesystem::path& where) : where_(where.string()) {
    root_ = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (root_.is_discarded()) throw ModelError(cat(where_, ": not valid JSON"));
    if (!root_.is_object()) throw ModelError(cat(where_, ": expected a JSON object at the top level"));
  }

  const std::string& where() const { return where_; }
  const json& root() const { return root_; }

  // The value of `key`, or nullptr when it is absent or null.
  const json* find(std::string_view key) const {
    const auto it = root_.find(key);
    return (it == root_.end() || it->is_null()) ? nullptr : &*it;
  }

  [[noreturn]] void fail(std::string_view key, std::string_view problem) const {
    throw ModelError(cat(where_, ": \"", key, "\" ", problem));
  }

  int get_int(std::string_view key, int fallback) const {
    const json* v = find(key);
    return v ? to_int(key, *v) : fallback;
  }
  int get_positive_int(std::string_view key, int fallback) const {
    const int v = get_int(key, fallback);
    if (v <= 0) fail(key, cat("must be positive, got ", v));
    return v;
  }
  double get_double(std::string_view key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, cat("must be a number, got ", v->dump()));
    const double d = v->get<double>();
    if (!std::isfinite(d)) fail(key, "must be finite");
    return d;
  }
  double get_positive_double(std::string_view key, double fallback) const {
    const double v = get_double(key, fallback);
    if (!(v > 0)) fail(key, cat("must be positive, got ", v));
    return v;
  }
  bool get_bool(std::string_view key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, cat("must be true or false, got ", v->dump()));
    return v->get<bool>();
  }
  std::optional<std::string> get_string(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, cat("must be a string, got ", v->dump()));
    return v->get<std::string>();
  }
  std::vector<std::string> get_string_list(std::string_view key,
                                           const std::vector<std::string>& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_array() || v->empty()) fail(key, "must be a non-empty list of strings");
    std::vector<std::string> out;
    for (const auto& e : *v) {
      if (!e.is_string()) fail(key, cat("must be a list of strings, got ", v->dump()));
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  std::vector<int> get_positive_int_list(std::string_view key, const std::vector<int>& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_array() || v->empty()) fail(key, "must be a non-empty list of integers");
    std::vector<int> out;
    for (const auto& e : *v) out.push_back(positive(key, to_int(key, e)));
    return out;
  }
  // diffusers' int-or-tuple fields: one value for every block, or exactly one value per block.
  std::vector<int> get_per_block(std::string_view key, int fallback, std::size_t blocks,
                                 std::string_view blocks_key) const {
    const json* v = find(key);
    if (!v) return std::vector<int>(blocks, fallback);
    if (!v->is_array()) return std::vector<int>(blocks, positive(key, to_int(key, *v)));
    if (v->size() != blocks)
      fail(key, cat("has ", v->size(), " entries but \"", blocks_key, "\" has ", blocks,
                    " blocks; give one value per block or a single value"));
    std::vector<int> out;
    for (const auto& e : *v) {
      if (e.is_array())
        fail(key, "holds nested lists (per-layer values, an SDXL-style layout), which sdgen does not support");
      out.push_back(positive(key, to_int(key, e)));
    }
    return out;
  }

  // Refusals: keys that must be absent/null, or hold their default, for sdgen to run the model.
  void require_null(std::string_view key, std::string_view why) const {
    if (const json* v = find(key)) fail(key, cat("is ", v->dump(), ": ", why));
  }
  void require_bool(std::string_view key, bool expected, std::string_view why) const {
    if (get_bool(key, expected) != expected) fail(key, cat("is ", expected ? "false" : "true", ": ", why));
  }
  void require_string(std::string_view key, std::string_view expected, std::string_view why) const {
    const auto v = get_string(key);
    if (v && *v != expected) fail(key, cat("is \"", *v, "\": ", why));
  }
  void require_number(std::string_view key, double expected, std::string_view why) const {
    const double v = get_double(key, expected);
    if (v != expected) fail(key, cat("is ", v, ": ", why));
  }
  // "_class_name" names the class the file configures; another class means another model.
  void require_class(std::string_view expected) const {
    const auto v = get_string("_class_name");
    if (v && *v != expected)
      fail("_class_name", cat("is \"", *v, "\" but sdgen expects \"", expected, "\" here"));
  }

 private:
  int to_int(std::string_view key, const json& v) const {
    // Integral floats (4.0) are accepted: some tools write every number as a float.
    if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max())
        fail(key, cat("is out of range: ", i));
      return static_cast<int>(i);
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::trunc(d) == d && std::abs(d) <= std::numeric_limits<int>::max()) return static_cast<int>(d);
    }
    fail(key, cat("must be an integer, got ", v.dump()));
  }
  int positive(std::string_view key, int v) const {
    if (v <= 0) fail(key, cat("must hold positive values, got ", v));
    return v;
  }

  std::string where_;
  json root_;
};

std::string list_string(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// act_fn of diffusers models: the activations its get_activation() knows that sdgen implements.
Activation diffusers_activation(const ConfigReader& r, std::string_view key) {
  const auto v = r.get_string(key).value_or("silu");
  if (v == "silu" || v == "swish") return Activation::Silu;
  if (v == "gelu") return Activation::Gelu;
  r.fail(key, cat("is \"", v, "\"; sdgen supports \"silu\" (\"swish\") and \"gelu\""));
}

void check_divisible_by_groups(const ConfigReader& r, const std::vector<int>& channels, int groups) {
  for (int c : channels)
    if (c % groups != 0)
      r.fail("block_out_channels", cat(list_string(channels), " has ", c,
                                       " channels, which GroupNorm cannot split into \"norm_num_groups\" ",
                                       groups, " groups"));
}

}  // namespace

// ---- UNet2DConditionModel

UNetConfig parse_unet_config(std::string_view json_text, const std::filesystem::path& where) {
  const ConfigReader r(json_text, where);
  r.require_class("UNet2DConditionModel");

  // Features of later or other UNets that SD 1.x/2.x never use.
  r.require_null("addition_embed_type",
                 "added text/time conditioning is SDXL's (or Kandinsky's); sdgen runs SD 1.x/2.x only");
  r.require_null("class_embed_type", "class-conditioned UNets (e.g. the SD 2.x x4 upscaler) are not supported");
  r.require_null("num_class_embeds", "class-conditioned UNets are not supported");
  r.require_null("encoder_hid_dim", "a projection of the text embeddings is not supported");
  r.require_null("encoder_hid_dim_type", "a projection of the text embeddings is not supported");
  r.require_null("time_cond_proj_dim", "timestep conditioning (LCM-distilled UNets) is not supported");
  r.require_null("time_embedding_act_fn", "an extra time-embedding activation is not supported");
  r.require_null("timestep_post_act", "an activation after the time embedding is not supported");
  r.require_null("cross_attention_norm", "normalised cross-attention inputs are not supported");
  r.require_null("reverse_transformer_layers_per_block", "per-layer up-block depths (SDXL-style) are not supported");
  r.require_bool("center_input_sample", false, "input centring is not supported");
  r.require_bool("dual_cross_attention", false, "dual cross-attention is not supported");
  r.require_bool("resnet_skip_time_act", false, "only the standard ResNet time path is supported");
  r.require_string("resnet_time_scale_shift", "default", "only \"default\" (additive) time conditioning is supported");
  r.require_string("time_embedding_type", "positional", "only \"positional\" (sinusoidal) time embeddings are supported");
  r.require_string("attention_type", "default", "only \"default\" attention is supported");
  r.require_string("mid_block_type", "UNetMidBlock2DCrossAttn", "only UNetMidBlock2DCrossAttn is supported");
  if (r.root().contains("mid_block_type") && r.root()["mid_block_type"].is_null())
    r.fail("mid_block_type", "is null (a UNet without a mid block), which sdgen does not support");
  r.require_number("resnet_out_scale_factor", 1.0, "only unscaled ResNet outputs are supported");

  UNetConfig c;
  c.sample_size = r.get_positive_int("sample_size", c.sample_size);
  c.in_channels = r.get_positive_int("in_channels", c.in_channels);
  c.out_channels = r.get_positive_int("out_channels", c.out_channels);
  c.flip_sin_to_cos = r.get_bool("flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = r.get_int("freq_shift", c.freq_shift);

  c.down_block_types.clear();
  for (const auto& t : r.get_string_list("down_block_types",
                                         {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                          "CrossAttnDownBlock2D", "DownBlock2D"})) {
    if (t == "CrossAttnDownBlock2D") c.down_block_types.push_back(DownBlockType::CrossAttnDownBlock2D);
    else if (t == "DownBlock2D") c.down_block_types.push_back(DownBlockType::DownBlock2D);
    else r.fail("down_block_types", cat("has \"", t, "\"; sdgen supports CrossAttnDownBlock2D and DownBlock2D"));
  }
  c.up_block_types.clear();
  for (const auto& t : r.get_string_list("up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D",
                                                            "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"})) {
    if (t == "CrossAttnUpBlock2D") c.up_block_types.push_back(UpBlockType::CrossAttnUpBlock2D);
    else if (t == "UpBlock2D") c.up_block_types.push_back(UpBlockType::UpBlock2D);
    else r.fail("up_block_types", cat("has \"", t, "\"; sdgen supports CrossAttnUpBlock2D and UpBlock2D"));
  }
  const std::size_t blocks = c.down_block_types.size();
  if (c.up_block_types.size() != blocks)
    r.fail("up_block_types", cat("has ", c.up_block_types.size(), " blocks but \"down_block_types\" has ", blocks));

  c.block_out_channels = r.get_positive_int_list("block_out_channels", c.block_out_channels);
  if (c.block_out_channels.size() != blocks)
    r.fail("block_out_channels", cat("has ", c.block_out_channels.size(),
                                     " entries but \"down_block_types\" has ", blocks, " blocks"));
  c.layers_per_block = r.get_per_block("layers_per_block", 2, blocks, "down_block_types");
  c.transformer_layers_per_block = r.get_per_block("transformer_layers_per_block", 1, blocks, "down_block_types");

  // The head-count quirk: diffusers computes `num_attention_heads or attention_head_dim`, because
  // the released SD configs wrote the number of heads under the name attention_head_dim.
  const char* heads_key = r.find("num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
  c.attention_heads = r.get_per_block(heads_key, 8, blocks, "down_block_types");

  if (const json* v = r.find("cross_attention_dim"); v && v->is_array())
    r.fail("cross_attention_dim", "is a per-block list; sdgen supports a single value");
  c.cross_attention_dim = r.get_positive_int("cross_attention_dim", c.cross_attention_dim);
  c.use_linear_projection = r.get_bool("use_linear_projection", c.use_linear_projection);
  c.upcast_attention = r.get_bool("upcast_attention", c.upcast_attention);

  // only_cross_attention may be per block; sdgen supports the same value everywhere.
  if (const json* v = r.find("only_cross_attention"); v && v->is_array()) {
    for (const auto& e : *v)
      if (!e.is_boolean() || e != v->front())
        r.fail("only_cross_attention", cat("is ", v->dump(), "; sdgen supports one value for all blocks"));
    c.only_cross_attention = !v->empty() && v->front().get<bool>();
  } else {
    c.only_cross_attention = r.get_bool("only_cross_attention", c.only_cross_attention);
  }
  if (r.get_bool("mid_block_only_cross_attention", c.only_cross_attention) != c.only_cross_attention)
    r.fail("mid_block_only_cross_attention", "differs from \"only_cross_attention\", which sdgen does not support");

  if (r.root().contains("norm_num_groups") && r.root()["norm_num_groups"].is_null())
    r.fail("norm_num_groups", "is null (a UNet without GroupNorm), which sdgen does not support");
  c.norm_num_groups = r.get_positive_int("norm_num_groups", c.norm_num_groups);
  c.norm_eps = r.get_positive_double("norm_eps", c.norm_eps);
  c.act_fn = diffusers_activation(r, "act_fn");
  c.downsample_padding = r.get_int("downsample_padding", c.downsample_padding);
  if (c.downsample_padding < 0) r.fail("downsample_padding", "must not be negative");
  c.mid_block_scale_factor = r.get_positive_double("mid_block_scale_factor", c.mid_block_scale_factor);
  c.conv_in_kernel = r.get_positive_int("conv_in_kernel", c.conv_in_kernel);
  c.conv_out_kernel = r.get_positive_int("conv_out_kernel", c.conv_out_kernel);
  // diffusers pads (k - 1) / 2, which keeps the size only for odd kernels.
  if (c.conv_in_kernel % 2 == 0) r.fail("conv_in_kernel", cat("is ", c.conv_in_kernel, "; it must be odd"));
  if (c.conv_out_kernel % 2 == 0) r.fail("conv_out_kernel", cat("is ", c.conv_out_kernel, "; it must be odd"));
  // The default time_embedding_dim is 4x the first width, which must not overflow an int.
  if (c.block_out_channels[0] > std::numeric_limits<int>::max() / 4)
    r.fail("block_out_channels", cat("starts with ", c.block_out_channels[0], ", far too wide for a UNet"));
  c.time_embedding_dim = r.get_positive_int("time_embedding_dim", c.block_out_channels[0] * 4);

  check_divisible_by_groups(r, c.block_out_channels, c.norm_num_groups);
  // Attention runs in down block i, in up block (blocks - 1 - i) (same width and heads: both
  // lists are reversed for the up path) and, for the last width, in the mid block.
  for (std::size_t i = 0; i < blocks; ++i) {
    const bool attends = c.down_block_types[i] == DownBlockType::CrossAttnDownBlock2D ||
                         c.up_block_types[blocks - 1 - i] == UpBlockType::CrossAttnUpBlock2D ||
                         i == blocks - 1;
    if (attends && c.block_out_channels[i] % c.attention_heads[i] != 0)
      r.fail(heads_key, cat("gives ", c.attention_heads[i], " heads to block ", i, " of ",
                            c.block_out_channels[i], " channels, which is not a whole head size"));
  }
  return c;
}

// ---- AutoencoderKL

VaeConfig parse_vae_config(std::string_view json_text, const std::filesystem::path& where) {
  const ConfigReader r(json_text, where);
  r.require_class("AutoencoderKL");

  VaeConfig c;
  c.in_channels = r.get_positive_int("in_channels", c.in_channels);
  c.out_channels = r.get_positive_int("out_channels", c.out_channels);
  c.latent_channels = r.get_positive_int("latent_channels", c.latent_channels);
  c.block_out_channels = r.get_positive_int_list("block_out_channels", c.block_out_channels);
  const std::size_t blocks = c.block_out_channels.size();
  const auto down = r.get_string_list("down_block_types", {"DownEncoderBlock2D"});
  const auto up = r.get_string_list("up_block_types", {"UpDecoderBlock2D"});
  for (const auto& t : down)
    if (t != "DownEncoderBlock2D") r.fail("down_block_types", cat("has \"", t, "\"; sdgen supports DownEncoderBlock2D"));
  for (const auto& t : up)
    if (t != "UpDecoderBlock2D") r.fail("up_block_types", cat("has \"", t, "\"; sdgen supports UpDecoderBlock2D"));
  if (down.size() != blocks)
    r.fail("down_block_types", cat("has ", down.size(), " blocks but \"block_out_channels\" has ", blocks, " entries"));
  if (up.size() != blocks)
    r.fail("up_block_types", cat("has ", up.size(), " blocks but \"block_out_channels\" has ", blocks, " entries"));
  c.layers_per_block = r.get_positive_int("layers_per_block", c.layers_per_block);
  c.norm_num_groups = r.get_positive_int("norm_num_groups", c.norm_num_groups);
  c.act_fn = diffusers_activation(r, "act_fn");
  c.sample_size = r.get_positive_int("sample_size", c.sample_size);
  c.scaling_factor = r.get_positive_double("scaling_factor", c.scaling_factor);
  if (r.find("shift_factor")) c.shift_factor = r.get_double("shift_factor", 0.0);
  c.mid_block_add_attention = r.get_bool("mid_block_add_attention", c.mid_block_add_attention);
  c.use_quant_conv = r.get_bool("use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = r.get_bool("use_post_quant_conv", c.use_post_quant_conv);
  c.force_upcast = r.get_bool("force_upcast", c.force_upcast);
  check_divisible_by_groups(r, c.block_out_channels, c.norm_num_groups);
  return c;
}

// ---- CLIPTextModel

TextEncoderConfig parse_text_encoder_config(std::string_view json_text, const std::filesystem::path& where) {
  const ConfigReader r(json_text, where);
  // A full CLIPConfig ("clip", with text_config/vision_config) or another model family would
  // parse into nonsense here, so the declared type is checked when the file declares one.
  r.require_string("model_type", "clip_text_model",
                   "sdgen expects the config of a CLIP text model (model_type \"clip_text_model\")");
  if (const json* a = r.find("architectures")) {
    bool clip_text = false;
    if (a->is_array())
      for (const auto& e : *a)
        clip_text = clip_text || e == "CLIPTextModel" || e == "CLIPTextModelWithProjection";
    if (!clip_text) r.fail("architectures", cat("is ", a->dump(), "; sdgen expects CLIPTextModel"));
  }

  TextEncoderConfig c;
  c.vocab_size = r.get_positive_int("vocab_size", c.vocab_size);
  c.hidden_size = r.get_positive_int("hidden_size", c.hidden_size);
  c.intermediate_size = r.get_positive_int("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = r.get_positive_int("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = r.get_positive_int("num_attention_heads", c.num_attention_heads);
  c.max_position_embeddings = r.get_positive_int("max_position_embeddings", c.max_position_embeddings);
  c.layer_norm_eps = r.get_positive_double("layer_norm_eps", c.layer_norm_eps);
  c.projection_dim = r.get_positive_int("projection_dim", c.projection_dim);
  const auto act = r.get_string("hidden_act").value_or("quick_gelu");
  if (act == "quick_gelu") c.hidden_act = Activation::QuickGelu;
  else if (act == "gelu") c.hidden_act = Activation::Gelu;
  else r.fail("hidden_act", cat("is \"", act, "\"; sdgen supports \"quick_gelu\" (OpenAI CLIP) and \"gelu\" (OpenCLIP)"));
  if (c.hidden_size % c.num_attention_heads != 0)
    r.fail("num_attention_heads", cat("is ", c.num_attention_heads, ", which does not divide \"hidden_size\" ",
                                      c.hidden_size));
  return c;
}

// ---- model_index.json

ModelIndex parse_model_index(std::string_view json_text, const std::filesystem::path& where) {
  const ConfigReader r(json_text, where);
  ModelIndex index;
  index.pipeline_class = r.get_string("_class_name").value_or("");
  for (const auto& [name, value] : r.root().items()) {
    if (name.starts_with("_") || !value.is_array()) continue;  // metadata, flags
    if (value.size() != 2) r.fail(name, cat("must be a [library, class] pair, got ", value.dump()));
    if (value[0].is_null() && value[1].is_null()) continue;  // a component this pipeline omits
    if (!value[0].is_string() || !value[1].is_string())
      r.fail(name, cat("must be a [library, class] pair of strings, got ", value.dump()));
    index.components.push_back({name, value[0].get<std::string>(), value[1].get<std::string>()});
  }

  const auto find = [&](std::string_view name) -> const ModelIndexEntry* {
    for (const auto& e : index.components)
      if (e.name == name) return &e;
    return nullptr;
  };
  for (const char* sdxl : {"text_encoder_2", "tokenizer_2"})
    if (find(sdxl))
      r.fail(sdxl, "is present: a second text encoder is SDXL's; sdgen runs SD 1.x/2.x only");
  struct Required {
    const char* name;
    std::vector<std::string_view> classes;  // empty: any (checked by that component's own parser)
  };
  const Required required[] = {
      {"unet", {"UNet2DConditionModel"}},
      {"vae", {"AutoencoderKL"}},
      {"text_encoder", {"CLIPTextModel", "CLIPTextModelWithProjection"}},
      {"tokenizer", {"CLIPTokenizer", "CLIPTokenizerFast"}},
      {"scheduler", {}},
  };
  for (const auto& req : required) {
    const ModelIndexEntry* e = find(req.name);
    if (!e) r.fail(req.name, "is missing: a Stable Diffusion pipeline needs it");
    bool known = req.classes.empty();
    for (auto cls : req.classes) known = known || e->class_name == cls;
    if (!known) r.fail(req.name, cat("is a ", e->class_name, ", which sdgen cannot run"));
  }
  return index;
}

}  // namespace sdgen::weights
