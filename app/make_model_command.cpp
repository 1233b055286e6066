// `sdgen make-model`: a model with the real architecture and random weights, written in the
// diffusers layout (and, on request, as an LDM single file), so that full-size speed and memory can
// be measured, and the loaders exercised, without downloading 4 GB.
//
//   sdgen make-model --preset sd15 --seed 0 -o models/sd15-random [--single-file sd15.safetensors]
//                    [--dtype fp32|fp16|bf16] [--tokenizer DIR]
//
// What goes into the folder:
//   * configs: the preset's (weights/presets.hpp: SD 1.5, 2.1, 2.1-base, as the hub repositories
//     define them) or the tiny test models' (compiled into the binary from tests/data/models, see
//     app/CMakeLists.txt), written by model_config_json.hpp;
//   * weights: every tensor the module structs of lib/models visit, under its diffusers name and
//     shape, with seeded values (lib/models/random_weights.hpp), streamed to disk one tensor at a
//     time (SD 1.5 in fp32 is 4.3 GB; the peak is its largest tensor, 150 MB);
//   * a tokenizer: the tiny models' own 1180-token vocabulary (compiled in; SD 1.x-style models get
//     the tiny model's files, SD 2.x-style ones tiny-sd2's, which pad with "!" as OpenCLIP does), or
//     the files of --tokenizer DIR, e.g. a real CLIP tokenizer folder. Prompts tokenize to ids
//     within every preset's vocab_size either way.
//
// The folder is assembled under a temporary name beside DIR and renamed into place at the end, so
// an interrupted run leaves no half-made model; DIR may not exist yet, or be an empty directory,
// and is never overwritten. The single file holds the same values (they depend only on the seed
// and the tensor's name) under LDM keys (app/ldm_export.hpp) and is checked by reading it back
// through the single-file loader's own key mapping before the command reports success.
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "app/embedded_files.hpp"
#include "app/ldm_export.hpp"
#include "app/model_config_json.hpp"
#include "app/output_paths.hpp"
#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/models/random_weights.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/vae.hpp"
#include "weights/file_io.hpp"
#include "weights/presets.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::app {

namespace {

namespace fs = std::filesystem;

// ---- presets

struct PresetEntry {
  std::string_view name;
  std::string_view summary;
  std::optional<weights::PresetId> released;  // a released model's configs; else a tiny model's
  std::string_view tiny_model;                // configs (tiny presets) and tokenizer: tests/data/models/<this>
};

constexpr std::array<PresetEntry, 5> kPresets = {{
    {"tiny", "the tiny SD 1.x-style test model (1.1 M UNet parameters)", std::nullopt, "tiny"},
    {"tiny-sd2", "the tiny SD 2.x-style test model (v-prediction, linear projections)", std::nullopt, "tiny-sd2"},
    {"sd15", "Stable Diffusion 1.5 (512 px)", weights::PresetId::SD15, "tiny"},
    {"sd21", "Stable Diffusion 2.1 (768 px, v-prediction)", weights::PresetId::SD21, "tiny-sd2"},
    {"sd21-base", "Stable Diffusion 2.1-base (512 px)", weights::PresetId::SD21Base, "tiny-sd2"},
}};

struct ModelConfigs {
  weights::UNetConfig unet;
  weights::VaeConfig vae;
  weights::TextEncoderConfig text_encoder;
  weights::SchedulerConfig scheduler;
};

std::string_view embedded(std::string_view path) {
  for (const EmbeddedFile& f : embedded_files())
    if (f.path == path) return f.bytes;
  throw Error(cat("this sdgen binary lacks its embedded file ", path));
}

ModelConfigs configs_of(const PresetEntry& preset) {
  if (preset.released) {
    const weights::Preset& p = weights::get_preset(*preset.released);
    return {p.unet, p.vae, p.text_encoder, p.scheduler};
  }
  const auto file = [&](std::string_view relative) {
    const std::string path = cat(preset.tiny_model, "/", relative);
    return std::pair{embedded(path), fs::path("(embedded) " + path)};
  };
  const auto [unet, unet_where] = file("unet/config.json");
  const auto [vae, vae_where] = file("vae/config.json");
  const auto [text, text_where] = file("text_encoder/config.json");
  const auto [scheduler, scheduler_where] = file("scheduler/scheduler_config.json");
  return {weights::parse_unet_config(unet, unet_where), weights::parse_vae_config(vae, vae_where),
          weights::parse_text_encoder_config(text, text_where),
          weights::parse_scheduler_config(scheduler, scheduler_where)};
}

// ---- options

struct MakeModelArgs {
  std::string preset;
  std::uint64_t seed = 0;
  std::string output;
  std::string single_file;
  std::string dtype = "fp32";
  std::string tokenizer;
};

DType dtype_of(const std::string& name) {
  if (name == "fp16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  return DType::F32;
}

// DIR without a trailing separator, so that its name and parent are what they look like.
fs::path without_trailing_separator(fs::path dir) {
  if (!dir.has_filename() && dir.has_parent_path()) dir = dir.parent_path();
  return dir;
}

// Checks everything that can be checked before writing a byte; creates DIR's parents.
void check_destinations(const fs::path& dir, const std::optional<fs::path>& single_file,
                        const std::optional<fs::path>& tokenizer) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw UsageError(cat("-o ", dir.string(), " exists and is not a directory"));
    if (!fs::is_empty(dir, ec))
      throw UsageError(cat("-o ", dir.string(), " is not empty; make-model writes a new model folder and never "
                           "overwrites one"));
  }
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  check_output_directory(parent);
  if (single_file) {
    if (fs::exists(fs::symlink_status(*single_file, ec)))
      throw UsageError(cat("--single-file ", single_file->string(), " already exists; make-model never overwrites it"));
    check_output_directory(single_file->has_parent_path() ? single_file->parent_path() : fs::path("."));
  }
  if (tokenizer)
    for (const char* required : {"vocab.json", "merges.txt"})
      if (!fs::is_regular_file(*tokenizer / required, ec))
        throw UsageError(cat("--tokenizer ", tokenizer->string(), " has no ", required));
}

// A directory that is removed with its contents unless commit() renamed it into place.
class StagingDirectory {
 public:
  explicit StagingDirectory(const fs::path& final_path) : final_(final_path) {
    const fs::path parent = final_.has_parent_path() ? final_.parent_path() : fs::path(".");
    std::string pattern = (parent / cat(".", final_.filename().string(), ".tmp-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw Error(cat("cannot create a temporary folder beside ", final_.string(), ": ", std::strerror(errno)));
    path_ = pattern;
    // mkdtemp makes it private (0700); the model folder is an ordinary one, like the files in it.
    fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  }
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;
  ~StagingDirectory() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }

  const fs::path& path() const { return path_; }

  // Renames the finished folder to its final name (over an empty directory, as rename(2) allows).
  void commit() {
    std::error_code ec;
    fs::rename(path_, final_, ec);
    if (ec) throw Error(cat("cannot move the finished model into ", final_.string(), ": ", ec.message()));
    path_.clear();
  }

 private:
  fs::path final_;
  fs::path path_;
};

void write_text(const fs::path& path, std::string_view text) {
  fs::create_directories(path.parent_path());
  weights::write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

// ---- tensors

const char* seed_salt(ModelComponent c) {
  switch (c) {
    case ModelComponent::UNet: return "unet";
    case ModelComponent::Vae: return "vae";
    case ModelComponent::TextEncoder: return "text_encoder";
  }
  return "?";
}

// Fills `out` with the parameter's values in `dtype`, converting in small pieces.
void produce_values(std::uint64_t seed, ModelComponent component, const models::RandomParameter& parameter,
                    DType dtype, std::span<std::byte> out) {
  models::RandomValues values(seed, seed_salt(component), parameter);
  std::array<float, 4096> piece;
  const std::size_t element = dtype_size(dtype);
  const auto count = static_cast<std::size_t>(parameter.numel());
  for (std::size_t done = 0; done < count;) {
    const std::size_t n = std::min(piece.size(), count - done);
    values.next(std::span(piece.data(), n));
    std::byte* dst = out.data() + done * element;
    for (std::size_t i = 0; i < n; ++i) {
      // safetensors is little-endian, like every host sdgen builds for.
      if (dtype == DType::F32) {
        std::memcpy(dst + 4 * i, &piece[i], 4);
      } else {
        const std::uint16_t bits = dtype == DType::F16 ? f32_to_f16(piece[i]) : f32_to_bf16(piece[i]);
        std::memcpy(dst + 2 * i, &bits, 2);
      }
    }
    done += n;
  }
}

std::int64_t parameter_count(const ComponentParameters& c) {
  std::int64_t n = 0;
  for (const auto& p : c.parameters) n += p.numel();
  return n;
}

std::string size_text(std::uintmax_t bytes) {
  char text[32];
  if (bytes >= 1000000000)
    std::snprintf(text, sizeof text, "%.2f GB", double(bytes) / 1e9);
  else
    std::snprintf(text, sizeof text, "%.1f MB", double(bytes) / 1e6);
  return text;
}

const std::map<std::string, std::string> kMetadata = {{"format", "pt"}};  // transformers requires it

void write_component(const fs::path& file, const ComponentParameters& c, std::uint64_t seed, DType dtype) {
  std::vector<weights::TensorProducer> tensors;
  for (const auto& p : c.parameters)
    tensors.push_back({p.name, dtype, p.shape, [&, component = c.component](std::span<std::byte> out) {
                         produce_values(seed, component, p, dtype, out);
                       }});
  fs::create_directories(file.parent_path());
  weights::write_safetensors_streaming(file, tensors, kMetadata);
  std::printf("%s: %zu tensors, %.2f M parameters\n", seed_salt(c.component), c.parameters.size(),
              double(parameter_count(c)) / 1e6);
  std::fflush(stdout);
}

void write_single_file(const fs::path& file, std::span<const ComponentParameters> components,
                       const ModelConfigs& configs, std::uint64_t seed, DType dtype) {
  const auto layout = weights::model_family(configs.text_encoder) == weights::ModelFamily::SD2
                          ? weights::LdmTextEncoder::OpenClip
                          : weights::LdmTextEncoder::Clip;
  const std::vector<LdmTensor> tensors = ldm_layout(components, configs.unet, configs.vae, configs.text_encoder, layout);
  std::vector<weights::TensorProducer> producers;
  for (const auto& t : tensors)
    producers.push_back({t.key, dtype, t.shape, [&](std::span<std::byte> out) {
                           std::size_t offset = 0;
                           for (const auto* part : t.parts) {
                             const std::size_t bytes = std::size_t(part->numel()) * dtype_size(dtype);
                             produce_values(seed, t.component, *part, dtype, out.subspan(offset, bytes));
                             offset += bytes;
                           }
                         }});
  weights::write_safetensors_streaming(file, producers, kMetadata);
  check_ldm_round_trip(weights::SafeTensorsFile(file), components, configs.unet, configs.vae, configs.text_encoder);
}

void run_make_model(const MakeModelArgs& args) {
  const auto preset = std::ranges::find(kPresets, args.preset, &PresetEntry::name);
  const DType dtype = dtype_of(args.dtype);
  const fs::path dir = without_trailing_separator(args.output);
  const std::optional<fs::path> single_file =
      args.single_file.empty() ? std::nullopt : std::optional<fs::path>(args.single_file);
  const std::optional<fs::path> tokenizer = args.tokenizer.empty() ? std::nullopt : std::optional<fs::path>(args.tokenizer);
  check_destinations(dir, single_file, tokenizer);

  const ModelConfigs configs = configs_of(*preset);
  models::UNet2DConditionModel unet(configs.unet);
  models::AutoencoderKL vae(configs.vae);
  models::CLIPTextModel text_encoder(configs.text_encoder);
  const std::vector<ComponentParameters> components = {
      {ModelComponent::UNet, models::random_parameters(unet)},
      {ModelComponent::Vae, models::random_parameters(vae)},
      {ModelComponent::TextEncoder, models::random_parameters(text_encoder)},
  };

  StagingDirectory staging(dir);
  const fs::path& root = staging.path();
  write_text(root / "model_index.json", model_index_json(configs.scheduler));
  write_text(root / "unet" / "config.json", unet_config_json(configs.unet));
  write_text(root / "vae" / "config.json", vae_config_json(configs.vae));
  write_text(root / "text_encoder" / "config.json", text_encoder_config_json(configs.text_encoder));
  write_text(root / "scheduler" / "scheduler_config.json", scheduler_config_json(configs.scheduler));
  if (tokenizer) {
    fs::create_directories(root / "tokenizer");
    for (const auto& entry : fs::directory_iterator(*tokenizer))
      if (entry.is_regular_file()) fs::copy_file(entry.path(), root / "tokenizer" / entry.path().filename());
  } else {
    const std::string prefix = cat(preset->tiny_model, "/tokenizer/");
    for (const EmbeddedFile& f : embedded_files())
      if (f.path.starts_with(prefix)) write_text(root / "tokenizer" / f.path.substr(prefix.size()), f.bytes);
  }
  write_component(root / "unet" / "diffusion_pytorch_model.safetensors", components[0], args.seed, dtype);
  write_component(root / "vae" / "diffusion_pytorch_model.safetensors", components[1], args.seed, dtype);
  write_component(root / "text_encoder" / "model.safetensors", components[2], args.seed, dtype);

  std::uintmax_t bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file()) bytes += entry.file_size();
  staging.commit();
  std::printf("wrote %s (preset %s, seed %llu, %s, %s)\n", dir.string().c_str(), args.preset.c_str(),
              static_cast<unsigned long long>(args.seed), std::string(dtype_name(dtype)).c_str(),
              size_text(bytes).c_str());

  if (single_file) {
    write_single_file(*single_file, components, configs, args.seed, dtype);
    std::printf("wrote %s (LDM single file, %s; its configs and tokenizer: --config %s)\n",
                single_file->string().c_str(), size_text(fs::file_size(*single_file)).c_str(), dir.string().c_str());
  }
}

}  // namespace

void add_make_model_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "make-model", "Write a model with the real architecture and seeded random weights (no download needed)");
  auto args = std::make_shared<MakeModelArgs>();
  std::vector<std::string> names;
  std::string presets_help = "Architecture and configs:";
  for (const auto& p : kPresets) {
    names.emplace_back(p.name);
    presets_help += cat("\n  ", p.name, ": ", p.summary);
  }
  cmd->add_option("--preset", args->preset, presets_help)->required()->check(CLI::IsMember(names));
  cmd->add_option("--seed", args->seed, "Seed of the random weights (default 0)");
  cmd->add_option("-o,--output", args->output, "The model folder to create (must not exist, or be empty)")
      ->required();
  cmd->add_option("--single-file", args->single_file,
                  "Also write the model as an LDM single-file .safetensors checkpoint (must not exist)");
  cmd->add_option("--dtype", args->dtype, "Weight dtype (default fp32)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Copy this tokenizer folder's files instead of the built-in tiny vocabulary");
  cmd->callback([args] { run_make_model(*args); });
}

}  // namespace sdgen::app
