// The safetensors reader treats every file as hostile. The table below holds one malformed file per
// rule the reader enforces; each must be refused with a ModelError whose message names the file and
// (where there is one) the tensor, before any tensor byte is read. Well-formed files, including
// __metadata__, empty tensors and every float dtype, must round-trip through the writer.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "weights/safetensors.hpp"

namespace fs = std::filesystem;
using sdgen::ModelError;
using sdgen::weights::SafeTensorsFile;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sdgen-st-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file made of a header (declared length = actual length) and `data_bytes` zero bytes.
std::string with_header(const std::string& json, std::size_t data_bytes) {
  return le64(json.size()) + json + std::string(data_bytes, '\0');
}

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

struct BadFile {
  const char* what;
  std::string bytes;
  const char* message_part;  // the message must contain this (and the file name)
};

}  // namespace

TEST_CASE("malformed safetensors files are refused with a message naming file and tensor",
          "[safetensors]") {
  const std::string ok_entry = R"("w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  const std::vector<BadFile> cases = {
      {"shorter than the length prefix", "abc", "too short"},
      {"header length beyond the file", le64(1000) + "{}", "header length 1000"},
      {"header length over the 100 MiB cap", le64(std::uint64_t(1) << 40) + "{}", "100 MiB"},
      {"header is not JSON", with_header("{\"w\": [", 0), "not valid JSON"},
      {"header is a JSON array", with_header("[1, 2, 3]", 0), "not a JSON object"},
      {"unknown dtype", with_header(R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': unsupported dtype 'F8_E4M3'"},
      {"entry without dtype", with_header(R"({"w": {"shape": [4], "data_offsets": [0, 16]}})", 16),
       "tensor 'w': entry needs dtype"},
      {"negative dimension", with_header(R"({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", 16),
       "tensor 'w': shape must hold non-negative integers"},
      {"shape that overflows", with_header(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 16]}})", 16),
       "tensor 'w': shape is absurdly large"},
      {"three data offsets", with_header(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}})", 16),
       "tensor 'w': data_offsets must be two"},
      {"offsets running backwards", with_header(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", 16),
       "tensor 'w': data_offsets [16, 0] run backwards"},
      {"range outside the data area (truncated file)", with_header("{" + ok_entry + "}", 12),
       "tensor 'w': data offsets [0, 16] lie outside the data area (12 bytes)"},
      {"shape disagrees with the byte range", with_header(R"({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}})", 16),
       "tensor 'w': shape [2, 2] of F16 needs 8 bytes but data_offsets span 16"},
      {"overlapping tensors", with_header("{" + ok_entry + R"(, "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 16),
       "overlap"},
      {"metadata that is not an object of strings", with_header(R"({"__metadata__": {"format": 1}})", 0),
       "__metadata__ value for 'format' is not a string"},
      {"a tensor with an empty name", with_header(R"({"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4),
       "empty name"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) {
      const fs::path p = dir.path / "bad.safetensors";
      write_raw(p, c.bytes);
      REQUIRE_THROWS_MATCHES(SafeTensorsFile(p), ModelError,
                             Catch::Matchers::Predicate<ModelError>(
                                 [&](const ModelError& e) {
                                   const std::string m = e.what();
                                   return m.find(p.string()) != std::string::npos &&
                                          m.find(c.message_part) != std::string::npos;
                                 },
                                 std::string("message names the file and says: ") + c.message_part));
    }
  }
}

TEST_CASE("files that are not there, empty or not files are refused", "[safetensors]") {
  TempDir dir;
  CHECK_THROWS_WITH(SafeTensorsFile(dir.path / "missing.safetensors"), Catch::Contains("cannot open"));
  write_raw(dir.path / "empty.safetensors", "");
  CHECK_THROWS_WITH(SafeTensorsFile(dir.path / "empty.safetensors"), Catch::Contains("file is empty"));
  CHECK_THROWS_WITH(SafeTensorsFile(dir.path), Catch::Contains("not a regular file"));
}

TEST_CASE("written files read back with metadata, every float dtype and empty tensors",
          "[safetensors]") {
  TempDir dir;
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.125f, 0.0f, -0.0f};
  std::vector<std::uint16_t> f16, bf16;
  for (float v : f32) {
    f16.push_back(sdgen::f32_to_f16(v));
    bf16.push_back(sdgen::f32_to_bf16(v));
  }
  const auto as_bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
  const std::vector<sdgen::weights::TensorToWrite> tensors = {
      {"a.f32", sdgen::DType::F32, {2, 3}, as_bytes(f32)},
      {"b.empty", sdgen::DType::F32, {0, 7}, {}},
      {"c.f16", sdgen::DType::F16, {6}, as_bytes(f16)},
      {"d.bf16", sdgen::DType::BF16, {3, 2}, as_bytes(bf16)},
  };
  const fs::path p = dir.path / "ok.safetensors";
  sdgen::weights::write_safetensors(p, tensors, {{"format", "pt"}});
  SafeTensorsFile file(p);
  CHECK(file.metadata().at("format") == "pt");
  REQUIRE(file.tensors().size() == 4);
  CHECK(file.at("a.f32").shape == std::vector<std::int64_t>{2, 3});
  CHECK(file.at("b.empty").numel() == 0);
  const auto a = file.f32(file.at("a.f32"));
  CHECK(std::vector<float>(a.begin(), a.end()) == f32);
  // Every value above is exactly representable in fp16 and bf16, so conversion is exact.
  CHECK(file.to_f32(file.at("c.f16")) == f32);
  CHECK(file.to_f32(file.at("d.bf16")) == f32);
  CHECK_THROWS_WITH(file.f32(file.at("c.f16")), Catch::Contains("'c.f16' is F16, expected F32"));
  CHECK_THROWS_WITH(file.at("nope"), Catch::Contains("no tensor 'nope'"));
  // The header is padded to 8 bytes, as the safetensors library does, so tensors written in order
  // of decreasing element size start aligned to their element size and get zero-copy views.
  for (const auto& t : file.tensors())
    CHECK(reinterpret_cast<std::uintptr_t>(file.bytes(t).data()) % sdgen::dtype_size(t.dtype) == 0);
}

TEST_CASE("a misaligned tensor gets no typed view but converts through memcpy", "[safetensors]") {
  TempDir dir;
  const std::string json = R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}})";
  float one = 1.0f;
  std::string data(5, '\0');
  std::memcpy(data.data() + 1, &one, 4);
  const fs::path p = dir.path / "odd.safetensors";
  // header length 8 + json; pick the JSON length so the data area starts 8-aligned, then offset 1.
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  write_raw(p, le64(padded.size()) + padded + data);
  SafeTensorsFile file(p);
  CHECK_THROWS_WITH(file.f32(file.at("w")), Catch::Contains("not aligned"));
  CHECK(file.to_f32(file.at("w")) == std::vector<float>{1.0f});
}

// Found by tests/fuzz/safetensors_fuzz: converting an empty F32 tensor passed an empty vector's
// null data() to memcpy, undefined behaviour that UBSan reports (the sanitizer build runs this).
TEST_CASE("an empty tensor converts to no floats, and an empty integer tensor is still refused",
          "[safetensors]") {
  TempDir dir;
  const fs::path p = dir.path / "empty.safetensors";
  write_raw(p, with_header(R"({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},)"
                           R"( "i": {"dtype": "I64", "shape": [0], "data_offsets": [0, 0]}})",
                           0));
  SafeTensorsFile file(p);
  CHECK(file.to_f32(file.at("e")).empty());
  CHECK_THROWS_AS(file.to_f32(file.at("i")), ModelError);
}
