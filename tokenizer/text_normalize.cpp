#include "tokenizer/text_normalize.hpp"

#include <algorithm>

#include "tokenizer/unicode_data.hpp"

namespace sdgen::tokenizer {

namespace {

enum class CharClass { Drop, Space, Ideograph, Keep };

// BasicTokenizer._is_chinese_char: the CJK ideograph blocks, nothing else.
bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

CharClass classify(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return CharClass::Space;
  if (c == 0 || c == 0xFFFD) return CharClass::Drop;
  const unicode::Category category = unicode::category(c);
  if (category == unicode::Category::Other) return CharClass::Drop;
  // U+2028/U+2029 survive the clean-up but str.split() splits on them; nothing between here and
  // the split changes them, so they can become spaces now.
  if (category == unicode::Category::SpaceSeparator || c == 0x2028 || c == 0x2029) return CharClass::Space;
  if (is_cjk_ideograph(c)) return CharClass::Ideograph;
  return CharClass::Keep;
}

}  // namespace

std::vector<std::u32string> basic_tokenize(std::u32string_view text) {
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (const char32_t c : text) {
    switch (classify(c)) {
      case CharClass::Drop:
        break;
      case CharClass::Space:
        cleaned.push_back(U' ');
        break;
      case CharClass::Ideograph:
        cleaned.append({U' ', c, U' '});
        break;
      case CharClass::Keep:
        cleaned.push_back(c);
        break;
    }
  }

  const std::u32string composed = unicode::nfc(cleaned);
  const std::u32string_view all = composed;
  std::vector<std::u32string> words;
  std::size_t start = 0;
  while (start < all.size()) {
    if (all[start] == U' ') {
      ++start;
      continue;
    }
    const std::size_t end = std::min(all.find(U' ', start), all.size());
    words.push_back(unicode::to_lower(all.substr(start, end - start)));
    start = end;
  }
  return words;
}

}  // namespace sdgen::tokenizer
