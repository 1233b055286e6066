// open_model() on the layouts users download, and on the ways those go wrong.
//
// The reference for what a model holds is the fixture files themselves, read independently of the
// code under test: config values with nlohmann (configs_test.cpp), tensor counts from each
// safetensors header parsed here by hand, tensor bytes from the files read with std::ifstream.
// Byte comparisons are exact: open_model never converts, it only points into the mapped files.
//
// The malformed cases are temporary copies of the `tiny` folder with one defect each; every one
// must be refused with the right error type and a message naming the file and the problem.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "tests/support/paths.hpp"
#include "weights/file_io.hpp"
#include "weights/model.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace sdgen::weights;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sdgen-model-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

fs::path model_dir(const char* name) { return sdgen::test::data_dir() / "models" / name; }

// A writable copy of a fixture model folder.
fs::path copy_model(const char* name, const TempDir& tmp) {
  const fs::path dst = tmp.path / name;
  fs::copy(model_dir(name), dst, fs::copy_options::recursive);
  return dst;
}

void edit_json(const fs::path& p, const std::function<void(json&)>& edit) {
  json j = json::parse(read_text_file(p));
  edit(j);
  std::ofstream(p) << j.dump(2);
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

// The safetensors header of a file, read without the code under test.
json read_header(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  json h = json::parse(text);
  h.erase("__metadata__");
  return h;
}

// One tensor's bytes, read without the code under test.
std::vector<std::byte> read_tensor_bytes(const fs::path& p, const std::string& name) {
  std::ifstream in(p, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  const json offsets = read_header(p)[name]["data_offsets"];
  const auto begin = offsets[0].get<std::size_t>(), end = offsets[1].get<std::size_t>();
  std::vector<std::byte> bytes(end - begin);
  in.seekg(static_cast<std::streamoff>(8 + n + begin));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

bool same_bytes(std::span<const std::byte> a, const std::vector<std::byte>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), b.size()) == 0;
}

enum class Expect { Model, Usage };

// The message of the error open_model throws, after checking its type.
std::string open_error(const OpenOptions& options, Expect expect) {
  try {
    open_model(options);
  } catch (const sdgen::UsageError& e) {
    CHECK(expect == Expect::Usage);
    return e.what();
  } catch (const sdgen::ModelError& e) {
    CHECK(expect == Expect::Model);
    return e.what();
  }
  FAIL("open_model did not throw");
  return {};
}

void check_contains(const std::string& message, const std::vector<std::string>& parts) {
  INFO("message: " << message);
  for (const auto& part : parts) CHECK(message.find(part) != std::string::npos);
}

// fp16 copies of every tensor of `src`, written to `dst`.
void write_fp16_copy(const fs::path& src, const fs::path& dst) {
  const SafeTensorsFile file(src);
  std::vector<std::vector<std::uint16_t>> halves;
  std::vector<TensorToWrite> out;
  halves.reserve(file.tensors().size());
  for (const auto& t : file.tensors()) {
    auto& h = halves.emplace_back();
    for (float v : file.to_f32(t)) h.push_back(sdgen::f32_to_f16(v));
    out.push_back({t.name, sdgen::DType::F16, t.shape, std::as_bytes(std::span(h))});
  }
  write_safetensors(dst, out);
}

}  // namespace

TEST_CASE("diffusers folders open with every tensor of every component", "[weights][model]") {
  for (const char* name : {"tiny", "tiny-sd2"}) {
    INFO(name);
    const fs::path dir = model_dir(name);
    const OpenedModel m = open_model({.model = dir});
    CHECK(m.layout == ModelLayout::DiffusersFolder);
    CHECK(m.config_origin == "model folder");
    CHECK(m.tokenizer_dir == dir / "tokenizer");
    CHECK(m.family == (std::string(name) == "tiny" ? ModelFamily::SD1 : ModelFamily::SD2));

    // Counts from the headers: 304 / 180 / 36 (tiny) and 304 / 180 / 52 (tiny-sd2: 3 layers).
    const fs::path unet = dir / "unet" / "diffusion_pytorch_model.safetensors";
    const fs::path vae = dir / "vae" / "diffusion_pytorch_model.safetensors";
    const fs::path text = dir / "text_encoder" / "model.safetensors";
    CHECK(m.unet_tensors.size() == read_header(unet).size());
    CHECK(m.vae_tensors.size() == read_header(vae).size());
    CHECK(m.text_encoder_tensors.size() == read_header(text).size());

    const json scheduler = json::parse(read_text_file(dir / "scheduler" / "scheduler_config.json"));
    CHECK(m.scheduler.class_name == scheduler["_class_name"].get<std::string>());
    CHECK(m.scheduler.prediction_type.has_value() == scheduler.contains("prediction_type"));

    // Names, shapes and bytes are the files' own.
    for (const auto& [component, path] : {std::pair{&m.unet_tensors, unet}, {&m.vae_tensors, vae},
                                          {&m.text_encoder_tensors, text}}) {
      const json header = read_header(path);
      for (const auto& [tensor, entry] : header.items()) {
        const auto it = component->find(tensor);
        REQUIRE(it != component->end());
        CHECK(it->second.shape == entry["shape"].get<std::vector<std::int64_t>>());
        CHECK(it->second.dtype() == sdgen::DType::F32);
      }
    }
    const std::string probe = "conv_in.weight";
    CHECK(same_bytes(m.unet_tensors.at(probe).bytes(), read_tensor_bytes(unet, probe)));
    const auto values = m.unet_tensors.at(probe).to_f32();
    CHECK(std::memcmp(values.data(), read_tensor_bytes(unet, probe).data(), values.size() * 4) == 0);
  }
}

TEST_CASE("--prediction overrides the scheduler's prediction_type", "[weights][model]") {
  const auto sd2 = model_dir("tiny-sd2");
  CHECK(open_model({.model = sd2}).scheduler.prediction_type == "v_prediction");
  CHECK(open_model({.model = sd2, .prediction = PredictionOverride::Epsilon}).scheduler.prediction_type == "epsilon");
  CHECK(open_model({.model = model_dir("tiny"), .prediction = PredictionOverride::VPrediction})
            .scheduler.prediction_type == "v_prediction");
}

TEST_CASE("full-precision weights are preferred unless fp16 is asked for or is all there is", "[weights][model]") {
  TempDir tmp;
  const fs::path dir = copy_model("tiny", tmp);
  const fs::path full = dir / "unet" / "diffusion_pytorch_model.safetensors";
  const fs::path fp16 = dir / "unet" / "diffusion_pytorch_model.fp16.safetensors";
  write_fp16_copy(full, fp16);

  const OpenedModel by_default = open_model({.model = dir});
  CHECK(by_default.unet_tensors.at("conv_in.weight").file->path() == full);
  CHECK(by_default.unet_tensors.at("conv_in.weight").dtype() == sdgen::DType::F32);

  const OpenedModel asked = open_model({.model = dir, .variant = WeightVariant::Fp16});
  CHECK(asked.unet_tensors.size() == read_header(full).size());
  CHECK(asked.unet_tensors.at("conv_in.weight").file->path() == fp16);
  CHECK(asked.unet_tensors.at("conv_in.weight").dtype() == sdgen::DType::F16);
  // The VAE has no fp16 file, so it falls back to full precision.
  CHECK(asked.vae_tensors.begin()->second.dtype() == sdgen::DType::F32);

  fs::remove(full);
  const OpenedModel only_fp16 = open_model({.model = dir});
  CHECK(only_fp16.unet_tensors.at("conv_in.weight").file->path() == fp16);
  // f16 rounding of the original value: the file holds exactly what f32_to_f16 produced.
  const auto original = SafeTensorsFile(model_dir("tiny") / "unet" / "diffusion_pytorch_model.safetensors");
  const auto want = original.to_f32(original.at("conv_in.weight"));
  const auto got = only_fp16.unet_tensors.at("conv_in.weight").to_f32();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == sdgen::f16_to_f32(sdgen::f32_to_f16(want[i])));
}

TEST_CASE("sharded weights are read through their index's weight_map", "[weights][model]") {
  TempDir tmp;
  const fs::path dir = copy_model("tiny", tmp);
  const fs::path reference = model_dir("tiny") / "unet" / "diffusion_pytorch_model.safetensors";
  fs::remove(dir / "unet" / "diffusion_pytorch_model.safetensors");

  const SafeTensorsFile file(reference);
  std::vector<TensorToWrite> shard[2];
  json weight_map;
  const char* names[2] = {"diffusion_pytorch_model-00001-of-00002.safetensors",
                          "diffusion_pytorch_model-00002-of-00002.safetensors"};
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const auto& t = file.tensors()[i];
    shard[i % 2].push_back({t.name, t.dtype, t.shape, file.bytes(t)});
    weight_map[t.name] = names[i % 2];
  }
  for (int s = 0; s < 2; ++s) write_safetensors(dir / "unet" / names[s], shard[s]);
  const fs::path index = dir / "unet" / "diffusion_pytorch_model.safetensors.index.json";
  write_text(index, json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());

  const OpenedModel m = open_model({.model = dir});
  const json header = read_header(reference);
  CHECK(m.unet_tensors.size() == header.size());
  for (const auto& [tensor, entry] : header.items())
    CHECK(same_bytes(m.unet_tensors.at(tensor).bytes(), read_tensor_bytes(reference, tensor)));

  // A tensor listed under the wrong shard is an error, naming the tensor.
  weight_map["conv_in.weight"] = weight_map["conv_in.weight"] == names[0] ? names[1] : names[0];
  write_text(index, json{{"weight_map", weight_map}}.dump());
  check_contains(open_error({.model = dir}, Expect::Model),
                 {"diffusion_pytorch_model.safetensors.index.json", "conv_in.weight", "does not contain it"});
}

TEST_CASE("malformed model folders are refused with the file and the problem", "[weights][model]") {
  struct Case {
    const char* what;
    std::function<void(const fs::path&)> damage;  // applied to a copy of tiny
    Expect expect;
    std::vector<std::string> message;  // all must appear
  };
  const auto unet_cfg = [](const fs::path& d) { return d / "unet" / "config.json"; };
  const std::vector<Case> cases = {
      {"no model_index.json", [](const fs::path& d) { fs::remove(d / "model_index.json"); }, Expect::Model,
       {"model_index.json", "missing"}},
      {"a missing component folder", [](const fs::path& d) { fs::remove_all(d / "vae"); }, Expect::Model,
       {"vae", "missing component folder"}},
      {"a missing config", [](const fs::path& d) { fs::remove(d / "text_encoder" / "config.json"); }, Expect::Model,
       {"text_encoder/config.json", "missing config"}},
      {"a config that is not JSON", [](const fs::path& d) { write_text(d / "vae" / "config.json", "{ \"act_fn\": "); },
       Expect::Model, {"vae/config.json", "not valid JSON"}},
      {"an SDXL addition embedding",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["addition_embed_type"] = "text_time"; }); },
       Expect::Model, {"unet/config.json", "addition_embed_type", "SDXL"}},
      {"an unknown block type",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["down_block_types"][1] = "AttnDownBlock2D"; }); },
       Expect::Model, {"unet/config.json", "down_block_types", "AttnDownBlock2D"}},
      {"class embeddings",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["class_embed_type"] = "timestep"; }); },
       Expect::Model, {"unet/config.json", "class_embed_type"}},
      {"a per-block list of the wrong length",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["attention_head_dim"] = {8, 8, 8}; }); },
       Expect::Model, {"unet/config.json", "attention_head_dim", "3 entries", "2 blocks"}},
      {"a non-positive size",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["layers_per_block"] = 0; }); },
       Expect::Model, {"unet/config.json", "layers_per_block", "positive"}},
      {"channels not divisible by the norm groups",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["block_out_channels"] = {48, 64}; }); },
       Expect::Model, {"unet/config.json", "block_out_channels", "norm_num_groups"}},
      {"channels not divisible by the heads",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["attention_head_dim"] = 5; }); },
       Expect::Model, {"unet/config.json", "attention_head_dim", "5 heads", "32 channels"}},
      {"a key of the wrong type",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["in_channels"] = "four"; }); },
       Expect::Model, {"unet/config.json", "in_channels", "integer"}},
      {"an unknown text encoder activation",
       [](const fs::path& d) {
         edit_json(d / "text_encoder" / "config.json", [](json& j) { j["hidden_act"] = "relu"; });
       },
       Expect::Model, {"text_encoder/config.json", "hidden_act", "relu"}},
      {"VAE block lists of different lengths",
       [](const fs::path& d) {
         edit_json(d / "vae" / "config.json", [](json& j) { j["up_block_types"].erase(0); });
       },
       Expect::Model, {"vae/config.json", "up_block_types", "3 blocks"}},
      {"an SDXL pipeline",
       [](const fs::path& d) {
         edit_json(d / "model_index.json", [](json& j) { j["text_encoder_2"] = {"transformers", "CLIPTextModel"}; });
       },
       Expect::Model, {"model_index.json", "text_encoder_2", "SDXL"}},
      {"a UNet that cannot attend to the text encoder",
       [](const fs::path& d) {
         edit_json(d / "text_encoder" / "config.json", [](json& j) { j["hidden_size"] = 64; });
       },
       Expect::Model, {"unet/config.json", "cross_attention_dim", "text_encoder/config.json", "hidden_size"}},
      {"an inpainting UNet",
       [&](const fs::path& d) { edit_json(unet_cfg(d), [](json& j) { j["in_channels"] = 9; }); },
       Expect::Model, {"unet/config.json", "in_channels", "latent_channels"}},
      {"weights only as pickles",
       [](const fs::path& d) {
         fs::rename(d / "unet" / "diffusion_pytorch_model.safetensors", d / "unet" / "diffusion_pytorch_model.bin");
       },
       Expect::Model, {"unet/diffusion_pytorch_model.bin", "arbitrary code", "safetensors"}},
      {"no weights at all", [](const fs::path& d) { fs::remove(d / "vae" / "diffusion_pytorch_model.safetensors"); },
       Expect::Model, {"vae", "no weights found", "diffusion_pytorch_model.safetensors"}},
      {"truncated weights",
       [](const fs::path& d) {
         const fs::path p = d / "text_encoder" / "model.safetensors";
         fs::resize_file(p, fs::file_size(p) / 2);
       },
       Expect::Model, {"text_encoder/model.safetensors", "truncated"}},
      {"no tokenizer", [](const fs::path& d) { fs::remove_all(d / "tokenizer"); }, Expect::Model,
       {"tokenizer", "--tokenizer"}},
      {"a shard outside the folder",
       [](const fs::path& d) {
         fs::remove(d / "unet" / "diffusion_pytorch_model.safetensors");
         write_text(d / "unet" / "diffusion_pytorch_model.safetensors.index.json",
                    R"({"weight_map": {"conv_in.weight": "../secret.safetensors"}})");
       },
       Expect::Model, {"diffusion_pytorch_model.safetensors.index.json", "../secret.safetensors", "same folder"}},
  };
  for (const auto& c : cases) {
    SECTION(c.what) {
      TempDir tmp;
      const fs::path dir = copy_model("tiny", tmp);
      c.damage(dir);
      check_contains(open_error({.model = dir}, c.expect), c.message);
    }
  }
}

TEST_CASE("wrong paths are refused with what is missing", "[weights][model]") {
  TempDir tmp;
  check_contains(open_error({.model = tmp.path / "nowhere"}, Expect::Usage), {"nowhere", "does not exist"});
  check_contains(open_error({.model = model_dir("tiny") / "unet"}, Expect::Model),
                 {"unet", "model_index.json", "component"});
  write_text(tmp.path / "notes.txt", "hello");
  check_contains(open_error({.model = tmp.path / "notes.txt"}, Expect::Usage), {"notes.txt", "single-file"});
  check_contains(open_error({.model = model_dir("tiny"), .config_dir = model_dir("tiny")}, Expect::Usage),
                 {"--config", "single-file"});
}

TEST_CASE("pickle checkpoints are refused with the danger and the way out", "[weights][model]") {
  TempDir tmp;
  for (const char* name : {"v1-5-pruned.ckpt", "model.pt", "model.PTH", "pytorch_model.bin"}) {
    INFO(name);
    write_text(tmp.path / name, std::string("\x80\x02}q\x00.", 6));  // a pickle's first bytes
    check_contains(open_error({.model = tmp.path / name}, Expect::Model),
                   {name, "arbitrary code", ".safetensors", "convert"});
  }
}

TEST_CASE("single files: tokenizer, configs from a folder or a preset", "[weights][model]") {
  const fs::path ldm = sdgen::test::data_dir() / "models" / "tiny-ldm.safetensors";

  SECTION("without a tokenizer, the message says which flag and where the files are") {
    check_contains(open_error({.model = ldm}, Expect::Usage),
                   {"tiny-ldm.safetensors", "no tokenizer", "--tokenizer", "tokenizer/",
                    "stable-diffusion-v1-5/stable-diffusion-v1-5", "--config"});
  }
  SECTION("a config folder without tokenizer/ asks for --tokenizer too") {
    TempDir tmp;
    const fs::path configs = copy_model("tiny", tmp);
    fs::remove_all(configs / "tokenizer");
    check_contains(open_error({.model = ldm, .config_dir = configs}, Expect::Usage), {"--tokenizer", "tokenizer/"});
  }
  SECTION("the SD 1.5 preset does not fit the 32-wide tiny text encoder") {
    check_contains(open_error({.model = ldm, .tokenizer_dir = model_dir("tiny") / "tokenizer"}, Expect::Model),
                   {"tiny-ldm.safetensors", "32 wide", "hidden_size", "768", "--config"});
  }
  SECTION("with the tiny configs, it holds exactly the tiny folder's tensors") {
    const OpenedModel folder = open_model({.model = model_dir("tiny")});
    const OpenedModel single = open_model({.model = ldm, .config_dir = model_dir("tiny")});
    CHECK(single.layout == ModelLayout::SingleFile);
    CHECK(single.family == ModelFamily::SD1);
    CHECK(single.tokenizer_dir == model_dir("tiny") / "tokenizer");
    CHECK(single.config_origin.find("config folder") == 0);
    CHECK(single.unet.block_out_channels == folder.unet.block_out_channels);
    CHECK(single.scheduler.class_name == folder.scheduler.class_name);
    for (const auto& [got, want] : {std::pair{&single.unet_tensors, &folder.unet_tensors},
                                    {&single.vae_tensors, &folder.vae_tensors},
                                    {&single.text_encoder_tensors, &folder.text_encoder_tensors}}) {
      REQUIRE(got->size() == want->size());
      for (const auto& [name, source] : *want) {
        INFO(name);
        const auto it = got->find(name);
        REQUIRE(it != got->end());
        CHECK(it->second.shape == source.shape);
        CHECK(it->second.to_f32() == source.to_f32());
      }
    }
  }
  SECTION("an SDXL single file is refused") {
    TempDir tmp;
    const float zero = 0;
    const std::vector<TensorToWrite> tensors = {
        {"model.diffusion_model.input_blocks.0.0.bias", sdgen::DType::F32, {1}, std::as_bytes(std::span(&zero, 1))},
        {"conditioner.embedders.0.transformer.text_model.final_layer_norm.bias", sdgen::DType::F32, {1},
         std::as_bytes(std::span(&zero, 1))}};
    write_safetensors(tmp.path / "xl.safetensors", tensors);
    check_contains(open_error({.model = tmp.path / "xl.safetensors"}, Expect::Model),
                   {"xl.safetensors", "conditioner.embedders", "SDXL"});
  }
  SECTION("a diffusers component file is not a checkpoint") {
    check_contains(
        open_error({.model = model_dir("tiny") / "vae" / "diffusion_pytorch_model.safetensors"}, Expect::Model),
        {"diffusion_pytorch_model.safetensors", "model.diffusion_model", "model_index.json"});
  }
}
