// The text clean-up Hugging Face's CLIPTokenizer applies before its split pattern when ftfy is not
// installed (the default in a plain diffusers environment): transformers' BasicTokenizer with
// strip_accents=False and do_split_on_punc=False. In order:
//   1. drop U+0000, U+FFFD and every character of a "C" category (Cc, Cf, Cs, Co, Cn), except
//      tab, LF and CR: so zero-width spaces and joiners vanish and join their neighbours;
//   2. turn tab, LF, CR and the Zs spaces into U+0020;
//   3. put spaces around CJK ideographs (the Unified, Extension A-F and Compatibility blocks;
//      kana and Hangul are not split);
//   4. NFC-normalise the whole text;
//   5. split on whitespace (Python's str.split(), which after 1-2 leaves only U+0020 and the line
//      and paragraph separators U+2028/U+2029);
//   6. lowercase each word with Python's str.lower(): full case mapping (İ -> i + U+0307, ẞ -> ß),
//      final sigma by context.
// Accents are kept and HTML entities are not unescaped (both differ with ftfy).
//
// The character data (categories as of Unicode 14.0, the reference interpreter's, NFC, lowercasing)
// comes from unicode_data.hpp: ICU's in the normal build, ASCII-only in a build without ICU.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sdgen::tokenizer {

// The lowercased, whitespace-free words of `text`, in order.
std::vector<std::u32string> basic_tokenize(std::u32string_view text);

}  // namespace sdgen::tokenizer
