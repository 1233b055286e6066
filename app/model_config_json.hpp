// The typed configs written back out as the diffusers/transformers files they are read from
// (unet/config.json, vae/config.json, text_encoder/config.json, scheduler/scheduler_config.json,
// model_index.json), for the model folders `sdgen make-model` writes.
//
// Each writer emits every field of its struct under the key the parser in weights/configs.cpp
// reads it from, in the spelling the released SD hub files use, so that parsing the text gives the
// struct back (tests/app/make_model_test.cpp checks this for every preset) and diffusers and
// transformers load the folder too:
//   * the UNet's head counts go under "attention_head_dim", as SD's hub configs have them (diffusers
//     reads that key as the number of heads when "num_attention_heads" is absent);
//   * per-block lists whose entries are all equal are written as one number, as the hub files do;
//   * time_embedding_dim is written only when it differs from diffusers' default
//     (4 x block_out_channels[0]);
//   * the scheduler file holds exactly the keys the struct holds a value for, so absent keys stay
//     absent and each scheduler applies its own default, as with the hub file;
//   * the text encoder config adds bos/eos/pad token ids 0/2/1, the values in SD's hub configs:
//     eos_token_id 2 makes transformers pool at the highest token id (its "legacy" rule), which is
//     the end-of-text token in every CLIP vocabulary (and in the tiny ones).
#pragma once

#include <string>

#include "weights/configs.hpp"
#include "weights/scheduler_config.hpp"

namespace sdgen::app {

std::string unet_config_json(const weights::UNetConfig& config);
std::string vae_config_json(const weights::VaeConfig& config);
std::string text_encoder_config_json(const weights::TextEncoderConfig& config);
std::string scheduler_config_json(const weights::SchedulerConfig& config);
// A StableDiffusionPipeline without safety checker or feature extractor; the scheduler's class
// is the scheduler config's (PNDMScheduler when it names none).
std::string model_index_json(const weights::SchedulerConfig& scheduler);

}  // namespace sdgen::app
