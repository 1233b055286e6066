// The LDM -> diffusers key mapping is checked three ways:
//  * against the reference: tiny-ldm.safetensors (the `tiny` model saved in the original layout)
//    must map to exactly the tensors of the `tiny` diffusers folder: the same names in both
//    directions, the same shapes and dtypes, and the same bytes (the mapping never converts, so
//    equality is exact, no tolerance);
//  * for full-size SD 1.5 and 2.1, against the well-known landmarks of the SD 1.5 conversion
//    (which input_blocks index is which downsampler, where the upsamplers sit, the reversed VAE
//    decoder), with the presets' configs (the hub repositories' own config files), so the index
//    arithmetic is tested at the size users run; the tiny model has no upsampler after an
//    attention, for one;
//  * on synthetic files for what the fixtures lack: an SD 2.x OpenCLIP text encoder (fused q/k/v
//    split by rows, the unused 24th layer ignored), the ignore rules, unexpected keys, and the
//    shape and duplicate-name errors, whose messages must name the tensor.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "tests/support/paths.hpp"
#include "weights/configs.hpp"
#include "weights/file_io.hpp"
#include "weights/key_mapping.hpp"
#include "weights/presets.hpp"
#include "weights/safetensors.hpp"

namespace fs = std::filesystem;
using namespace sdgen::weights;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sdgen-km-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The configs of tests/data/models/tiny, through the same parsers a model folder goes through.
fs::path tiny_config(std::string_view component) {
  return sdgen::test::data_dir() / "models/tiny" / component / "config.json";
}
UNetConfig tiny_unet() {
  return parse_unet_config(read_text_file(tiny_config("unet")), tiny_config("unet"));
}
VaeConfig tiny_vae() {
  return parse_vae_config(read_text_file(tiny_config("vae")), tiny_config("vae"));
}
TextEncoderConfig tiny_text_encoder() {
  return parse_text_encoder_config(read_text_file(tiny_config("text_encoder")),
                                   tiny_config("text_encoder"));
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Builds a small safetensors file; keeps the bytes alive until it is written.
class FileBuilder {
 public:
  void f32(std::string name, std::vector<std::int64_t> shape, const std::vector<float>& values) {
    add(std::move(name), sdgen::DType::F32, std::move(shape), values.data(), values.size() * 4);
  }
  void f16(std::string name, std::vector<std::int64_t> shape, const std::vector<float>& values) {
    std::vector<std::uint16_t> bits;
    for (float v : values) bits.push_back(sdgen::f32_to_f16(v));
    add(std::move(name), sdgen::DType::F16, std::move(shape), bits.data(), bits.size() * 2);
  }
  // A tensor whose values do not matter to the test.
  void zeros(std::string name, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    f32(std::move(name), std::move(shape), std::vector<float>(std::size_t(n), 0.0f));
  }
  fs::path write(const fs::path& path) const {
    write_safetensors(path, tensors_);
    return path;
  }

 private:
  void add(std::string name, sdgen::DType dtype, std::vector<std::int64_t> shape, const void* data,
           std::size_t bytes) {
    auto& stored = storage_.emplace_back(bytes);
    std::memcpy(stored.data(), data, bytes);
    tensors_.push_back(
        {std::move(name), dtype, std::move(shape), std::span<const std::byte>(stored)});
  }
  std::deque<std::vector<std::byte>> storage_;
  std::vector<TensorToWrite> tensors_;
};

// `mapped` must hold exactly the tensors of `reference`, with equal dtype, shape and bytes.
void check_same_tensors(const ComponentTensors& mapped, const SafeTensorsFile& reference) {
  std::vector<std::string> missing, extra;
  for (const TensorInfo& t : reference.tensors())
    if (!mapped.contains(t.name)) missing.push_back(t.name);
  for (const auto& [name, source] : mapped)
    if (reference.find(name) == nullptr) extra.push_back(name);
  INFO("reference " << reference.path());
  CHECK(missing == std::vector<std::string>{});
  CHECK(extra == std::vector<std::string>{});

  for (const TensorInfo& want : reference.tensors()) {
    const auto it = mapped.find(want.name);
    if (it == mapped.end()) continue;
    const TensorSource& got = it->second;
    INFO(want.name << " <- " << got.stored->name);
    CHECK(got.file != nullptr);
    CHECK(got.dtype() == want.dtype);
    CHECK(got.shape == want.shape);
    const auto got_bytes = got.bytes();
    const auto want_bytes = reference.bytes(want);
    REQUIRE(got_bytes.size() == want_bytes.size());
    CHECK(std::memcmp(got_bytes.data(), want_bytes.data(), want_bytes.size()) == 0);
  }
}

// Message checks: the error must be a ModelError containing every part.
void check_error(const std::function<void()>& call, const std::vector<std::string>& parts) {
  try {
    call();
    FAIL("no ModelError thrown");
  } catch (const sdgen::ModelError& e) {
    const std::string message = e.what();
    INFO(message);
    for (const std::string& part : parts) CHECK(message.find(part) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("tiny-ldm.safetensors maps to exactly the tiny diffusers folder, byte for byte",
          "[key_mapping]") {
  const fs::path models = sdgen::test::data_dir() / "models";
  const SafeTensorsFile ldm(models / "tiny-ldm.safetensors");

  const auto info = inspect_ldm_checkpoint(ldm);
  REQUIRE(info.has_value());
  CHECK(info->text_encoder == LdmTextEncoder::Clip);
  CHECK(info->text_hidden_size == 32);  // hidden_size in tiny/text_encoder/config.json

  const LdmMapping mapping = map_ldm_checkpoint(ldm, tiny_unet(), tiny_vae(), tiny_text_encoder());
  CHECK(mapping.unexpected_keys == std::vector<std::string>{});
  CHECK(mapping.ignored_keys == std::vector<std::string>{});

  SECTION("unet") {
    check_same_tensors(mapping.unet,
                       SafeTensorsFile(models / "tiny/unet/diffusion_pytorch_model.safetensors"));
  }
  SECTION("vae") {
    check_same_tensors(mapping.vae,
                       SafeTensorsFile(models / "tiny/vae/diffusion_pytorch_model.safetensors"));
  }
  SECTION("text encoder") {
    check_same_tensors(mapping.text_encoder,
                       SafeTensorsFile(models / "tiny/text_encoder/model.safetensors"));
  }
}

TEST_CASE("a diffusers component file is not an LDM checkpoint", "[key_mapping]") {
  const SafeTensorsFile unet(sdgen::test::data_dir() /
                             "models/tiny/unet/diffusion_pytorch_model.safetensors");
  CHECK_FALSE(inspect_ldm_checkpoint(unet).has_value());
}

TEST_CASE("full-size SD 1.x/2.x keys land where the SD 1.5 conversion puts them", "[key_mapping]") {
  // LDM key -> diffusers name, for the places where the index arithmetic can go wrong: each
  // level's first resnet and downsampler, the mid block, each up level's upsampler (after the
  // attention where there is one), the last level's attentions, and the reversed VAE decoder.
  const std::map<std::string, std::string> unet_landmarks = {
      {"input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
       "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"},
      {"input_blocks.2.0.in_layers.2.weight", "down_blocks.0.resnets.1.conv1.weight"},
      {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
      {"input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
      {"input_blocks.6.0.op.bias", "down_blocks.1.downsamplers.0.conv.bias"},
      {"input_blocks.8.1.proj_in.weight", "down_blocks.2.attentions.1.proj_in.weight"},
      {"input_blocks.9.0.op.weight", "down_blocks.2.downsamplers.0.conv.weight"},
      {"input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"},
      {"middle_block.1.transformer_blocks.0.norm3.bias",
       "mid_block.attentions.0.transformer_blocks.0.norm3.bias"},
      {"middle_block.2.emb_layers.1.weight", "mid_block.resnets.1.time_emb_proj.weight"},
      {"output_blocks.0.0.skip_connection.bias", "up_blocks.0.resnets.0.conv_shortcut.bias"},
      {"output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
      {"output_blocks.3.1.norm.weight", "up_blocks.1.attentions.0.norm.weight"},
      {"output_blocks.5.2.conv.weight", "up_blocks.1.upsamplers.0.conv.weight"},
      {"output_blocks.8.2.conv.bias", "up_blocks.2.upsamplers.0.conv.bias"},
      {"output_blocks.9.0.in_layers.0.weight", "up_blocks.3.resnets.0.norm1.weight"},
      {"output_blocks.11.1.transformer_blocks.0.ff.net.2.weight",
       "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight"},
      {"out.2.weight", "conv_out.weight"},
  };
  const std::map<std::string, std::string> vae_landmarks = {
      {"encoder.down.0.block.1.conv2.weight", "encoder.down_blocks.0.resnets.1.conv2.weight"},
      {"encoder.down.1.block.0.nin_shortcut.weight",
       "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"},
      {"encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight"},
      {"encoder.norm_out.weight", "encoder.conv_norm_out.weight"},
      {"decoder.up.3.block.2.conv1.weight", "decoder.up_blocks.0.resnets.2.conv1.weight"},
      {"decoder.up.3.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"},
      {"decoder.up.1.upsample.conv.bias", "decoder.up_blocks.2.upsamplers.0.conv.bias"},
      {"decoder.up.0.block.0.nin_shortcut.weight",
       "decoder.up_blocks.3.resnets.0.conv_shortcut.weight"},
      {"decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.to_out.0.bias"},
  };
  // Modules SD 1.5 does not have: a downsampler after the last level, an upsampler after the last
  // up level, a second transformer block, the VAE's outermost down/up samplers.
  const std::vector<std::string> not_in_sd15 = {
      "model.diffusion_model.input_blocks.12.0.op.weight",
      "model.diffusion_model.output_blocks.11.2.conv.weight",
      "model.diffusion_model.input_blocks.1.1.transformer_blocks.1.norm1.weight",
      "model.diffusion_model.output_blocks.0.1.norm.weight",
      "first_stage_model.encoder.down.3.downsample.conv.weight",
      "first_stage_model.decoder.up.0.upsample.conv.weight",
  };

  TempDir dir;
  FileBuilder builder;
  for (const auto& [ldm, diffusers] : unet_landmarks)
    builder.zeros("model.diffusion_model." + ldm, {1});
  for (const auto& [ldm, diffusers] : vae_landmarks) builder.zeros("first_stage_model." + ldm, {1});
  for (const std::string& key : not_in_sd15) builder.zeros(key, {1});
  const SafeTensorsFile file(builder.write(dir.path / "sd15-landmarks.safetensors"));

  // SD 2.x differs from SD 1.5 in widths and head sizes, not in the block structure the mapping
  // follows, so the same landmarks hold for its presets.
  for (const PresetId id : {PresetId::SD15, PresetId::SD21, PresetId::SD21Base}) {
    const Preset& preset = get_preset(id);
    DYNAMIC_SECTION("preset " << preset.name) {
      const LdmMapping mapping =
          map_ldm_checkpoint(file, preset.unet, preset.vae, preset.text_encoder);
      for (const auto& [ldm, diffusers] : unet_landmarks) {
        INFO(ldm);
        REQUIRE(mapping.unet.contains(diffusers));
        CHECK(mapping.unet.at(diffusers).stored->name == "model.diffusion_model." + ldm);
      }
      for (const auto& [ldm, diffusers] : vae_landmarks) {
        INFO(ldm);
        REQUIRE(mapping.vae.contains(diffusers));
        CHECK(mapping.vae.at(diffusers).stored->name == "first_stage_model." + ldm);
      }
      CHECK(mapping.unet.size() == unet_landmarks.size());
      CHECK(mapping.vae.size() == vae_landmarks.size());
      CHECK(sorted(mapping.unexpected_keys) == sorted(not_in_sd15));
    }
  }
}

TEST_CASE("an SD 2.x OpenCLIP text encoder is renamed, its fused q/k/v split into row blocks",
          "[key_mapping]") {
  // hidden_size 4, 2 layers used; the file holds 3 resblocks (as SD 2.x holds 24 for 23 used).
  TextEncoderConfig config;
  config.hidden_size = 4;
  config.intermediate_size = 8;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  const std::string o = "cond_stage_model.model.";
  const std::string blocks = o + "transformer.resblocks.";

  // in_proj of layer l, row r, column c holds 100 l + 10 r + c: every value distinct and exact in
  // F16, so a wrong row block or byte offset shows as a wrong value.
  const auto in_proj_weight = [](int l) {
    std::vector<float> v;
    for (int r = 0; r < 12; ++r)
      for (int c = 0; c < 4; ++c) v.push_back(float(100 * l + 10 * r + c));
    return v;
  };
  const auto in_proj_bias = [](int l) {
    std::vector<float> v;
    for (int r = 0; r < 12; ++r) v.push_back(float(-100 * l - r));
    return v;
  };

  TempDir dir;
  FileBuilder builder;
  builder.zeros("model.diffusion_model.time_embed.0.weight", {1});
  builder.zeros(o + "token_embedding.weight", {10, 4});
  builder.zeros(o + "positional_embedding", {5, 4});
  for (int l = 0; l < 3; ++l) {
    const std::string b = blocks + std::to_string(l) + ".";
    builder.zeros(b + "ln_1.weight", {4});
    builder.zeros(b + "ln_1.bias", {4});
    if (l == 1)  // one layer in F16, so the byte offsets must use the element size
      builder.f16(b + "attn.in_proj_weight", {12, 4}, in_proj_weight(l));
    else
      builder.f32(b + "attn.in_proj_weight", {12, 4}, in_proj_weight(l));
    builder.f32(b + "attn.in_proj_bias", {12}, in_proj_bias(l));
    builder.zeros(b + "attn.out_proj.weight", {4, 4});
    builder.zeros(b + "attn.out_proj.bias", {4});
    builder.zeros(b + "ln_2.weight", {4});
    builder.zeros(b + "mlp.c_fc.weight", {8, 4});
    builder.zeros(b + "mlp.c_proj.weight", {4, 8});
  }
  builder.zeros(o + "ln_final.weight", {4});
  builder.zeros(o + "text_projection", {4, 4});
  builder.zeros(o + "logit_scale", {1});
  builder.zeros("betas", {3});
  builder.zeros("posterior_mean_coef2", {3});
  builder.zeros("model_ema.decay", {1});
  builder.zeros("model_ema.diffusion_modeltime_embed0weight", {1});
  builder.zeros(blocks + "0.attn.in_proj_scale", {1});  // not an OpenCLIP name
  builder.zeros("model.diffusion_model.input_blocks.99.0.op.weight", {1});
  builder.zeros("first_stage_model.loss.logvar", {1});
  const SafeTensorsFile file(builder.write(dir.path / "sd2-like.safetensors"));

  const auto info = inspect_ldm_checkpoint(file);
  REQUIRE(info.has_value());
  CHECK(info->text_encoder == LdmTextEncoder::OpenClip);
  CHECK(info->text_hidden_size == 4);

  const LdmMapping mapping = map_ldm_checkpoint(file, tiny_unet(), tiny_vae(), config);

  std::vector<std::string> want_names = {"text_model.embeddings.token_embedding.weight",
                                         "text_model.embeddings.position_embedding.weight",
                                         "text_model.final_layer_norm.weight"};
  for (int l = 0; l < 2; ++l) {
    const std::string t = "text_model.encoder.layers." + std::to_string(l) + ".";
    for (const char* n :
         {"layer_norm1.weight", "layer_norm1.bias", "self_attn.q_proj.weight",
          "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
          "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.out_proj.weight",
          "self_attn.out_proj.bias", "layer_norm2.weight", "mlp.fc1.weight", "mlp.fc2.weight"})
      want_names.push_back(t + n);
  }
  std::vector<std::string> got_names;
  for (const auto& [name, source] : mapping.text_encoder) got_names.push_back(name);
  CHECK(got_names == sorted(want_names));
  CHECK(mapping.text_encoder.at("text_model.embeddings.position_embedding.weight").shape ==
        std::vector<std::int64_t>{5, 4});

  for (int l = 0; l < 2; ++l) {
    const std::string t = "text_model.encoder.layers." + std::to_string(l) + ".self_attn.";
    const std::vector<float> weight = in_proj_weight(l);
    const std::vector<float> bias = in_proj_bias(l);
    const char* projections[] = {"q_proj", "k_proj", "v_proj"};
    for (int p = 0; p < 3; ++p) {
      INFO("layer " << l << " " << projections[p]);
      const TensorSource& w = mapping.text_encoder.at(t + projections[p] + ".weight");
      const TensorSource& b = mapping.text_encoder.at(t + projections[p] + ".bias");
      CHECK(w.shape == std::vector<std::int64_t>{4, 4});
      CHECK(b.shape == std::vector<std::int64_t>{4});
      CHECK(w.to_f32() ==
            std::vector<float>(weight.begin() + 16 * p, weight.begin() + 16 * (p + 1)));
      CHECK(b.to_f32() == std::vector<float>(bias.begin() + 4 * p, bias.begin() + 4 * (p + 1)));
    }
  }

  std::vector<std::string> want_ignored = {
      o + "text_projection",  o + "logit_scale", "betas",
      "posterior_mean_coef2", "model_ema.decay", "model_ema.diffusion_modeltime_embed0weight"};
  for (const char* n : {"ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                        "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight",
                        "mlp.c_fc.weight", "mlp.c_proj.weight"})
    want_ignored.push_back(blocks + "2." + n);
  CHECK(sorted(mapping.ignored_keys) == sorted(want_ignored));
  CHECK(
      sorted(mapping.unexpected_keys) ==
      sorted({blocks + "0.attn.in_proj_scale", "model.diffusion_model.input_blocks.99.0.op.weight",
              "first_stage_model.loss.logvar"}));
  CHECK(mapping.unet.contains("time_embedding.linear_1.weight"));
}

TEST_CASE("tensors whose size disagrees with the configs, or that collide, are refused by name",
          "[key_mapping]") {
  TempDir dir;
  TextEncoderConfig text;
  text.hidden_size = 4;
  text.num_hidden_layers = 1;
  VaeConfig vae;
  vae.block_out_channels = {4};
  vae.layers_per_block = 1;

  SECTION("a fused in_proj that is not [3 x hidden_size, hidden_size]") {
    FileBuilder builder;
    const std::string name = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight";
    builder.zeros(name, {12, 5});
    const SafeTensorsFile file(builder.write(dir.path / "bad-in-proj.safetensors"));
    check_error([&] { map_ldm_checkpoint(file, tiny_unet(), vae, text); },
                {file.path().string(), name, "expected [12, 4]", "got [12, 5]"});
  }
  SECTION("a VAE attention weight that cannot be viewed as [C, C]") {
    FileBuilder builder;
    const std::string name = "first_stage_model.decoder.mid.attn_1.q.weight";
    builder.zeros(name, {3, 3, 1, 1});
    const SafeTensorsFile file(builder.write(dir.path / "bad-vae-attn.safetensors"));
    check_error([&] { map_ldm_checkpoint(file, tiny_unet(), vae, text); },
                {file.path().string(), name, "decoder.mid_block.attentions.0.to_q.weight",
                 "expected [4, 4]", "got [3, 3, 1, 1]"});
  }
  SECTION("a VAE attention 1x1 conv weight of the right size is viewed as [C, C]") {
    FileBuilder builder;
    builder.zeros("first_stage_model.encoder.mid.attn_1.proj_out.weight", {4, 4, 1, 1});
    const SafeTensorsFile file(builder.write(dir.path / "vae-attn.safetensors"));
    const LdmMapping mapping = map_ldm_checkpoint(file, tiny_unet(), vae, text);
    const TensorSource& w = mapping.vae.at("encoder.mid_block.attentions.0.to_out.0.weight");
    CHECK(w.shape == std::vector<std::int64_t>{4, 4});
    CHECK(w.byte_offset == 0);
  }
  SECTION("two text encoders that map to the same names") {
    FileBuilder builder;
    builder.zeros("cond_stage_model.transformer.text_model.final_layer_norm.weight", {4});
    builder.zeros("cond_stage_model.model.ln_final.weight", {4});
    const SafeTensorsFile file(builder.write(dir.path / "two-text-encoders.safetensors"));
    check_error(
        [&] { map_ldm_checkpoint(file, tiny_unet(), vae, text); },
        {file.path().string(), "cond_stage_model.transformer.text_model.final_layer_norm.weight",
         "cond_stage_model.model.ln_final.weight", "text_model.final_layer_norm.weight"});
  }
  SECTION("UNet configs whose per-block lists disagree") {
    FileBuilder builder;
    builder.zeros("model.diffusion_model.out.2.weight", {1});
    const SafeTensorsFile file(builder.write(dir.path / "unet.safetensors"));
    UNetConfig unet = tiny_unet();
    unet.layers_per_block = {2};
    check_error([&] { map_ldm_checkpoint(file, unet, vae, text); },
                {file.path().string(), "layers_per_block"});
  }
}
