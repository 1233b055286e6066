// GPT-2's reversible map from bytes to printable Unicode code points, which CLIP's vocabulary is
// written in: the 188 printable Latin-1 bytes map to themselves, the other 68 to U+0100 upward, so
// every byte string has a whitespace-free spelling and BPE never sees a raw control byte.
#pragma once

#include <array>
#include <cstdint>

namespace sdgen::tokenizer {

// The code point that stands for byte `b` in vocab.json and merges.txt.
const std::array<char32_t, 256>& byte_to_unicode();

}  // namespace sdgen::tokenizer
