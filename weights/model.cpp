// open_model(): from a path on the command line to typed configs and name -> bytes tables.
//
// Users hand sdgen whatever they downloaded, so most of this file is about saying precisely what
// is wrong with it. The order of the checks follows what a user would fix first: the path itself,
// its kind (folder, .safetensors, a pickle), the folder's layout (model_index.json, component
// folders, configs), the configs' contents, the agreement between the configs (the UNet must
// attend to the text encoder's width and denoise the VAE's latents), the tokenizer files, and only
// then the weights, whose headers SafeTensorsFile validates. Every message names the file, and the
// key or tensor, at fault.
//
// Weight files per diffusers component folder, in order of preference (WeightVariant flips the
// first two pairs): <stem>.safetensors, its sharded form <stem>.safetensors.index.json,
// <stem>.fp16.safetensors, <stem>.safetensors.index.fp16.json (diffusers' variant naming), where
// the stem is diffusion_pytorch_model (UNet, VAE) or model (text encoder). Sharding is supported
// because it costs little: the index's weight_map names the shards, each is mapped like a single
// file, and every entry of the map must be found in the shard it names.
#include "weights/model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "weights/file_io.hpp"
#include "weights/key_mapping.hpp"
#include "weights/presets.hpp"

namespace sdgen::weights {

// ---- TensorSource

std::int64_t TensorSource::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::span<const std::byte> TensorSource::bytes() const {
  const auto stored_bytes = file->bytes(*stored);
  const auto need = static_cast<std::size_t>(numel()) * dtype_size(dtype());
  // Sources are built by open_model from validated headers, so this only catches a bad view.
  if (byte_offset > stored_bytes.size() || need > stored_bytes.size() - byte_offset)
    throw ModelError(cat(file->path().string(), ": tensor '", stored->name, "': a view of ", need,
                         " bytes at offset ", byte_offset, " exceeds its ", stored_bytes.size(), " bytes"));
  return stored_bytes.subspan(byte_offset, need);
}

std::vector<float> TensorSource::to_f32() const {
  const auto b = bytes();
  std::vector<float> out(static_cast<std::size_t>(numel()));
  const auto halves = [&](float (*convert)(std::uint16_t)) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);  // memcpy: the bytes need not be 2-aligned
      out[i] = convert(h);
    }
  };
  switch (dtype()) {
    case DType::F32: std::memcpy(out.data(), b.data(), b.size()); break;
    case DType::F16: halves(f16_to_f32); break;
    case DType::BF16: halves(bf16_to_f32); break;
    default:
      throw ModelError(cat(file->path().string(), ": tensor '", stored->name, "' is ", dtype_name(dtype()),
                           "; a weight must be F32, F16 or BF16"));
  }
  return out;
}

ModelFamily model_family(const TextEncoderConfig& text_encoder) {
  return text_encoder.hidden_act == Activation::QuickGelu ? ModelFamily::SD1 : ModelFamily::SD2;
}

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- pickles

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext;
}

bool is_pickle_file(const fs::path& p) {
  const auto ext = lower_extension(p);
  return ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin" || ext == ".pkl";
}

constexpr const char* kPickleDanger =
    "is a PyTorch pickle file. sdgen does not load pickles: unpickling can execute arbitrary code "
    "hidden in the file.";

[[noreturn]] void refuse_pickle_checkpoint(const fs::path& file) {
  throw ModelError(cat(
      file.string(), " ", kPickleDanger,
      " Download the .safetensors version of the checkpoint instead (most model pages offer one), or "
      "convert it once, in a trusted environment, e.g. with diffusers' "
      "scripts/convert_original_stable_diffusion_to_diffusers.py --checkpoint_path ", file.string(),
      " --to_safetensors --dump_path <folder>, then pass that folder."));
}

[[noreturn]] void refuse_pickle_component(const fs::path& file) {
  throw ModelError(cat(
      file.string(), " ", kPickleDanger,
      " Download the .safetensors weights of this component from the same repository (e.g. "
      "diffusion_pytorch_model.safetensors or model.safetensors), or re-save the model in a trusted "
      "environment with pipe.save_pretrained(<folder>, safe_serialization=True)."));
}

// ---- configs

struct Component {
  const char* name;  // folder
  const char* stem;  // weight file name without extension
};
constexpr Component kUNet{"unet", "diffusion_pytorch_model"};
constexpr Component kVae{"vae", "diffusion_pytorch_model"};
constexpr Component kTextEncoder{"text_encoder", "model"};

// The configs of one model, with where each came from (for messages).
struct ConfigSet {
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
  SchedulerConfig scheduler;
  std::string unet_where, vae_where, text_encoder_where;
};

fs::path component_dir(const fs::path& dir, const Component& c) {
  const fs::path sub = dir / c.name;
  if (!fs::is_directory(sub))
    throw ModelError(cat(sub.string(), ": missing component folder (a diffusers model folder has unet/, vae/, "
                                       "text_encoder/, tokenizer/ and scheduler/)"));
  return sub;
}

std::string read_config(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw ModelError(cat(file.string(), ": missing config file"));
  return read_text_file(file, 16u << 20);
}

ConfigSet read_folder_configs(const fs::path& dir) {
  ConfigSet s;
  const fs::path unet = component_dir(dir, kUNet) / "config.json";
  const fs::path vae = component_dir(dir, kVae) / "config.json";
  const fs::path text = component_dir(dir, kTextEncoder) / "config.json";
  const fs::path scheduler_dir = dir / "scheduler";
  if (!fs::is_directory(scheduler_dir))
    throw ModelError(cat(scheduler_dir.string(), ": missing component folder (it holds scheduler_config.json)"));
  const fs::path scheduler = scheduler_dir / "scheduler_config.json";
  s.unet = parse_unet_config(read_config(unet), unet);
  s.vae = parse_vae_config(read_config(vae), vae);
  s.text_encoder = parse_text_encoder_config(read_config(text), text);
  s.scheduler = parse_scheduler_config(read_config(scheduler), scheduler);
  s.unet_where = unet.string();
  s.vae_where = vae.string();
  s.text_encoder_where = text.string();
  return s;
}

ConfigSet preset_configs(const Preset& p) {
  const std::string origin = cat("preset ", p.name, " (", p.hub_repo, ")");
  return {p.unet, p.vae, p.text_encoder, p.scheduler, origin + " unet", origin + " vae", origin + " text_encoder"};
}

// The three networks must fit together; diffusers would only fail deep inside a forward pass.
void check_configs_agree(const ConfigSet& s) {
  if (s.unet.cross_attention_dim != s.text_encoder.hidden_size)
    throw ModelError(cat(s.unet_where, ": \"cross_attention_dim\" is ", s.unet.cross_attention_dim,
                         " but the text encoder (", s.text_encoder_where, ") has \"hidden_size\" ",
                         s.text_encoder.hidden_size, "; the UNet cannot attend to its embeddings"));
  if (s.unet.in_channels != s.vae.latent_channels)
    throw ModelError(cat(s.unet_where, ": \"in_channels\" is ", s.unet.in_channels, " but the VAE (", s.vae_where,
                         ") has \"latent_channels\" ", s.vae.latent_channels,
                         "; a UNet with extra inputs (inpainting, depth) is not a text-to-image model"));
  if (s.unet.out_channels != s.vae.latent_channels)
    throw ModelError(cat(s.unet_where, ": \"out_channels\" is ", s.unet.out_channels, " but the VAE (", s.vae_where,
                         ") has \"latent_channels\" ", s.vae.latent_channels));
}

void apply_prediction_override(SchedulerConfig& scheduler, PredictionOverride prediction) {
  switch (prediction) {
    case PredictionOverride::FromConfig: break;
    case PredictionOverride::Epsilon: scheduler.prediction_type = "epsilon"; break;
    case PredictionOverride::VPrediction: scheduler.prediction_type = "v_prediction"; break;
  }
}

// The tokenizer folder must hold the BPE vocabulary; the tokenizer itself reads the rest.
void check_tokenizer_dir(const fs::path& dir, std::string_view how_to_fix) {
  if (!fs::is_directory(dir)) throw ModelError(cat(dir.string(), ": tokenizer folder not found; ", how_to_fix));
  for (const char* file : {"vocab.json", "merges.txt"})
    if (!fs::is_regular_file(dir / file))
      throw ModelError(cat(dir.string(), ": tokenizer folder has no ", file,
                           " (a CLIP tokenizer needs vocab.json and merges.txt); ", how_to_fix));
}

// ---- weights

// Maps one file and adds its tensors to `out`. A name seen twice (two shards) is an error.
const SafeTensorsFile& add_weight_file(OpenedModel& m, ComponentTensors& out, const fs::path& path) {
  const auto& file = *m.files.emplace_back(std::make_unique<SafeTensorsFile>(path));
  for (const auto& t : file.tensors()) {
    const auto [it, inserted] = out.emplace(t.name, TensorSource{&file, &t, t.shape, 0});
    if (!inserted)
      throw ModelError(cat(path.string(), ": tensor '", t.name, "' is also in ", it->second.file->path().string()));
  }
  return file;
}

void add_sharded_weights(OpenedModel& m, ComponentTensors& out, const fs::path& index_path) {
  const std::string text = read_text_file(index_path, 64u << 20);
  const json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object())
    throw ModelError(cat(index_path.string(), ": not a valid shard index (expected a JSON object)"));
  const auto map = index.find("weight_map");
  if (map == index.end() || !map->is_object() || map->empty())
    throw ModelError(cat(index_path.string(), ": \"weight_map\" must be a non-empty object of tensor -> file"));

  std::map<std::string, const SafeTensorsFile*> shards;
  for (const auto& [name, shard] : map->items()) {
    if (!shard.is_string())
      throw ModelError(cat(index_path.string(), ": \"weight_map\" entry '", name, "' is not a file name"));
    const std::string file_name = shard.get<std::string>();
    // Shards live beside the index: a path (or "..") could point anywhere on the disk.
    if (file_name.empty() || fs::path(file_name).filename() != file_name || file_name == "." ||
        file_name == ".." || !file_name.ends_with(".safetensors")) {
      if (is_pickle_file(file_name)) refuse_pickle_component(index_path.parent_path() / file_name);
      throw ModelError(cat(index_path.string(), ": \"weight_map\" entry '", name, "' names '", file_name,
                           "'; shards must be .safetensors files in the same folder"));
    }
    auto it = shards.find(file_name);
    if (it == shards.end()) {
      const fs::path shard_path = index_path.parent_path() / file_name;
      if (!fs::is_regular_file(shard_path))
        throw ModelError(cat(shard_path.string(), ": shard listed in ", index_path.filename().string(), " is missing"));
      it = shards.emplace(file_name, &add_weight_file(m, out, shard_path)).first;
    }
    const auto found = out.find(name);
    if (found == out.end() || found->second.file != it->second)
      throw ModelError(cat(index_path.string(), ": tensor '", name, "' is mapped to ", file_name,
                           ", which does not contain it"));
  }
}

// Finds and maps the weights of one diffusers component folder (see the top of this file).
ComponentTensors load_component(OpenedModel& m, const fs::path& dir, const Component& c, WeightVariant variant) {
  const std::string stem = c.stem;
  const std::array<fs::path, 2> full = {dir / (stem + ".safetensors"), dir / (stem + ".safetensors.index.json")};
  const std::array<fs::path, 2> fp16 = {dir / (stem + ".fp16.safetensors"),
                                        dir / (stem + ".safetensors.index.fp16.json")};
  const auto& first = variant == WeightVariant::FullPrecision ? full : fp16;
  const auto& second = variant == WeightVariant::FullPrecision ? fp16 : full;
  ComponentTensors out;
  for (const auto* group : {&first, &second}) {
    if (fs::is_regular_file((*group)[0])) {
      add_weight_file(m, out, (*group)[0]);
      return out;
    }
    if (fs::is_regular_file((*group)[1])) {
      add_sharded_weights(m, out, (*group)[1]);
      return out;
    }
  }
  // No safetensors: say so, and why not when the folder holds pickles instead.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file() && is_pickle_file(entry.path())) refuse_pickle_component(entry.path());
  throw ModelError(cat(dir.string(), ": no weights found (looked for ", full[0].filename().string(), ", ",
                       fp16[0].filename().string(), " and their sharded .index.json forms)"));
}

// ---- the two layouts

OpenedModel open_folder(const OpenOptions& o) {
  const fs::path& dir = o.model;
  if (o.config_dir)
    throw UsageError(cat("--config is for single-file checkpoints; ", dir.string(),
                         " is a model folder and brings its own configs"));
  const fs::path index_path = dir / "model_index.json";
  if (!fs::is_regular_file(index_path)) {
    if (fs::is_regular_file(dir / "config.json"))
      throw ModelError(cat(dir.string(), ": this is a single component's folder (it has config.json); pass the "
                                         "model folder above it, the one holding model_index.json"));
    throw ModelError(cat(index_path.string(), ": missing; a diffusers model folder holds model_index.json beside "
                                              "unet/, vae/, text_encoder/, tokenizer/ and scheduler/"));
  }
  parse_model_index(read_config(index_path), index_path);

  OpenedModel m;
  m.layout = ModelLayout::DiffusersFolder;
  m.source = dir;
  m.config_origin = "model folder";
  ConfigSet s = read_folder_configs(dir);
  check_configs_agree(s);
  apply_prediction_override(s.scheduler, o.prediction);

  m.tokenizer_dir = o.tokenizer_dir.value_or(dir / "tokenizer");
  check_tokenizer_dir(m.tokenizer_dir, o.tokenizer_dir ? "check the --tokenizer path"
                                                       : "copy the model repository's tokenizer/ folder there, "
                                                         "or pass --tokenizer DIR");
  m.unet_tensors = load_component(m, dir / kUNet.name, kUNet, o.variant);
  m.vae_tensors = load_component(m, dir / kVae.name, kVae, o.variant);
  m.text_encoder_tensors = load_component(m, dir / kTextEncoder.name, kTextEncoder, o.variant);
  m.unet = std::move(s.unet);
  m.vae = std::move(s.vae);
  m.text_encoder = std::move(s.text_encoder);
  m.scheduler = std::move(s.scheduler);
  m.family = model_family(m.text_encoder);
  return m;
}

OpenedModel open_single_file(const OpenOptions& o) {
  const fs::path& path = o.model;
  if (is_pickle_file(path)) refuse_pickle_checkpoint(path);
  if (lower_extension(path) != ".safetensors")
    throw UsageError(cat(path.string(), ": not a model sdgen can open; pass a diffusers model folder (with "
                                        "model_index.json) or a single-file .safetensors checkpoint"));
  OpenedModel m;
  m.layout = ModelLayout::SingleFile;
  m.source = path;
  const auto& file = *m.files.emplace_back(std::make_unique<SafeTensorsFile>(path));
  for (const auto& t : file.tensors())
    if (t.name.starts_with("conditioner.embedders."))
      throw ModelError(cat(path.string(), ": tensor '", t.name,
                           "' belongs to SDXL's text conditioner; sdgen runs SD 1.x/2.x checkpoints only"));
  const auto info = inspect_ldm_checkpoint(file);
  if (!info)
    throw ModelError(cat(path.string(), ": not a single-file Stable Diffusion checkpoint (no "
                                        "model.diffusion_model.* tensors). A diffusers component file cannot be "
                                        "opened alone: pass the model folder that holds model_index.json"));

  ConfigSet s;
  std::string tokenizer_hint;
  if (o.config_dir) {
    const fs::path& dir = *o.config_dir;
    if (!fs::is_directory(dir)) throw UsageError(cat(dir.string(), ": --config folder not found"));
    if (fs::is_regular_file(dir / "model_index.json"))
      parse_model_index(read_config(dir / "model_index.json"), dir / "model_index.json");
    s = read_folder_configs(dir);
    m.config_origin = cat("config folder ", dir.string());
    tokenizer_hint = cat("pass --tokenizer DIR, or add a tokenizer/ folder to ", dir.string());
  } else {
    const Preset& p = get_preset(choose_preset(*info, o.prediction));
    s = preset_configs(p);
    m.config_origin = cat("preset ", p.name);
    tokenizer_hint = cat("pass --tokenizer DIR with the tokenizer/ folder of the diffusers repository ", p.hub_repo,
                         " (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json; it pads with \"",
                         p.tokenizer_pad_token, "\"), or --config DIR with a diffusers folder that has one");
  }
  // The tokenizer first: a user with a freshly downloaded checkpoint needs this flag before anything.
  if (o.tokenizer_dir) {
    m.tokenizer_dir = *o.tokenizer_dir;
    check_tokenizer_dir(m.tokenizer_dir, "check the --tokenizer path");
  } else if (o.config_dir && fs::is_directory(*o.config_dir / "tokenizer")) {
    m.tokenizer_dir = *o.config_dir / "tokenizer";
    check_tokenizer_dir(m.tokenizer_dir, tokenizer_hint);
  } else {
    throw UsageError(cat(path.string(), " is a single-file checkpoint and carries no tokenizer: ", tokenizer_hint));
  }

  if (info->text_hidden_size != 0 && info->text_hidden_size != s.text_encoder.hidden_size)
    throw ModelError(cat(path.string(), ": its text encoder is ", info->text_hidden_size, " wide but ",
                         s.text_encoder_where, " has \"hidden_size\" ", s.text_encoder.hidden_size,
                         "; pass --config with the configs of the model this checkpoint was made from"));
  check_configs_agree(s);
  apply_prediction_override(s.scheduler, o.prediction);

  LdmMapping mapping = map_ldm_checkpoint(file, s.unet, s.vae, s.text_encoder);
  if (!mapping.unexpected_keys.empty()) {
    std::string names;
    for (std::size_t i = 0; i < std::min<std::size_t>(mapping.unexpected_keys.size(), 5); ++i)
      names += (i ? ", " : "") + mapping.unexpected_keys[i];
    throw ModelError(cat(path.string(), ": ", mapping.unexpected_keys.size(),
                         " tensors belong to no part of an SD 1.x/2.x model with the ", m.config_origin,
                         " configs (", names, mapping.unexpected_keys.size() > 5 ? ", ..." : "",
                         "); is this checkpoint another kind of model, or does it need --config?"));
  }
  m.unet_tensors = std::move(mapping.unet);
  m.vae_tensors = std::move(mapping.vae);
  m.text_encoder_tensors = std::move(mapping.text_encoder);
  m.ignored_keys = std::move(mapping.ignored_keys);
  m.unet = std::move(s.unet);
  m.vae = std::move(s.vae);
  m.text_encoder = std::move(s.text_encoder);
  m.scheduler = std::move(s.scheduler);
  m.family = model_family(m.text_encoder);
  return m;
}

}  // namespace

OpenedModel open_model(const OpenOptions& options) {
  std::error_code ec;
  const auto status = fs::status(options.model, ec);
  if (options.model.empty() || !fs::exists(status))
    throw UsageError(cat("model path '", options.model.string(), "' does not exist"));
  if (fs::is_directory(status)) return open_folder(options);
  if (!fs::is_regular_file(status))
    throw UsageError(cat("model path '", options.model.string(), "' is neither a folder nor a file"));
  return open_single_file(options);
}

}  // namespace sdgen::weights
