// The configurations of the released Stable Diffusion models, for single-file checkpoints, which
// carry weights but no config.json. Each preset is the diffusers hub repository's own config files
// (unet/, vae/, text_encoder/, scheduler/), held as JSON text and read by the same parsers as a
// model folder, so a preset gets exactly the defaults and checks a downloaded folder gets, and the
// scheduler config keeps the hub file's absent keys absent (each scheduler applies its own
// defaults to them). The tokenizer is not part of a preset: its vocabulary is data that must come
// from a folder (--tokenizer); the preset only says which repository has it and how it pads.
//
// Which preset a checkpoint gets is decided from its text encoder, the one part whose layout
// differs between the families: OpenCLIP keys (cond_stage_model.model.*) or a 1024-wide token
// embedding mean SD 2.x, anything else SD 1.x. SD 2.x has two released variants that single files
// cannot tell apart (same tensors): 2.1 at 768 px with v-prediction, the default, and 2.1-base at
// 512 px with epsilon prediction, which `--prediction epsilon` selects.
#pragma once

#include <string>
#include <string_view>

#include "weights/configs.hpp"
#include "weights/key_mapping.hpp"
#include "weights/model.hpp"
#include "weights/scheduler_config.hpp"

namespace sdgen::weights {

enum class PresetId {
  SD15,      // runwayml/stable-diffusion-v1-5: 512 px, epsilon, PNDM
  SD21,      // stabilityai/stable-diffusion-2-1: 768 px, v-prediction, DDIM
  SD21Base,  // stabilityai/stable-diffusion-2-1-base: 512 px, epsilon, PNDM
};

struct Preset {
  PresetId id = PresetId::SD15;
  std::string name;      // "sd15", for messages and OpenedModel::config_origin
  std::string hub_repo;  // where the matching diffusers folder (and its tokenizer/) can be downloaded
  ModelFamily family = ModelFamily::SD1;
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
  SchedulerConfig scheduler;
  std::string tokenizer_pad_token;  // "<|endoftext|>" (OpenAI CLIP) or "!" (OpenCLIP)
};

const Preset& get_preset(PresetId id);

// The preset for an LDM single-file checkpoint (see the top of this file). `prediction` matters
// only for SD 2.x, where Epsilon selects 2.1-base; overriding the scheduler's prediction_type
// itself is open_model's job, for every layout.
PresetId choose_preset(const LdmCheckpointInfo& checkpoint, PredictionOverride prediction);

}  // namespace sdgen::weights
