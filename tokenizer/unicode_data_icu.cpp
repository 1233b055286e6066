// unicode_data.hpp from ICU's common library (ICU::uc): the build's choice when ICU is found.
//
// ICU may carry a newer Unicode than the reference's Python 3.11 (14.0); category() is where that
// difference is removed, by character age, so every caller sees Unicode 14.0's assignments.
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "lib/core/error.hpp"
#include "tokenizer/unicode_data.hpp"

namespace sdgen::tokenizer::unicode {

namespace {

// unicodedata.unidata_version of Python 3.11, which produced the reference token ids.
constexpr UVersionInfo kReferenceUnicodeVersion = {14, 0, 0, 0};

bool assigned_after_reference(UChar32 c) {
  UVersionInfo age;
  u_charAge(c, age);
  for (int i = 0; i < U_MAX_VERSION_LENGTH; ++i) {
    if (age[i] != kReferenceUnicodeVersion[i]) return age[i] > kReferenceUnicodeVersion[i];
  }
  return false;
}

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
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

Category category(char32_t ch) {
  const auto c = static_cast<UChar32>(ch);
  const auto mask = U_GET_GC_MASK(c);
  if ((mask & U_GC_C_MASK) != 0 || assigned_after_reference(c)) return Category::Other;
  if ((mask & U_GC_L_MASK) != 0) return Category::Letter;
  if ((mask & U_GC_N_MASK) != 0) return Category::Number;
  if ((mask & U_GC_ZS_MASK) != 0) return Category::SpaceSeparator;
  return Category::Rest;
}

bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }

char32_t simple_case_fold(char32_t c) {
  return static_cast<char32_t>(u_foldCase(static_cast<UChar32>(c), U_FOLD_CASE_DEFAULT));
}

std::u32string nfc(std::u32string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu::Normalizer2::getNFCInstance(status);
  icu::UnicodeString composed;
  if (U_SUCCESS(status)) composed = normalizer->normalize(to_icu(text), status);
  if (U_FAILURE(status)) throw Error(cat("ICU could not NFC-normalise the prompt: ", u_errorName(status)));
  return from_icu(composed);
}

// ICU's root-locale toLower is Python's str.lower: full mappings, final sigma by context.
std::u32string to_lower(std::u32string_view word) {
  icu::UnicodeString s = to_icu(word);
  return from_icu(s.toLower(icu::Locale::getRoot()));
}

}  // namespace sdgen::tokenizer::unicode
