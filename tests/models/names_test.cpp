// The 1:1 name guarantee: for both tiny fixture models (SD 1.x-style with convolutional
// projections; SD 2.x-style with linear projections, per-block heads [2, 4] and a 3-layer gelu
// CLIP), the tensors that visit() lists for the UNet, the VAE and the text encoder, built from the
// fixture's config.json, are exactly the tensors of the checkpoint written by diffusers /
// transformers, in both directions and with identical shapes. The parameter counts must equal the
// reference's own count (oracle_model_info.json, sum of numel() over the torch module's
// parameters). Shapes and counts are integers: compared exactly.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "lib/models/clip_text.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/vae.hpp"
#include "lib/models/weight_binding.hpp"
#include "lib/nn/visit.hpp"
#include "tests/models/fixture_model.hpp"

namespace {

using sdgen::test::FixtureComponent;
using Shapes = std::map<std::string, std::vector<std::int64_t>>;

template <class Module>
Shapes expected_shapes(Module& module) {
  Shapes shapes;
  sdgen::nn::visit_named(module, [&](const std::string& name, auto& leaf) {
    if constexpr (std::is_same_v<std::decay_t<decltype(leaf)>, sdgen::nn::Param>) {
      const bool first = shapes.emplace(name, leaf.shape).second;
      CHECK(first);  // every name is listed once
    }
  });
  return shapes;
}

Shapes stored_shapes(const FixtureComponent& component) {
  Shapes shapes;
  for (const auto& [name, source] : component.tensors) shapes.emplace(name, source.shape);
  return shapes;
}

template <class Module>
void check_names_and_shapes(Module& module, const FixtureComponent& component) {
  const Shapes expected = expected_shapes(module);
  const Shapes stored = stored_shapes(component);
  for (const auto& [name, shape] : expected) {
    INFO("visited tensor " << name);
    const auto it = stored.find(name);
    CHECK(it != stored.end());
    if (it != stored.end()) CHECK(it->second == shape);
  }
  for (const auto& [name, shape] : stored) {
    INFO("checkpoint tensor " << name);
    CHECK(expected.contains(name));
  }
  CHECK(expected.size() == stored.size());

  const auto report = sdgen::models::bind_weights("component", module, component.tensors);
  CHECK(report.complete());
  CHECK(report.parameter_count == component.reference_params);
  CHECK(report.tensor_count == stored.size());
}

}  // namespace

TEST_CASE("visit() names equal the fixture checkpoints' keys, with equal shapes and parameter counts", "[models]") {
  for (const std::string name : {"tiny", "tiny-sd2"}) {
    DYNAMIC_SECTION(name) {
      auto fixture = sdgen::test::load_fixture_model(name);
      SECTION("unet") {
        sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
        check_names_and_shapes(unet, fixture.unet);
      }
      SECTION("vae") {
        sdgen::models::AutoencoderKL vae(fixture.vae_config);
        check_names_and_shapes(vae, fixture.vae);
      }
      SECTION("text_encoder") {
        sdgen::models::CLIPTextModel text_encoder(fixture.text_encoder_config);
        check_names_and_shapes(text_encoder, fixture.text_encoder);
      }
    }
  }
}

TEST_CASE("binding points every parameter at its checkpoint tensor", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  sdgen::models::CLIPTextModel text_encoder(fixture.text_encoder_config);
  const auto report = sdgen::models::bind_weights("text_encoder", text_encoder, fixture.text_encoder.tensors);
  REQUIRE(report.complete());
  CHECK(report.dtypes == std::map<sdgen::DType, std::size_t>{{sdgen::DType::F32, report.tensor_count}});
  CHECK(report.files == std::vector{fixture.text_encoder.file->path()});
  sdgen::nn::visit_named(text_encoder, [&](const std::string& name, auto& leaf) {
    INFO(name);
    if constexpr (std::is_same_v<std::decay_t<decltype(leaf)>, sdgen::nn::Param>)
      CHECK(leaf.source == &fixture.text_encoder.tensors.at(name));
    else
      CHECK(leaf.source == nullptr);  // position_ids: this (recent) export does not carry it
  });
}
