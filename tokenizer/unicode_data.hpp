// The Unicode character data the CLIP clean-up (text_normalize.cpp) and split pattern
// (pretokenize.cpp) need: general categories, the White_Space property, simple case folding, NFC
// and full lowercasing. They sit behind these few functions so that the build can choose where
// the data comes from, one source file or the other, and no code needs to know which:
//
//   unicode_data_icu.cpp    ICU's tables: every character, as Python 3.11 (Unicode 14.0) sees it.
//                           The normal build (libicu-dev).
//   unicode_data_ascii.cpp  no library: exact for the 128 ASCII characters, a UsageError for every
//                           other, since answering it needs the tables this build lacks. For hosts
//                           without ICU, such as a bare GPU host (docs/gpu.md).
//
// tokenizer/CMakeLists.txt links ICU's file into sdgen_tokenizer when ICU is found, and always
// builds sdgen_tokenizer_ascii, so that CI runs the ASCII file against the same reference token ids
// as ICU's (tests/tokenizer).
#pragma once

#include <string>
#include <string_view>

namespace sdgen::tokenizer::unicode {

// The general-category groups the tokenizer tells apart.
enum class Category {
  Letter,          // L
  Number,          // N
  SpaceSeparator,  // Zs
  Other,           // C: controls, format characters, surrogates, private use, unassigned. A character
                   // assigned after Unicode 14.0 counts as unassigned, as Python 3.11 sees it.
  Rest,            // marks, punctuation, symbols, and the line and paragraph separators Zl, Zp
};

Category category(char32_t c);

// The White_Space property: what the split pattern's \s matches.
bool is_white_space(char32_t c);

// Simple case folding (CaseFolding.txt, statuses C and S): how the pattern's IGNORECASE compares.
char32_t simple_case_fold(char32_t c);

// Canonical composition (NFC) of the whole text.
std::u32string nfc(std::u32string_view text);

// Full lowercase mapping of one word, as Python's str.lower: one character may become several
// (U+0130 -> i + U+0307), and a capital sigma at the end of a word becomes the final sigma.
std::u32string to_lower(std::u32string_view word);

}  // namespace sdgen::tokenizer::unicode
