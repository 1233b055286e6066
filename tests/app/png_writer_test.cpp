// The PNG writer: pixels read back by an independent decoder (stb_image), every chunk's CRC
// checked with zlib's crc32, the parameters chunk parsed by hand, A1111's text format, and the
// atomic write's guarantees on disk.
#include "app/png_writer.hpp"

#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "tests/app/temp_dir.hpp"

#include "stb_image.h"

namespace {

using sdgen::app::A1111Sampler;
using sdgen::app::GenerationParameters;
using sdgen::schedulers::Algorithm;

struct Chunk {
  std::string type;
  std::vector<std::uint8_t> data;
  std::uint32_t stored_crc = 0;
};

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | p[3];
}

// Splits a PNG into its chunks (REQUIREs the signature and sane lengths).
std::vector<Chunk> chunks_of(const std::vector<std::uint8_t>& png) {
  static const std::uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  REQUIRE(png.size() >= 8);
  REQUIRE(std::memcmp(png.data(), kSignature, 8) == 0);
  std::vector<Chunk> chunks;
  for (std::size_t pos = 8; pos < png.size();) {
    REQUIRE(pos + 12 <= png.size());
    const std::uint32_t length = be32(&png[pos]);
    REQUIRE(pos + 12 + length <= png.size());
    Chunk c;
    c.type.assign(reinterpret_cast<const char*>(&png[pos + 4]), 4);
    c.data.assign(png.begin() + std::ptrdiff_t(pos + 8), png.begin() + std::ptrdiff_t(pos + 8 + length));
    c.stored_crc = be32(&png[pos + 8 + length]);
    // zlib's CRC-32 is PNG's (PNG spec annex D); computed over the type and the data.
    uLong crc = ::crc32(0L, Z_NULL, 0);
    crc = ::crc32(crc, &png[pos + 4], 4 + length);
    CHECK(c.stored_crc == std::uint32_t(crc));
    chunks.push_back(std::move(c));
    pos += 12 + length;
  }
  return chunks;
}

std::vector<std::uint8_t> test_pixels(int width, int height) {
  std::vector<std::uint8_t> pixels(std::size_t(width) * height * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = std::uint8_t((i * 37 + i / 7) & 0xFF);
  return pixels;
}

GenerationParameters fox() {
  GenerationParameters p;
  p.prompt = "a red fox in the snow";
  p.negative_prompt = "blurry";
  p.steps = 25;
  p.sampler = {"DPM++ 2M Karras", ""};
  p.cfg_scale = 7.5;
  p.seed = 42;
  p.width = 512;
  p.height = 512;
  p.model_hash = "6ce0161689";
  p.model_name = "v1-5-pruned-emaonly";
  return p;
}

}  // namespace

TEST_CASE("encoded PNGs decode to the same pixels and carry the parameters right after IHDR", "[png]") {
  const int width = 7, height = 5;  // odd sizes: no row is a multiple of anything
  const auto pixels = test_pixels(width, height);
  const std::string text = "a red fox\nSteps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 7x5";
  const auto png = sdgen::app::encode_png({width, height, pixels}, text);

  int w = 0, h = 0, channels = 0;
  stbi_uc* decoded = stbi_load_from_memory(png.data(), int(png.size()), &w, &h, &channels, 3);
  REQUIRE(decoded != nullptr);
  CHECK(w == width);
  CHECK(h == height);
  CHECK(channels == 3);
  CHECK(std::vector<std::uint8_t>(decoded, decoded + pixels.size()) == pixels);  // lossless: exact
  stbi_image_free(decoded);

  const auto chunks = chunks_of(png);
  REQUIRE(chunks.size() >= 4);
  CHECK(chunks[0].type == "IHDR");
  CHECK(chunks[1].type == "tEXt");
  CHECK(chunks.back().type == "IEND");
  const std::string body(chunks[1].data.begin(), chunks[1].data.end());
  CHECK(body == std::string("parameters") + '\0' + text);
}

TEST_CASE("Latin-1 text goes into tEXt as Latin-1, anything else into an uncompressed iTXt", "[png]") {
  const auto pixels = test_pixels(2, 2);
  {
    const auto chunks = chunks_of(sdgen::app::encode_png({2, 2, pixels}, "caf\xC3\xA9"));  // "café"
    REQUIRE(chunks[1].type == "tEXt");
    CHECK(chunks[1].data == std::vector<std::uint8_t>{'p', 'a', 'r', 'a', 'm', 'e', 't', 'e', 'r', 's', 0, 'c', 'a',
                                                      'f', 0xE9});
  }
  {
    const std::string japanese = "\xE6\x97\xA5\xE6\x9C\xAC\xE3\x81\xAE\xE9\xA2\xA8\xE6\x99\xAF";  // 日本の風景
    const auto chunks = chunks_of(sdgen::app::encode_png({2, 2, pixels}, japanese));
    REQUIRE(chunks[1].type == "iTXt");
    // keyword, NUL, compression flag 0, method 0, empty language tag + NUL, empty translated
    // keyword + NUL, then the UTF-8 text (PNG spec 11.3.4.5).
    const std::string expected = std::string("parameters") + std::string(5, '\0') + japanese;
    CHECK(std::string(chunks[1].data.begin(), chunks[1].data.end()) == expected);
  }
  CHECK_THROWS_WITH(sdgen::app::encode_png({2, 3, pixels}, "x"), Catch::Contains("bytes of pixels for 2x3"));
  CHECK_THROWS_WITH(sdgen::app::encode_png({0, 2, pixels}, "x"), Catch::Contains("0x2"));
}

TEST_CASE("the parameters text is A1111's infotext", "[png]") {
  // Expected texts follow A1111's create_infotext (modules/processing.py) and quote()
  // (modules/infotext_utils.py), written out by hand.
  CHECK(sdgen::app::format_parameters(fox()) ==
        "a red fox in the snow\nNegative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7.5, "
        "Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly");

  auto p = fox();
  p.negative_prompt.clear();  // no negative prompt: no line at all
  p.cfg_scale = 7;            // Python prints floats with ".0"
  p.seed = 18446744073709551615ull;
  p.width = 768;
  p.height = 512;
  p.model_name = "my model, v2: final";  // ',' and ':' would break "k: v, k: v": a JSON string
  p.clip_skip = 2;
  p.sampler = {"Euler", "Karras"};
  CHECK(sdgen::app::format_parameters(p) ==
        "a red fox in the snow\nSteps: 25, Sampler: Euler, Schedule type: Karras, CFG scale: 7.0, "
        "Seed: 18446744073709551615, Size: 768x512, Model hash: 6ce0161689, Model: \"my model, v2: final\", "
        "Clip skip: 2");

  p = fox();
  p.prompt = "  ";  // A1111 strips the whole text
  p.model_hash.clear();
  p.model_name.clear();
  p.cfg_scale = 0.0001;  // Python: positional down to 1e-4 ...
  CHECK(sdgen::app::format_parameters(p) ==
        "Negative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M Karras, CFG scale: 0.0001, Seed: 42, Size: 512x512");
  p.cfg_scale = 0.00001;  // ... and exponent notation below it
  CHECK_THAT(sdgen::app::format_parameters(p), Catch::Contains("CFG scale: 1e-05,"));
  p.cfg_scale = 1e16;
  CHECK_THAT(sdgen::app::format_parameters(p), Catch::Contains("CFG scale: 1e+16,"));
  p.cfg_scale = 12.25;
  CHECK_THAT(sdgen::app::format_parameters(p), Catch::Contains("CFG scale: 12.25,"));
}

TEST_CASE("sampler names are A1111's", "[png]") {
  sdgen::schedulers::ResolvedConfig plain, karras;
  karras.use_karras_sigmas = true;
  const auto name = [](Algorithm a, const sdgen::schedulers::ResolvedConfig& c) {
    const A1111Sampler s = sdgen::app::a1111_sampler(a, c);
    return s.schedule_type.empty() ? s.sampler : s.sampler + " / " + s.schedule_type;
  };
  CHECK(name(Algorithm::Ddim, plain) == "DDIM");
  CHECK(name(Algorithm::Pndm, plain) == "PLMS");
  CHECK(name(Algorithm::EulerDiscrete, plain) == "Euler");
  CHECK(name(Algorithm::EulerAncestralDiscrete, plain) == "Euler a");
  CHECK(name(Algorithm::LmsDiscrete, plain) == "LMS");
  CHECK(name(Algorithm::DpmSolverMultistep, plain) == "DPM++ 2M");
  CHECK(name(Algorithm::DpmSolverMultistep, karras) == "DPM++ 2M Karras");
  CHECK(name(Algorithm::LmsDiscrete, karras) == "LMS Karras");
  CHECK(name(Algorithm::EulerDiscrete, karras) == "Euler / Karras");
}

TEST_CASE("write_png replaces atomically and leaves nothing behind on failure", "[png]") {
  sdgen::test::TempDir dir;
  const auto pixels = test_pixels(4, 3);
  const auto target = dir.path / "out.png";
  sdgen::app::write_png(target, {4, 3, pixels}, "first");
  sdgen::app::write_png(target, {4, 3, pixels}, "second");  // replaces the first
  CHECK(dir.names() == std::vector<std::string>{"out.png"});  // no temporary left
  std::ifstream in(target, std::ios::binary);
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto chunks = chunks_of(bytes);
  CHECK(std::string(chunks[1].data.begin() + 11, chunks[1].data.end()) == "second");

  // A directory that cannot take a new file, whoever runs the test (root ignores permission bits):
  // its "parent" is a regular file.
  const auto not_a_directory = dir.write("plain-file", "x");
  CHECK_THROWS_AS(sdgen::app::write_png(not_a_directory / "out.png", {4, 3, pixels}, "x"), sdgen::Error);
  CHECK_THROWS_WITH(sdgen::app::write_png(not_a_directory / "out.png", {4, 3, pixels}, "x"),
                    Catch::Contains("cannot write") && Catch::Contains("Not a directory"));
  CHECK(dir.names() == std::vector<std::string>{"out.png", "plain-file"});
}
