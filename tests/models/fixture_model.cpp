#include "tests/models/fixture_model.hpp"

#include <nlohmann/json.hpp>

#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"

namespace sdgen::test {

weights::ComponentTensors tensors_of(const weights::SafeTensorsFile& file) {
  weights::ComponentTensors tensors;
  for (const auto& info : file.tensors())
    tensors.emplace(info.name, weights::TensorSource{.file = &file, .stored = &info, .shape = info.shape});
  return tensors;
}

namespace {

FixtureComponent load_component(const std::filesystem::path& dir, const char* file_name,
                                const nlohmann::json& reference_params, const char* component) {
  FixtureComponent c;
  c.file = std::make_unique<weights::SafeTensorsFile>(dir / file_name);
  c.tensors = tensors_of(*c.file);
  c.reference_params = reference_params.at(component).get<std::int64_t>();
  return c;
}

}  // namespace

FixtureModel load_fixture_model(const std::string& name) {
  const auto dir = data_dir() / "models" / name;
  const auto info = nlohmann::json::parse(weights::read_text_file(dir / "oracle_model_info.json"));
  const auto& params = info.at("params");
  const auto config = [&](const char* component) { return dir / component / "config.json"; };

  FixtureModel m;
  m.unet_config = weights::parse_unet_config(weights::read_text_file(config("unet")), config("unet"));
  m.vae_config = weights::parse_vae_config(weights::read_text_file(config("vae")), config("vae"));
  m.text_encoder_config =
      weights::parse_text_encoder_config(weights::read_text_file(config("text_encoder")), config("text_encoder"));
  m.unet = load_component(dir / "unet", "diffusion_pytorch_model.safetensors", params, "unet");
  m.vae = load_component(dir / "vae", "diffusion_pytorch_model.safetensors", params, "vae");
  m.text_encoder = load_component(dir / "text_encoder", "model.safetensors", params, "text_encoder");
  return m;
}

}  // namespace sdgen::test
