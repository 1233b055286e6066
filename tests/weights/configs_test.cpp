// The config parsers, checked against the files themselves: every field of the tiny and tiny-sd2
// configs is compared with the value read independently from the same config.json by nlohmann,
// and the expected defaults are diffusers'/transformers' own (the __init__ signatures of
// UNet2DConditionModel, AutoencoderKL and CLIPTextConfig, written out below as literals). The
// presets are compared with the values of the hub configs they mirror. Malformed folders are in
// model_test.cpp, where the message must also name the file.
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "tests/support/paths.hpp"
#include "weights/configs.hpp"
#include "weights/file_io.hpp"
#include "weights/presets.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace sdgen::weights;

namespace {

fs::path model_dir(const char* name) { return sdgen::test::data_dir() / "models" / name; }

json read_json(const fs::path& p) { return json::parse(read_text_file(p)); }

// diffusers' int-or-list fields, expanded the way the library expands them.
std::vector<int> per_block(const json& v, std::size_t blocks) {
  if (v.is_array()) return v.get<std::vector<int>>();
  return std::vector<int>(blocks, v.get<int>());
}

void check_unet_against_file(const fs::path& path) {
  const json j = read_json(path);
  const UNetConfig c = parse_unet_config(read_text_file(path), path);
  const std::size_t n = j["down_block_types"].size();
  CHECK(c.sample_size == j["sample_size"].get<int>());
  CHECK(c.in_channels == j["in_channels"].get<int>());
  CHECK(c.out_channels == j["out_channels"].get<int>());
  CHECK(c.flip_sin_to_cos == j["flip_sin_to_cos"].get<bool>());
  CHECK(c.freq_shift == j["freq_shift"].get<int>());
  REQUIRE(c.down_block_types.size() == n);
  REQUIRE(c.up_block_types.size() == j["up_block_types"].size());
  for (std::size_t i = 0; i < n; ++i) {
    CHECK((c.down_block_types[i] == DownBlockType::CrossAttnDownBlock2D) ==
          (j["down_block_types"][i] == "CrossAttnDownBlock2D"));
    CHECK((c.up_block_types[i] == UpBlockType::CrossAttnUpBlock2D) == (j["up_block_types"][i] == "CrossAttnUpBlock2D"));
  }
  CHECK(c.block_out_channels == j["block_out_channels"].get<std::vector<int>>());
  CHECK(c.layers_per_block == per_block(j["layers_per_block"], n));
  // num_attention_heads is null in both files, so the head counts are attention_head_dim's.
  REQUIRE(j["num_attention_heads"].is_null());
  CHECK(c.attention_heads == per_block(j["attention_head_dim"], n));
  CHECK(c.transformer_layers_per_block == per_block(j["transformer_layers_per_block"], n));
  CHECK(c.cross_attention_dim == j["cross_attention_dim"].get<int>());
  CHECK(c.use_linear_projection == j["use_linear_projection"].get<bool>());
  CHECK(c.upcast_attention == j["upcast_attention"].get<bool>());
  CHECK(c.only_cross_attention == j["only_cross_attention"].get<bool>());
  CHECK(c.norm_num_groups == j["norm_num_groups"].get<int>());
  CHECK(c.norm_eps == j["norm_eps"].get<double>());
  CHECK(c.act_fn == Activation::Silu);
  REQUIRE(j["act_fn"] == "silu");
  CHECK(c.downsample_padding == j["downsample_padding"].get<int>());
  CHECK(c.mid_block_scale_factor == j["mid_block_scale_factor"].get<double>());
  CHECK(c.conv_in_kernel == j["conv_in_kernel"].get<int>());
  CHECK(c.conv_out_kernel == j["conv_out_kernel"].get<int>());
  REQUIRE(j["time_embedding_dim"].is_null());  // so diffusers uses block_out_channels[0] * 4
  CHECK(c.time_embedding_dim == j["block_out_channels"][0].get<int>() * 4);
}

void check_vae_against_file(const fs::path& path) {
  const json j = read_json(path);
  const VaeConfig c = parse_vae_config(read_text_file(path), path);
  CHECK(c.in_channels == j["in_channels"].get<int>());
  CHECK(c.out_channels == j["out_channels"].get<int>());
  CHECK(c.latent_channels == j["latent_channels"].get<int>());
  CHECK(c.block_out_channels == j["block_out_channels"].get<std::vector<int>>());
  CHECK(c.layers_per_block == j["layers_per_block"].get<int>());
  CHECK(c.norm_num_groups == j["norm_num_groups"].get<int>());
  CHECK(c.sample_size == j["sample_size"].get<int>());
  CHECK(c.scaling_factor == j["scaling_factor"].get<double>());
  CHECK(c.shift_factor.has_value() == !j["shift_factor"].is_null());
  CHECK(c.mid_block_add_attention == j["mid_block_add_attention"].get<bool>());
  CHECK(c.use_quant_conv == j["use_quant_conv"].get<bool>());
  CHECK(c.use_post_quant_conv == j["use_post_quant_conv"].get<bool>());
  CHECK(c.force_upcast == j["force_upcast"].get<bool>());
}

void check_text_encoder_against_file(const fs::path& path) {
  const json j = read_json(path);
  const TextEncoderConfig c = parse_text_encoder_config(read_text_file(path), path);
  CHECK(c.vocab_size == j["vocab_size"].get<int>());
  CHECK(c.hidden_size == j["hidden_size"].get<int>());
  CHECK(c.intermediate_size == j["intermediate_size"].get<int>());
  CHECK(c.num_hidden_layers == j["num_hidden_layers"].get<int>());
  CHECK(c.num_attention_heads == j["num_attention_heads"].get<int>());
  CHECK(c.max_position_embeddings == j["max_position_embeddings"].get<int>());
  CHECK(c.layer_norm_eps == j["layer_norm_eps"].get<double>());
  CHECK(c.projection_dim == j["projection_dim"].get<int>());
  CHECK(c.hidden_act == (j["hidden_act"] == "gelu" ? Activation::Gelu : Activation::QuickGelu));
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sdgen::ModelError& e) {
    return e.what();
  }
  return "(no ModelError)";
}

}  // namespace

TEST_CASE("tiny and tiny-sd2 configs parse to the values in their files", "[weights][configs]") {
  for (const char* model : {"tiny", "tiny-sd2"}) {
    INFO(model);
    check_unet_against_file(model_dir(model) / "unet" / "config.json");
    check_vae_against_file(model_dir(model) / "vae" / "config.json");
    check_text_encoder_against_file(model_dir(model) / "text_encoder" / "config.json");
    const auto index_path = model_dir(model) / "model_index.json";
    const ModelIndex index = parse_model_index(read_text_file(index_path), index_path);
    CHECK(index.pipeline_class == read_json(index_path)["_class_name"].get<std::string>());
    // unet, vae, text_encoder, tokenizer, scheduler; the [null, null] entries are not components.
    CHECK(index.components.size() == 5);
  }
}

TEST_CASE("absent and null keys take the diffusers/transformers defaults", "[weights][configs]") {
  // UNet2DConditionModel(): sample_size None (sdgen: 64), 4 -> 4 channels, blocks
  // (CrossAttnDown x3, Down) / (Up, CrossAttnUp x3), (320, 640, 1280, 1280), layers 2,
  // attention_head_dim 8, cross_attention_dim 1280, norm 32 / 1e-5, silu, time embedding 4 x 320.
  const UNetConfig u = parse_unet_config(R"({"upcast_attention": null, "num_attention_heads": null})", "u.json");
  CHECK(u.sample_size == 64);
  CHECK(u.in_channels == 4);
  CHECK(u.out_channels == 4);
  CHECK(u.down_block_types == std::vector<DownBlockType>{DownBlockType::CrossAttnDownBlock2D,
                                                         DownBlockType::CrossAttnDownBlock2D,
                                                         DownBlockType::CrossAttnDownBlock2D, DownBlockType::DownBlock2D});
  CHECK(u.up_block_types == std::vector<UpBlockType>{UpBlockType::UpBlock2D, UpBlockType::CrossAttnUpBlock2D,
                                                     UpBlockType::CrossAttnUpBlock2D, UpBlockType::CrossAttnUpBlock2D});
  CHECK(u.block_out_channels == std::vector<int>{320, 640, 1280, 1280});
  CHECK(u.layers_per_block == std::vector<int>{2, 2, 2, 2});
  CHECK(u.attention_heads == std::vector<int>{8, 8, 8, 8});
  CHECK(u.transformer_layers_per_block == std::vector<int>{1, 1, 1, 1});
  CHECK(u.cross_attention_dim == 1280);
  CHECK_FALSE(u.upcast_attention);  // the SD 1.5 hub file writes null here
  CHECK(u.norm_num_groups == 32);
  CHECK(u.norm_eps == 1e-5);
  CHECK(u.time_embedding_dim == 1280);
  CHECK(u.flip_sin_to_cos);
  CHECK(u.freq_shift == 0);

  // AutoencoderKL(): one DownEncoderBlock2D of 64 channels, 1 layer, 4 latent channels,
  // sample_size 32, scaling_factor 0.18215.
  const VaeConfig v = parse_vae_config("{}", "v.json");
  CHECK(v.block_out_channels == std::vector<int>{64});
  CHECK(v.layers_per_block == 1);
  CHECK(v.latent_channels == 4);
  CHECK(v.sample_size == 32);
  CHECK(v.scaling_factor == 0.18215);
  CHECK_FALSE(v.shift_factor.has_value());

  // CLIPTextConfig(): 49408 tokens, width 512, 2048 MLP, 12 layers, 8 heads, 77 positions,
  // quick_gelu, projection 512.
  const TextEncoderConfig t = parse_text_encoder_config("{}", "t.json");
  CHECK(t.vocab_size == 49408);
  CHECK(t.hidden_size == 512);
  CHECK(t.intermediate_size == 2048);
  CHECK(t.num_hidden_layers == 12);
  CHECK(t.num_attention_heads == 8);
  CHECK(t.max_position_embeddings == 77);
  CHECK(t.hidden_act == Activation::QuickGelu);
  CHECK(t.projection_dim == 512);
}

TEST_CASE("per-block fields expand, and num_attention_heads wins over attention_head_dim", "[weights][configs]") {
  const char* base = R"({"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                         "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "block_out_channels": [32, 64],
                         "layers_per_block": [1, 3], "transformer_layers_per_block": 2, )";
  const UNetConfig quirk = parse_unet_config(std::string(base) + R"("attention_head_dim": [2, 4]})", "a.json");
  CHECK(quirk.layers_per_block == std::vector<int>{1, 3});
  CHECK(quirk.transformer_layers_per_block == std::vector<int>{2, 2});
  CHECK(quirk.attention_heads == std::vector<int>{2, 4});  // attention_head_dim = number of heads
  CHECK(quirk.time_embedding_dim == 128);

  const UNetConfig both =
      parse_unet_config(std::string(base) + R"("attention_head_dim": 8, "num_attention_heads": [4, 8]})", "b.json");
  CHECK(both.attention_heads == std::vector<int>{4, 8});

  // Integral floats, as some tools write them, are integers.
  const UNetConfig floats = parse_unet_config(std::string(base) + R"("attention_head_dim": 4.0, "sample_size": 32.0})",
                                              "c.json");
  CHECK(floats.attention_heads == std::vector<int>{4, 4});
  CHECK(floats.sample_size == 32);
  CHECK(error_of([&] { parse_unet_config(std::string(base) + R"("sample_size": 32.5})", "d.json"); })
            .find("\"sample_size\" must be an integer") != std::string::npos);
}

TEST_CASE("SD 2.x text encoder and tiny-sd2 are family SD2, the others SD1", "[weights][configs]") {
  const auto family = [](const char* model) {
    const auto p = model_dir(model) / "text_encoder" / "config.json";
    return model_family(parse_text_encoder_config(read_text_file(p), p));
  };
  CHECK(family("tiny") == ModelFamily::SD1);
  CHECK(family("tiny-sd2") == ModelFamily::SD2);
  CHECK(model_family(get_preset(PresetId::SD15).text_encoder) == ModelFamily::SD1);
  CHECK(model_family(get_preset(PresetId::SD21).text_encoder) == ModelFamily::SD2);
  CHECK(model_family(get_preset(PresetId::SD21Base).text_encoder) == ModelFamily::SD2);
}

TEST_CASE("presets hold the hub configs of SD 1.5, 2.1 and 2.1-base", "[weights][presets]") {
  // Values from the hub files: runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1
  // (-base) unet/, vae/, text_encoder/config.json and scheduler/scheduler_config.json.
  const Preset& sd15 = get_preset(PresetId::SD15);
  CHECK(sd15.name == "sd15");
  CHECK(sd15.family == ModelFamily::SD1);
  CHECK(sd15.unet.block_out_channels == std::vector<int>{320, 640, 1280, 1280});
  CHECK(sd15.unet.attention_heads == std::vector<int>{8, 8, 8, 8});
  CHECK(sd15.unet.cross_attention_dim == 768);
  CHECK_FALSE(sd15.unet.use_linear_projection);
  CHECK(sd15.unet.sample_size == 64);
  CHECK(sd15.vae.block_out_channels == std::vector<int>{128, 256, 512, 512});
  CHECK(sd15.vae.layers_per_block == 2);
  CHECK(sd15.text_encoder.hidden_size == 768);
  CHECK(sd15.text_encoder.num_hidden_layers == 12);
  CHECK(sd15.scheduler.class_name == "PNDMScheduler");
  CHECK_FALSE(sd15.scheduler.prediction_type.has_value());  // absent in the hub file: epsilon
  CHECK(sd15.scheduler.steps_offset == 1);
  CHECK(sd15.tokenizer_pad_token == "<|endoftext|>");

  const Preset& sd21 = get_preset(PresetId::SD21);
  CHECK(sd21.family == ModelFamily::SD2);
  CHECK(sd21.unet.attention_heads == std::vector<int>{5, 10, 20, 20});
  CHECK(sd21.unet.cross_attention_dim == 1024);
  CHECK(sd21.unet.use_linear_projection);
  CHECK(sd21.unet.upcast_attention);
  CHECK(sd21.unet.sample_size == 96);
  CHECK(sd21.text_encoder.hidden_size == 1024);
  CHECK(sd21.text_encoder.num_hidden_layers == 23);
  CHECK(sd21.text_encoder.hidden_act == Activation::Gelu);
  CHECK(sd21.scheduler.class_name == "DDIMScheduler");
  CHECK(sd21.scheduler.prediction_type == "v_prediction");
  CHECK(sd21.tokenizer_pad_token == "!");

  const Preset& base = get_preset(PresetId::SD21Base);
  CHECK(base.unet.sample_size == 64);
  CHECK(base.scheduler.prediction_type == "epsilon");
  CHECK(base.text_encoder.hidden_size == 1024);
}

TEST_CASE("preset schedulers equal the hub files the fixtures copy verbatim", "[weights][presets]") {
  // tests/data/README.md: tiny's scheduler_config.json is SD v1-5's verbatim, tiny-sd2's SD 2.1's.
  for (const auto& [id, model] : {std::pair{PresetId::SD15, "tiny"}, {PresetId::SD21, "tiny-sd2"}}) {
    INFO(model);
    const auto path = model_dir(model) / "scheduler" / "scheduler_config.json";
    const SchedulerConfig want = parse_scheduler_config(read_text_file(path), path);
    const SchedulerConfig& got = get_preset(id).scheduler;
    CHECK(got.class_name == want.class_name);
    CHECK(got.num_train_timesteps == want.num_train_timesteps);
    CHECK(got.beta_start == want.beta_start);
    CHECK(got.beta_end == want.beta_end);
    CHECK(got.beta_schedule == want.beta_schedule);
    CHECK(got.trained_betas.has_value() == want.trained_betas.has_value());
    CHECK(got.prediction_type == want.prediction_type);
    CHECK(got.timestep_spacing == want.timestep_spacing);
    CHECK(got.steps_offset == want.steps_offset);
    CHECK(got.set_alpha_to_one == want.set_alpha_to_one);
    CHECK(got.skip_prk_steps == want.skip_prk_steps);
    CHECK(got.clip_sample == want.clip_sample);
  }
}

TEST_CASE("single files get SD 2.x presets for OpenCLIP or 1024-wide text encoders", "[weights][presets]") {
  using P = PredictionOverride;
  CHECK(choose_preset({LdmTextEncoder::Clip, 768}, P::FromConfig) == PresetId::SD15);
  CHECK(choose_preset({LdmTextEncoder::Clip, 768}, P::Epsilon) == PresetId::SD15);
  CHECK(choose_preset({LdmTextEncoder::Absent, 0}, P::FromConfig) == PresetId::SD15);
  CHECK(choose_preset({LdmTextEncoder::OpenClip, 1024}, P::FromConfig) == PresetId::SD21);
  CHECK(choose_preset({LdmTextEncoder::OpenClip, 1024}, P::VPrediction) == PresetId::SD21);
  CHECK(choose_preset({LdmTextEncoder::OpenClip, 1024}, P::Epsilon) == PresetId::SD21Base);
  CHECK(choose_preset({LdmTextEncoder::Clip, 1024}, P::FromConfig) == PresetId::SD21);
}

// Found by tests/fuzz/configs_fuzz: a first block width above INT_MAX / 4 overflowed the default
// time_embedding_dim (4x that width), undefined behaviour that UBSan reports.
TEST_CASE("a UNet width whose default time embedding overflows an int is refused", "[weights][configs]") {
  const std::string huge = R"({"block_out_channels": [1073741824, 1073741824, 1073741824, 1073741824]})";
  CHECK_THAT(error_of([&] { parse_unet_config(huge, "unet/config.json"); }),
             Catch::Contains("unet/config.json") && Catch::Contains("block_out_channels"));
}
