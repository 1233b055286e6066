#include "tokenizer/utf8.hpp"

#include <cstdint>

namespace sdgen::tokenizer {

namespace {

constexpr char32_t kReplacement = 0xFFFD;

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Unicode's table of well-formed UTF-8 (3.9, table 3-7): the allowed range of the second byte
// depends on the first, which is what rules out overlong forms, surrogates and values above
// U+10FFFF without decoding first.
struct LeadByte {
  int length = 0;  // 0: not a lead byte
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
};

LeadByte classify_lead(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {2};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  if (b >= 0xF1 && b <= 0xF3) return {4};
  return {};
}

// The length of the well-formed sequence that starts at bytes[i], or 0 when the bytes there are
// ill-formed. bytes[i] is not ASCII.
std::size_t sequence_length(std::string_view bytes, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const LeadByte lead = classify_lead(p[i]);
  const auto len = static_cast<std::size_t>(lead.length);
  bool ok = len != 0 && i + len <= bytes.size() && p[i + 1] >= lead.second_min && p[i + 1] <= lead.second_max;
  for (std::size_t k = 2; ok && k < len; ++k) ok = is_continuation(p[i + k]);
  return ok ? len : 0;
}

}  // namespace

std::u32string decode_utf8_lossy(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    const std::size_t len = sequence_length(bytes, i);
    if (len == 0) {
      out.push_back(kReplacement);
      ++i;
      continue;
    }
    char32_t c = b & (0xFF >> (len + 1));
    for (std::size_t k = 1; k < len; ++k) c = (c << 6) | (p[i + k] & 0x3F);
    out.push_back(c);
    i += len;
  }
  return out;
}

std::optional<std::size_t> first_invalid_utf8(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    if (static_cast<unsigned char>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = sequence_length(bytes, i);
    if (len == 0) return i;
    i += len;
  }
  return std::nullopt;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace sdgen::tokenizer
