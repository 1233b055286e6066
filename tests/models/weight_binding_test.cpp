// Tensor accounting: a checkpoint that differs from what the config describes must be reported
// tensor by tensor (missing, unexpected, wrong shape, unusable dtype), and require_complete() must
// refuse it with a message naming the tensor and both shapes. Each case starts from the tiny
// fixture's real tensor table and changes one thing; the expected shapes in the assertions are
// the ones the reference checkpoint stores.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/weight_binding.hpp"
#include "tests/models/fixture_model.hpp"

namespace {

using sdgen::models::bind_weights;
using sdgen::models::require_complete;
using sdgen::models::WeightReport;

// The message require_complete() throws, or "" when it does not throw.
std::string refusal(const WeightReport& report) {
  try {
    require_complete(report);
  } catch (const sdgen::ModelError& e) {
    return e.what();
  }
  return "";
}

const std::string kConv1 = "down_blocks.0.resnets.0.conv1.weight";  // stored [32, 32, 3, 3]

}  // namespace

TEST_CASE("the unmodified tiny UNet binds completely", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
  const auto report = bind_weights("unet", unet, fixture.unet.tensors);
  CHECK(report.complete());
  CHECK(refusal(report).empty());
  CHECK(unet.conv_in.weight.source == &fixture.unet.tensors.at("conv_in.weight"));
}

TEST_CASE("a missing tensor is reported and refused", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  fixture.unet.tensors.erase(kConv1);
  sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
  const auto report = bind_weights("unet", unet, fixture.unet.tensors);

  CHECK(report.missing == std::vector<std::string>{kConv1});
  CHECK(report.unexpected.empty());
  CHECK(report.wrong_shape.empty());
  // The architecture still counts the parameter: the count describes the model, not the file.
  CHECK(report.parameter_count == fixture.unet.reference_params);
  const std::string message = refusal(report);
  CHECK_THAT(message, Catch::StartsWith("unet ("));
  CHECK_THAT(message, Catch::Contains("1 tensor problem (1 missing)"));
  CHECK_THAT(message, Catch::Contains("missing tensor '" + kConv1 + "'"));
}

TEST_CASE("an extra tensor is reported as unexpected and refused", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  fixture.unet.tensors.emplace("down_blocks.0.resnets.0.conv3.weight", fixture.unet.tensors.at(kConv1));
  sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
  const auto report = bind_weights("unet", unet, fixture.unet.tensors);

  CHECK(report.unexpected == std::vector<std::string>{"down_blocks.0.resnets.0.conv3.weight"});
  CHECK(report.missing.empty());
  CHECK_THAT(refusal(report), Catch::Contains("unexpected tensor 'down_blocks.0.resnets.0.conv3.weight'"));
}

TEST_CASE("a tensor of the wrong shape is reported with both shapes, left unbound and refused", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  fixture.unet.tensors.at(kConv1).shape = {32, 16, 3, 3};
  sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
  const auto report = bind_weights("unet", unet, fixture.unet.tensors);

  REQUIRE(report.wrong_shape.size() == 1);
  CHECK(report.wrong_shape[0].name == kConv1);
  CHECK(report.wrong_shape[0].expected == std::vector<std::int64_t>{32, 32, 3, 3});
  CHECK(report.wrong_shape[0].got == std::vector<std::int64_t>{32, 16, 3, 3});
  CHECK(report.wrong_shape[0].stored_as.empty());  // a diffusers file stores the diffusers name
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  const auto& resnet = std::get<sdgen::models::CrossAttnDownBlock2D>(unet.down_blocks[0]).resnets[0];
  CHECK(resnet.conv1.weight.source == nullptr);
  CHECK(resnet.conv1.bias.source != nullptr);
  CHECK_THAT(refusal(report),
             Catch::Contains("tensor '" + kConv1 + "': expected shape [32, 32, 3, 3], got [32, 16, 3, 3]"));
}

TEST_CASE("several problems are counted, listed worst first, and the message is cut after five", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  auto& tensors = fixture.unet.tensors;
  tensors.at(kConv1).shape = {32, 16, 3, 3};
  tensors.erase("conv_out.bias");
  tensors.emplace("extra", tensors.at("conv_in.bias"));
  sdgen::models::UNet2DConditionModel unet(fixture.unet_config);
  auto report = bind_weights("unet", unet, tensors);

  CHECK(report.problem_count() == 3);
  CHECK(sdgen::models::describe_problems(report) ==
        std::vector<std::string>{
            "tensor '" + kConv1 + "': expected shape [32, 32, 3, 3], got [32, 16, 3, 3]",
            "missing tensor 'conv_out.bias'",
            "unexpected tensor 'extra'"});
  CHECK_THAT(refusal(report), Catch::Contains("3 tensor problems (1 with the wrong shape, 1 missing, 1 unexpected)"));

  // An empty table (say, the wrong file): every one of the fixture's tensors is missing.
  const std::size_t all = fixture.unet.tensors.size();
  report = bind_weights("unet", unet, sdgen::weights::ComponentTensors{});
  CHECK(report.missing.size() == all);
  CHECK_THAT(refusal(report), Catch::Contains("; and " + std::to_string(all - 5) + " more"));
}

TEST_CASE("a weight stored as an integer type is refused", "[models]") {
  auto fixture = sdgen::test::load_fixture_model("tiny");
  auto& source = fixture.text_encoder.tensors.at("text_model.final_layer_norm.weight");
  sdgen::weights::TensorInfo as_int = *source.stored;
  as_int.dtype = sdgen::DType::I32;
  source.stored = &as_int;
  sdgen::models::CLIPTextModel text_encoder(fixture.text_encoder_config);
  const auto report = bind_weights("text_encoder", text_encoder, fixture.text_encoder.tensors);

  REQUIRE(report.wrong_dtype.size() == 1);
  CHECK(report.wrong_dtype[0].dtype == sdgen::DType::I32);
  CHECK(text_encoder.text_model.final_layer_norm.weight.source == nullptr);
  CHECK_THAT(refusal(report), Catch::Contains("tensor 'text_model.final_layer_norm.weight': stored as I32"));
}

TEST_CASE("CLIP's legacy position_ids buffer is accepted and ignored", "[models]") {
  // transformers < 4.31 saved it as int64 [1, max_position_embeddings] (the SD 1.5 hub files).
  auto fixture = sdgen::test::load_fixture_model("tiny");
  sdgen::weights::TensorInfo position_ids{.name = "text_model.embeddings.position_ids",
                                          .dtype = sdgen::DType::I64,
                                          .shape = {1, 77}};
  fixture.text_encoder.tensors.emplace(
      position_ids.name, sdgen::weights::TensorSource{.file = fixture.text_encoder.file.get(),
                                                      .stored = &position_ids,
                                                      .shape = position_ids.shape});
  sdgen::models::CLIPTextModel text_encoder(fixture.text_encoder_config);
  const auto report = bind_weights("text_encoder", text_encoder, fixture.text_encoder.tensors);

  CHECK(report.complete());
  CHECK(report.ignored == std::vector<std::string>{position_ids.name});
  CHECK(report.parameter_count == fixture.text_encoder.reference_params);
  CHECK_FALSE(report.dtypes.contains(sdgen::DType::I64));
}
