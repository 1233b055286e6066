#include "tokenizer/text_normalize.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "lib/core/error.hpp"

namespace sdgen::tokenizer {

namespace {

// unicodedata.unidata_version of Python 3.11, which produced the reference token ids.
constexpr UVersionInfo kReferenceUnicodeVersion = {14, 0, 0, 0};

enum class CharClass { Drop, Space, Ideograph, Keep };

bool assigned_after_reference(UChar32 c) {
  UVersionInfo age;
  u_charAge(c, age);
  for (int i = 0; i < U_MAX_VERSION_LENGTH; ++i) {
    if (age[i] != kReferenceUnicodeVersion[i]) return age[i] > kReferenceUnicodeVersion[i];
  }
  return false;
}

// BasicTokenizer._is_chinese_char: the CJK ideograph blocks, nothing else.
bool is_cjk_ideograph(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

CharClass classify(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r') return CharClass::Space;
  if (c == 0 || c == 0xFFFD) return CharClass::Drop;
  const auto mask = U_GET_GC_MASK(c);
  if ((mask & U_GC_C_MASK) != 0 || assigned_after_reference(c)) return CharClass::Drop;
  // U+2028/U+2029 survive the clean-up but str.split() splits on them; nothing between here and
  // the split changes them, so they can become spaces now.
  if ((mask & U_GC_ZS_MASK) != 0 || c == 0x2028 || c == 0x2029) return CharClass::Space;
  if (is_cjk_ideograph(c)) return CharClass::Ideograph;
  return CharClass::Keep;
}

std::u32string to_code_points(const icu::UnicodeString& s) {
  std::u32string out;
  out.reserve(static_cast<std::size_t>(s.length()));
  for (int32_t i = 0; i < s.length();) {
    const UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

}  // namespace

std::vector<std::u32string> basic_tokenize(std::u32string_view text) {
  icu::UnicodeString cleaned;
  for (const char32_t ch : text) {
    const auto c = static_cast<UChar32>(ch);
    switch (classify(c)) {
      case CharClass::Drop:
        break;
      case CharClass::Space:
        cleaned.append(UChar32{' '});
        break;
      case CharClass::Ideograph:
        cleaned.append(UChar32{' '}).append(c).append(UChar32{' '});
        break;
      case CharClass::Keep:
        cleaned.append(c);
        break;
    }
  }

  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  icu::UnicodeString composed;
  if (U_SUCCESS(status)) composed = nfc->normalize(cleaned, status);
  if (U_FAILURE(status))
    throw Error(cat("ICU could not NFC-normalise the prompt: ", u_errorName(status)));

  std::vector<std::u32string> words;
  const icu::Locale& root = icu::Locale::getRoot();
  int32_t start = 0;
  while (start < composed.length()) {
    if (composed.charAt(start) == u' ') {
      ++start;
      continue;
    }
    int32_t end = composed.indexOf(u' ', start);
    if (end < 0) end = composed.length();
    icu::UnicodeString word(composed, start, end - start);
    words.push_back(to_code_points(word.toLower(root)));
    start = end;
  }
  return words;
}

}  // namespace sdgen::tokenizer
