// `sdgen make-model`, through the real binary, against independent references: the tiny fixture
// models diffusers wrote (tensor names, shapes, configs), the parameter counts diffusers computed
// (oracle_model_info.json), the single-file loader's own key mapping (the LDM file must read back
// as the folder, byte for byte), and torch's initialisation rules for the values.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/model_config_json.hpp"
#include "lib/core/error.hpp"
#include "tests/app/run_sdgen.hpp"
#include "tests/app/temp_dir.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/model.hpp"
#include "weights/presets.hpp"

namespace {

namespace fs = std::filesystem;
using sdgen::test::quoted;
using sdgen::test::run_sdgen;
using sdgen::weights::ComponentTensors;
using sdgen::weights::OpenedModel;

OpenedModel open(const fs::path& model, std::optional<fs::path> config_dir = std::nullopt) {
  sdgen::weights::OpenOptions options{.model = model};
  options.config_dir = config_dir;
  return sdgen::weights::open_model(options);
}

void make_model(const std::string& arguments) {
  const auto run = run_sdgen("make-model " + arguments);
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
}

// ---- config comparisons, field by field

void check_same(const sdgen::weights::UNetConfig& a, const sdgen::weights::UNetConfig& b) {
  CHECK(a.sample_size == b.sample_size);
  CHECK(a.in_channels == b.in_channels);
  CHECK(a.out_channels == b.out_channels);
  CHECK(a.flip_sin_to_cos == b.flip_sin_to_cos);
  CHECK(a.freq_shift == b.freq_shift);
  CHECK(a.down_block_types == b.down_block_types);
  CHECK(a.up_block_types == b.up_block_types);
  CHECK(a.block_out_channels == b.block_out_channels);
  CHECK(a.layers_per_block == b.layers_per_block);
  CHECK(a.attention_heads == b.attention_heads);
  CHECK(a.transformer_layers_per_block == b.transformer_layers_per_block);
  CHECK(a.cross_attention_dim == b.cross_attention_dim);
  CHECK(a.use_linear_projection == b.use_linear_projection);
  CHECK(a.upcast_attention == b.upcast_attention);
  CHECK(a.only_cross_attention == b.only_cross_attention);
  CHECK(a.norm_num_groups == b.norm_num_groups);
  CHECK(a.norm_eps == b.norm_eps);
  CHECK(a.act_fn == b.act_fn);
  CHECK(a.downsample_padding == b.downsample_padding);
  CHECK(a.mid_block_scale_factor == b.mid_block_scale_factor);
  CHECK(a.conv_in_kernel == b.conv_in_kernel);
  CHECK(a.conv_out_kernel == b.conv_out_kernel);
  CHECK(a.time_embedding_dim == b.time_embedding_dim);
}

void check_same(const sdgen::weights::VaeConfig& a, const sdgen::weights::VaeConfig& b) {
  CHECK(a.in_channels == b.in_channels);
  CHECK(a.out_channels == b.out_channels);
  CHECK(a.latent_channels == b.latent_channels);
  CHECK(a.block_out_channels == b.block_out_channels);
  CHECK(a.layers_per_block == b.layers_per_block);
  CHECK(a.norm_num_groups == b.norm_num_groups);
  CHECK(a.act_fn == b.act_fn);
  CHECK(a.sample_size == b.sample_size);
  CHECK(a.scaling_factor == b.scaling_factor);
  CHECK(a.shift_factor == b.shift_factor);
  CHECK(a.mid_block_add_attention == b.mid_block_add_attention);
  CHECK(a.use_quant_conv == b.use_quant_conv);
  CHECK(a.use_post_quant_conv == b.use_post_quant_conv);
  CHECK(a.force_upcast == b.force_upcast);
}

void check_same(const sdgen::weights::TextEncoderConfig& a, const sdgen::weights::TextEncoderConfig& b) {
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.max_position_embeddings == b.max_position_embeddings);
  CHECK(a.hidden_act == b.hidden_act);
  CHECK(a.layer_norm_eps == b.layer_norm_eps);
  CHECK(a.projection_dim == b.projection_dim);
}

void check_same(const sdgen::weights::SchedulerConfig& a, const sdgen::weights::SchedulerConfig& b) {
  CHECK(a.class_name == b.class_name);
  CHECK(a.num_train_timesteps == b.num_train_timesteps);
  CHECK(a.beta_start == b.beta_start);
  CHECK(a.beta_end == b.beta_end);
  CHECK(a.beta_schedule == b.beta_schedule);
  CHECK(a.trained_betas == b.trained_betas);
  CHECK(a.prediction_type == b.prediction_type);
  CHECK(a.timestep_spacing == b.timestep_spacing);
  CHECK(a.steps_offset == b.steps_offset);
  CHECK(a.set_alpha_to_one == b.set_alpha_to_one);
  CHECK(a.skip_prk_steps == b.skip_prk_steps);
  CHECK(a.clip_sample == b.clip_sample);
  CHECK(a.clip_sample_range == b.clip_sample_range);
  CHECK(a.rescale_betas_zero_snr == b.rescale_betas_zero_snr);
  CHECK(a.use_karras_sigmas == b.use_karras_sigmas);
  CHECK(a.sigma_min == b.sigma_min);
  CHECK(a.sigma_max == b.sigma_max);
  CHECK(a.timestep_type == b.timestep_type);
  CHECK(a.final_sigmas_type == b.final_sigmas_type);
  CHECK(a.lower_order_final == b.lower_order_final);
  CHECK(a.euler_at_final == b.euler_at_final);
  CHECK(a.lambda_min_clipped == b.lambda_min_clipped);
  CHECK(a.solver_order == b.solver_order);
  CHECK(a.algorithm_type == b.algorithm_type);
  CHECK(a.solver_type == b.solver_type);
}

// name -> shape, for comparing layouts
std::map<std::string, std::vector<std::int64_t>> shapes(const ComponentTensors& tensors) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (const auto& [name, source] : tensors) out[name] = source.shape;
  return out;
}

void check_same_bytes(const ComponentTensors& a, const ComponentTensors& b) {
  REQUIRE(shapes(a) == shapes(b));
  for (const auto& [name, source] : a) {
    INFO(name);
    const auto x = source.bytes();
    const auto y = b.at(name).bytes();
    CHECK(source.dtype() == b.at(name).dtype());
    CHECK((x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin())));
  }
}

}  // namespace

TEST_CASE("make-model tiny: the fixture's architecture, configs and parameter counts; inspect accepts it",
          "[make_model]") {
  sdgen::test::TempDir dir;
  const fs::path made = dir.path / "tiny-random";
  make_model("--preset tiny --seed 1 -o " + quoted(made));
  const auto run = run_sdgen("inspect " + quoted(made));
  INFO(run.output);
  CHECK(run.exit_code == 0);
  // Parameter counts as diffusers computed them for the fixture.
  const auto params = nlohmann::json::parse(sdgen::weights::read_text_file(
      sdgen::test::data_dir() / "models" / "tiny" / "oracle_model_info.json"))["params"];
  for (const char* component : {"unet", "vae", "text_encoder"})
    CHECK_THAT(run.output, Catch::Contains(std::string(component) + ": ") &&
                               Catch::Contains(std::to_string(params[component].get<long long>()) + " parameters"));

  const OpenedModel model = open(made);
  const OpenedModel fixture = open(sdgen::test::data_dir() / "models" / "tiny");
  CHECK(shapes(model.unet_tensors) == shapes(fixture.unet_tensors));
  CHECK(shapes(model.vae_tensors) == shapes(fixture.vae_tensors));
  // The fixture's text encoder (transformers < 4.31) also stores position_ids, a buffer sdgen
  // ignores and does not write.
  auto fixture_text = shapes(fixture.text_encoder_tensors);
  fixture_text.erase("text_model.embeddings.position_ids");
  CHECK(shapes(model.text_encoder_tensors) == fixture_text);
  check_same(model.unet, fixture.unet);
  check_same(model.vae, fixture.vae);
  check_same(model.text_encoder, fixture.text_encoder);
  check_same(model.scheduler, fixture.scheduler);
  // The tokenizer is the fixture's, byte for byte.
  for (const char* file : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    CHECK(sdgen::weights::read_text_file(model.tokenizer_dir / file) ==
          sdgen::weights::read_text_file(fixture.tokenizer_dir / file));
  CHECK(dir.names() == std::vector<std::string>{"tiny-random"});  // no staging folder left
}

TEST_CASE("every preset's configs survive being written and read back", "[make_model]") {
  using namespace sdgen::weights;
  for (const PresetId id : {PresetId::SD15, PresetId::SD21, PresetId::SD21Base}) {
    const Preset& p = get_preset(id);
    INFO(p.name);
    check_same(parse_unet_config(sdgen::app::unet_config_json(p.unet), "unet"), p.unet);
    check_same(parse_vae_config(sdgen::app::vae_config_json(p.vae), "vae"), p.vae);
    check_same(parse_text_encoder_config(sdgen::app::text_encoder_config_json(p.text_encoder), "text"),
               p.text_encoder);
    check_same(parse_scheduler_config(sdgen::app::scheduler_config_json(p.scheduler), "scheduler"), p.scheduler);
    CHECK_NOTHROW(parse_model_index(sdgen::app::model_index_json(p.scheduler), "model_index.json"));
  }
  // Python's bare -Infinity (what diffusers writes for DPM-Solver's default lambda_min_clipped).
  SchedulerConfig dpm;
  dpm.class_name = "DPMSolverMultistepScheduler";
  dpm.lambda_min_clipped = -std::numeric_limits<double>::infinity();
  const std::string text = sdgen::app::scheduler_config_json(dpm);
  CHECK_THAT(text, Catch::Contains("\"lambda_min_clipped\": -Infinity"));
  check_same(parse_scheduler_config(text, "scheduler"), dpm);
}

TEST_CASE("the single file holds the folder's tensors under LDM keys, for CLIP and OpenCLIP", "[make_model]") {
  sdgen::test::TempDir dir;
  for (const std::string preset : {"tiny", "tiny-sd2"}) {
    INFO(preset);
    const fs::path folder = dir.path / preset;
    const fs::path single = dir.path / (preset + ".safetensors");
    make_model("--preset " + preset + " --seed 5 --dtype bf16 -o " + quoted(folder) + " --single-file " +
               quoted(single));
    const auto run = run_sdgen("inspect " + quoted(single) + " --config " + quoted(folder));
    INFO(run.output);
    CHECK(run.exit_code == 0);
    CHECK_THAT(run.output, Catch::Contains("layout: single-file checkpoint"));
    CHECK_THAT(run.output, Catch::Contains(preset == "tiny" ? "family: SD 1.x" : "family: SD 2.x"));

    const OpenedModel from_folder = open(folder);
    const OpenedModel from_file = open(single, folder);
    CHECK(from_file.ignored_keys.empty());
    check_same_bytes(from_folder.unet_tensors, from_file.unet_tensors);
    check_same_bytes(from_folder.vae_tensors, from_file.vae_tensors);
    check_same_bytes(from_folder.text_encoder_tensors, from_file.text_encoder_tensors);
    // SD 2.x: OpenCLIP's fused q/k/v, as real SD 2.x checkpoints store it.
    const auto& stored = *from_file.files.front();
    if (preset == "tiny-sd2")
      CHECK(stored.find("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight") != nullptr);
    else
      CHECK(stored.find("cond_stage_model.transformer.text_model.final_layer_norm.weight") != nullptr);
  }
}

TEST_CASE("random values follow torch's initialisation and depend only on the seed", "[make_model]") {
  sdgen::test::TempDir dir;
  make_model("--preset tiny --seed 7 -o " + quoted(dir.path / "a"));
  make_model("--preset tiny --seed 7 -o " + quoted(dir.path / "b"));
  make_model("--preset tiny --seed 8 -o " + quoted(dir.path / "c"));
  const OpenedModel a = open(dir.path / "a"), b = open(dir.path / "b"), c = open(dir.path / "c");
  check_same_bytes(a.unet_tensors, b.unet_tensors);  // same seed: same model
  const auto conv = a.unet_tensors.at("up_blocks.0.resnets.0.conv1.weight");  // [64, 128, 3, 3]
  CHECK(conv.to_f32() != c.unet_tensors.at("up_blocks.0.resnets.0.conv1.weight").to_f32());

  // torch's default for a convolution: uniform in +-1/sqrt(fan_in), fan_in = 128 * 3 * 3.
  const auto values = conv.to_f32();
  const double bound = 1 / std::sqrt(128.0 * 9);
  double sum = 0, sum_sq = 0;
  for (float v : values) {
    CHECK(std::abs(v) <= bound);
    sum += v;
    sum_sq += double(v) * v;
  }
  const double n = double(values.size());  // 73,728 values
  // A uniform variable on [-b, b] has mean 0 and standard deviation b/sqrt(3); over 73,728 draws
  // the sample mean's standard error is 0.0037 b and the standard deviation's about 0.2%, so
  // 0.02 b and 2% are five-sigma bounds or wider.
  CHECK(std::abs(sum / n) < 0.02 * bound);
  CHECK(std::sqrt(sum_sq / n) == Approx(bound / std::sqrt(3.0)).epsilon(0.02));
  // The bias beside it: the same bound; GroupNorm: scale 1, shift 0.
  for (float v : a.unet_tensors.at("up_blocks.0.resnets.0.conv1.bias").to_f32()) CHECK(std::abs(v) <= bound);
  for (float v : a.unet_tensors.at("up_blocks.0.resnets.0.norm1.weight").to_f32()) CHECK(v == 1.0f);
  for (float v : a.unet_tensors.at("up_blocks.0.resnets.0.norm1.bias").to_f32()) CHECK(v == 0.0f);
}

TEST_CASE("make-model refuses to overwrite and checks its inputs before writing", "[make_model]") {
  sdgen::test::TempDir dir;
  dir.write("existing.safetensors", "x");
  fs::create_directory(dir.path / "full");
  dir.write("full/file", "x");
  fs::create_directory(dir.path / "empty");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--preset tiny -o " + quoted(dir.path / "full"), "is not empty"},
      {"--preset tiny -o " + quoted(dir.path / "new") + " --single-file " + quoted(dir.path / "existing.safetensors"),
       "already exists"},
      {"--preset tiny -o " + quoted(dir.path / "new") + " --tokenizer " + quoted(dir.path), "has no vocab.json"},
      {"--preset sd99 -o " + quoted(dir.path / "new"), "sd99 not in"},
      {"--preset tiny -o " + quoted(dir.path / "existing.safetensors" / "sub"), "not a directory"},
  };
  for (const auto& [arguments, message] : cases) {
    const auto run = run_sdgen("make-model " + arguments);
    INFO(arguments << "\n" << run.output);
    CHECK(run.exit_code == 2);
    CHECK_THAT(run.output, Catch::Contains(message));
    CHECK(std::count(run.output.begin(), run.output.end(), '\n') == 1);  // one line
  }
  CHECK(dir.names() == std::vector<std::string>{"empty", "existing.safetensors", "full"});  // nothing written

  // An empty directory is fine, and --tokenizer copies a folder's files.
  make_model("--preset tiny -o " + quoted(dir.path / "empty") + " --tokenizer " +
             quoted(sdgen::test::data_dir() / "models" / "tiny-sd2" / "tokenizer"));
  CHECK(sdgen::weights::read_text_file(dir.path / "empty" / "tokenizer" / "tokenizer_config.json") ==
        sdgen::weights::read_text_file(sdgen::test::data_dir() / "models" / "tiny-sd2" / "tokenizer" /
                                       "tokenizer_config.json"));
  CHECK(run_sdgen("inspect " + quoted(dir.path / "empty")).exit_code == 0);
}
