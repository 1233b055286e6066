// unicode_data.hpp without ICU: the build's choice when ICU is not found (a bare GPU host,
// docs/gpu.md). For the 128 ASCII characters every answer is Unicode's, so ASCII prompts give the
// same token ids as the ICU build (tests/tokenizer/clip_bpe_ascii_test.cpp checks them against the
// reference). Any other character is refused rather than guessed: a wrong category or a missed
// normalisation would silently change the ids, and so the image.
//
// Every character of a prompt passes through category() first (text_normalize.cpp), so that is
// where a non-ASCII prompt stops; the other functions refuse too, for any other caller.
#include <cstdio>

#include "lib/core/error.hpp"
#include "tokenizer/unicode_data.hpp"

namespace sdgen::tokenizer::unicode {

namespace {

char32_t ascii(char32_t c) {
  if (c < 0x80) return c;
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
  throw UsageError(cat("this build has no Unicode support (built without ICU); use ASCII prompts or rebuild "
                       "with libicu-dev (the text has ", code, ")"));
}

bool is_upper(char32_t c) { return c >= 'A' && c <= 'Z'; }
char32_t lower(char32_t c) { return is_upper(c) ? c - 'A' + 'a' : c; }

}  // namespace

Category category(char32_t c) {
  c = ascii(c);
  if (is_upper(c) || (c >= 'a' && c <= 'z')) return Category::Letter;
  if (c >= '0' && c <= '9') return Category::Number;
  if (c == ' ') return Category::SpaceSeparator;
  if (c < 0x20 || c == 0x7F) return Category::Other;  // Cc
  return Category::Rest;                              // punctuation and symbols
}

// U+0009..U+000D and U+0020 are ASCII's White_Space characters.
bool is_white_space(char32_t c) {
  c = ascii(c);
  return c == ' ' || (c >= '\t' && c <= '\r');
}

char32_t simple_case_fold(char32_t c) { return lower(ascii(c)); }

// ASCII text is its own NFC: no ASCII character decomposes or composes.
std::u32string nfc(std::u32string_view text) {
  for (const char32_t c : text) ascii(c);
  return std::u32string(text);
}

std::u32string to_lower(std::u32string_view word) {
  std::u32string out;
  out.reserve(word.size());
  for (const char32_t c : word) out.push_back(lower(ascii(c)));
  return out;
}

}  // namespace sdgen::tokenizer::unicode
