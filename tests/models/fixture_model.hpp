// A tiny fixture model (tests/data/models/<name>, diffusers layout) opened directly from its files:
// each component's safetensors file mapped as is (every stored tensor under its own name, the
// table a diffusers folder yields) and its config.json parsed. Opening it this way, rather than
// through weights::open_model, keeps the name tests about the model code alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "weights/configs.hpp"
#include "weights/model.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::test {

struct FixtureComponent {
  std::unique_ptr<weights::SafeTensorsFile> file;
  weights::ComponentTensors tensors;
  std::int64_t reference_params = 0;  // oracle_model_info.json "params", counted by the reference
};

struct FixtureModel {
  weights::UNetConfig unet_config;
  weights::VaeConfig vae_config;
  weights::TextEncoderConfig text_encoder_config;
  FixtureComponent unet;
  FixtureComponent vae;
  FixtureComponent text_encoder;
};

// `name`: "tiny" or "tiny-sd2".
FixtureModel load_fixture_model(const std::string& name);

// Every tensor of `file` under its stored name, with its stored shape.
weights::ComponentTensors tensors_of(const weights::SafeTensorsFile& file);

}  // namespace sdgen::test
