// PNG encoding (stb_image_write), the "parameters" text chunk, and A1111's parameter format; see
// png_writer.hpp for the choices.
#include "app/png_writer.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "lib/core/error.hpp"
#include "tokenizer/utf8.hpp"
#include "weights/file_io.hpp"

// The implementation is compiled into this file only, with internal linkage and without stb's own
// stdio writers (files are written atomically below instead). stb's directory is a -isystem
// include (app/CMakeLists.txt), so its code is held to its own standards, not to our -Werror.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include "stb_image_write.h"

namespace sdgen::app {

namespace {

// ---- A1111's parameter text

// Python's repr of a float, which is what A1111's f-strings print: the shortest digits that read
// back as the same double, in positional notation for exponents -4 to 15 (with ".0" on integral
// values: 7.0, 7.5, 0.0001) and as d.ddde+XX outside them (1e+16, 1e-05).
std::string python_float(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf");
  std::array<char, 64> buffer;
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), v, std::chars_format::scientific);
  const std::string_view sci(buffer.data(), end);  // "-7.5e+00"
  const std::size_t e = sci.find('e');
  const int exponent = std::stoi(std::string(sci.substr(e + 1)));
  const bool negative = sci.front() == '-';
  std::string digits;
  for (char c : sci.substr(negative ? 1 : 0, e - (negative ? 1 : 0)))
    if (c != '.') digits += c;

  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += cat("e", exponent < 0 ? "-" : "+", std::abs(exponent) < 10 ? "0" : "", std::abs(exponent));
  } else if (exponent < 0) {
    out += "0." + std::string(std::size_t(-exponent - 1), '0') + digits;
  } else {
    const auto whole = std::size_t(exponent) + 1;
    if (digits.size() < whole) digits.append(whole - digits.size(), '0');
    out += digits.substr(0, whole) + "." + (digits.size() > whole ? digits.substr(whole) : "0");
  }
  return out;
}

// A1111's infotext quote(): a value that would break the "k: v, k: v" syntax becomes a JSON string
// (json.dumps with ensure_ascii=False, which nlohmann's dump matches).
std::string quoted_value(const std::string& value) {
  if (value.find_first_of(",:\n") == std::string::npos) return value;
  return nlohmann::json(value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_python_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// ---- PNG chunks

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

// The CRC-32 of ISO 3309 / ITU-T V.42 that PNG puts after each chunk (PNG spec, annex D).
std::uint32_t crc32(std::span<const std::uint8_t> bytes) {
  static constexpr auto kTable = make_crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::uint8_t b : bytes) c = kTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void append_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(std::uint8_t(v >> shift));
}

// length, type, data, CRC(type + data)
std::vector<std::uint8_t> make_chunk(std::string_view type, std::span<const std::uint8_t> data) {
  std::vector<std::uint8_t> chunk;
  chunk.reserve(12 + data.size());
  append_be32(chunk, static_cast<std::uint32_t>(data.size()));
  chunk.insert(chunk.end(), type.begin(), type.end());
  chunk.insert(chunk.end(), data.begin(), data.end());
  append_be32(chunk, crc32(std::span(chunk).subspan(4)));
  return chunk;
}

// tEXt when every character is Latin-1, else iTXt (UTF-8), as PIL's PngInfo.add_text chooses.
// Invalid UTF-8 is written as U+FFFD rather than producing a chunk readers reject.
std::vector<std::uint8_t> parameters_chunk(std::string_view parameters) {
  constexpr std::string_view kKeyword = "parameters";
  const std::u32string text = tokenizer::decode_utf8_lossy(parameters);
  for (char32_t c : text)
    if (c == 0) throw Error("cannot store the image parameters in the PNG: the text holds a NUL character");
  std::vector<std::uint8_t> data(kKeyword.begin(), kKeyword.end());
  data.push_back(0);
  bool latin1 = true;
  for (char32_t c : text) latin1 = latin1 && c <= 0xFF;
  if (latin1) {
    for (char32_t c : text) data.push_back(static_cast<std::uint8_t>(c));
    return make_chunk("tEXt", data);
  }
  // compression flag 0 (uncompressed), method 0, empty language tag, empty translated keyword
  for (int i = 0; i < 4; ++i) data.push_back(0);
  std::string utf8;
  for (char32_t c : text) tokenizer::append_utf8(utf8, c);
  data.insert(data.end(), utf8.begin(), utf8.end());
  return make_chunk("iTXt", data);
}

}  // namespace

A1111Sampler a1111_sampler(schedulers::Algorithm algorithm, const schedulers::ResolvedConfig& config) {
  using schedulers::Algorithm;
  const bool karras = config.use_karras_sigmas;
  switch (algorithm) {
    case Algorithm::Ddim: return {"DDIM", ""};
    case Algorithm::Pndm: return {"PLMS", ""};
    case Algorithm::EulerAncestralDiscrete: return {"Euler a", ""};
    case Algorithm::EulerDiscrete: return karras ? A1111Sampler{"Euler", "Karras"} : A1111Sampler{"Euler", ""};
    case Algorithm::LmsDiscrete: return {karras ? "LMS Karras" : "LMS", ""};
    case Algorithm::DpmSolverMultistep: return {karras ? "DPM++ 2M Karras" : "DPM++ 2M", ""};
  }
  throw Error(cat("a1111_sampler: unknown algorithm ", static_cast<int>(algorithm)));
}

std::string format_parameters(const GenerationParameters& p) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Steps", std::to_string(p.steps)}, {"Sampler", p.sampler.sampler}};
  if (!p.sampler.schedule_type.empty()) fields.emplace_back("Schedule type", p.sampler.schedule_type);
  fields.emplace_back("CFG scale", python_float(p.cfg_scale));
  fields.emplace_back("Seed", std::to_string(p.seed));
  fields.emplace_back("Size", cat(p.width, "x", p.height));
  if (!p.model_hash.empty()) fields.emplace_back("Model hash", p.model_hash);
  if (!p.model_name.empty()) fields.emplace_back("Model", p.model_name);
  if (p.clip_skip > 1) fields.emplace_back("Clip skip", std::to_string(p.clip_skip));

  std::string text = p.prompt;
  if (!p.negative_prompt.empty()) text += "\nNegative prompt: " + p.negative_prompt;
  text += "\n";
  for (std::size_t i = 0; i < fields.size(); ++i)
    text += cat(i ? ", " : "", fields[i].first, ": ", quoted_value(fields[i].second));

  const auto first = std::find_if_not(text.begin(), text.end(), is_python_space);
  const auto last = std::find_if_not(text.rbegin(), text.rend(), is_python_space).base();
  return first < last ? std::string(first, last) : std::string();
}

std::vector<std::uint8_t> encode_png(const RgbImageView& image, std::string_view parameters) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(cat("cannot encode a PNG of ", image.width, "x", image.height, " pixels"));
  if (image.width > std::numeric_limits<int>::max() / 3 ||
      image.pixels.size() != std::size_t(image.width) * std::size_t(image.height) * 3)
    throw Error(cat("cannot encode a PNG: ", image.pixels.size(), " bytes of pixels for ", image.width, "x",
                    image.height, " RGB"));

  int size = 0;
  const std::unique_ptr<unsigned char, decltype(&std::free)> png(
      stbi_write_png_to_mem(image.pixels.data(), image.width * 3, image.width, image.height, 3, &size), &std::free);
  if (!png) throw Error(cat("PNG encoding of a ", image.width, "x", image.height, " image failed (out of memory)"));

  // Signature (8 bytes), then IHDR: length 13 + type + data + CRC = 25 bytes.
  constexpr std::size_t kAfterIhdr = 8 + 25;
  const std::span<const std::uint8_t> encoded(png.get(), static_cast<std::size_t>(size));
  if (encoded.size() < kAfterIhdr || std::string_view(reinterpret_cast<const char*>(encoded.data()) + 12, 4) != "IHDR")
    throw Error("PNG encoding produced no IHDR chunk where the PNG format puts it");
  const std::vector<std::uint8_t> chunk = parameters_chunk(parameters);

  std::vector<std::uint8_t> out(encoded.size() + chunk.size());
  std::memcpy(out.data(), encoded.data(), kAfterIhdr);
  std::memcpy(out.data() + kAfterIhdr, chunk.data(), chunk.size());
  std::memcpy(out.data() + kAfterIhdr + chunk.size(), encoded.data() + kAfterIhdr, encoded.size() - kAfterIhdr);
  return out;
}

void write_png(const std::filesystem::path& path, const RgbImageView& image, std::string_view parameters) {
  const std::vector<std::uint8_t> png = encode_png(image, parameters);
  weights::write_file_atomically(path, std::as_bytes(std::span(png)));
}

}  // namespace sdgen::app
