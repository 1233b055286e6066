// Opening a Stable Diffusion model as users download it, in either of two layouts:
//
//  * a diffusers folder: model_index.json with unet/, vae/, text_encoder/, tokenizer/ and
//    scheduler/ (each with its config.json / scheduler_config.json; weights in *.safetensors,
//    the *.fp16.safetensors variant (WeightVariant says which wins when both exist), or either
//    sharded behind a *.safetensors.index.json);
//  * a single-file checkpoint (.safetensors with the original LDM key names), whose configs come
//    from a preset (SD 1.5; SD 2.1 when the text encoder is OpenCLIP or 1024 wide, 2.1-base with
//    --prediction epsilon; see presets.hpp) or from a config folder (--config: a diffusers folder,
//    with or without weights, whose configs are used), and whose tokenizer comes from
//    --tokenizer DIR or the config folder's tokenizer/.
//
// Either way the result is the same OpenedModel: typed configs, plus, for every component, a table
// from the diffusers tensor name to where its bytes live (zero-copy, inside memory-mapped files).
// Pickle files (.ckpt, .pt, .bin, .pth) are refused: unpickling can run arbitrary code. So are
// models sdgen cannot run (SDXL, inpainting or class-conditioned UNets): the config parsers and
// open_model's cross-checks say which file and key make them so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lib/core/dtype.hpp"
#include "weights/configs.hpp"
#include "weights/safetensors.hpp"
#include "weights/scheduler_config.hpp"

namespace sdgen::weights {

// SD1: OpenAI CLIP ViT-L/14 text encoder (quick_gelu); SD2: OpenCLIP ViT-H/14 (gelu). See
// model_family() for why the text encoder's activation, and not a width, tells them apart.
enum class ModelFamily { SD1, SD2 };
enum class ModelLayout { DiffusersFolder, SingleFile };
enum class PredictionOverride { FromConfig, Epsilon, VPrediction };
// Which weight file a diffusers component folder is read from when it holds both
// <name>.safetensors and <name>.fp16.safetensors. Either choice falls back to the other file when
// its own is absent. Full precision is the default because it is what diffusers loads without a
// `variant` argument; Fp16 halves the bytes read when the weights end up in fp16 anyway (GPU).
enum class WeightVariant { FullPrecision, Fp16 };

// Where the values of one tensor, under its diffusers name, live. Usually a whole stored tensor;
// for single files it may be a reshaped view ([C, C, 1, 1] stored, [C, C] meant) or a row block
// of a fused tensor (OpenCLIP's in_proj_weight holds q, k and v).
struct TensorSource {
  const SafeTensorsFile* file = nullptr;
  const TensorInfo* stored = nullptr;  // the tensor as stored in `file`
  std::vector<std::int64_t> shape;     // the diffusers shape
  std::size_t byte_offset = 0;         // into the stored tensor's bytes

  DType dtype() const { return stored->dtype; }
  std::int64_t numel() const;
  std::span<const std::byte> bytes() const;
  // The values as float32 (F32/F16/BF16 sources), for loaders and tests.
  std::vector<float> to_f32() const;
};

// Diffusers name ("down_blocks.0.resnets.0.conv1.weight") -> source, for one component.
using ComponentTensors = std::map<std::string, TensorSource>;

struct OpenOptions {
  std::filesystem::path model;                       // folder or single file
  std::optional<std::filesystem::path> tokenizer_dir;  // --tokenizer: overrides the folder's
  std::optional<std::filesystem::path> config_dir;     // --config: diffusers configs for a single file
  PredictionOverride prediction = PredictionOverride::FromConfig;  // --prediction epsilon|v
  WeightVariant variant = WeightVariant::FullPrecision;
};

struct OpenedModel {
  ModelLayout layout = ModelLayout::DiffusersFolder;
  ModelFamily family = ModelFamily::SD1;
  std::filesystem::path source;
  std::string config_origin;  // "model folder", "preset sd15", "config folder <dir>"
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
  SchedulerConfig scheduler;
  std::filesystem::path tokenizer_dir;  // vocab.json, merges.txt, tokenizer_config.json, ...

  std::vector<std::unique_ptr<SafeTensorsFile>> files;  // owns the maps the sources point into
  ComponentTensors unet_tensors;
  ComponentTensors vae_tensors;
  ComponentTensors text_encoder_tensors;
  // Keys of a single file that belong to no component sdgen uses and are known to be safe to
  // drop (EMA copies, the training schedule buffers, position_ids, ...).
  std::vector<std::string> ignored_keys;
};

// The family of a model, from its text encoder config. The rule is the text encoder's activation:
// SD 1.x conditions on OpenAI's CLIP ViT-L/14, whose MLP uses quick_gelu; SD 2.x on OpenCLIP's
// ViT-H/14, which uses exact gelu. That is the architectural difference that matters (the
// tokenizer's padding token follows it: OpenAI's tokenizer pads with <|endoftext|>, OpenCLIP's
// with "!"), whereas widths are not a family marker (a fine-tune may be any size).
ModelFamily model_family(const TextEncoderConfig& text_encoder);

// Opens and validates the layout, configs and safetensors headers. Does not yet check the tensor
// names against the architecture: that is the job of the model code that binds them (every
// missing or unexpected name is an error there). The exception is a single file's keys that the
// LDM mapping cannot place: they have no diffusers name to report later, so they are an error
// here. Throws UsageError (the path or flags are wrong) or ModelError (the files are), each with a
// message naming the file and the key or tensor.
OpenedModel open_model(const OpenOptions& options);

}  // namespace sdgen::weights
