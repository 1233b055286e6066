// UTF-8 in and out for the tokenizer, which works on code points.
//
// Prompts are arbitrary bytes from users (command lines, prompt files), so decoding never fails:
// a byte that does not start a well-formed UTF-8 sequence (a stray continuation byte, a truncated
// sequence, an overlong form, an encoded surrogate, anything above U+10FFFF) becomes U+FFFD and
// decoding resumes at the next byte. The CLIP clean-up drops U+FFFD, so this reads the text as
// Python's bytes.decode("utf-8", errors="replace") would before Hugging Face's tokenizer sees it
// (Python emits one U+FFFD per maximal ill-formed subpart rather than per byte; the clean-up makes
// the count irrelevant).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sdgen::tokenizer {

std::u32string decode_utf8_lossy(std::string_view bytes);

// The byte offset of the first ill-formed sequence (by the same rules), or std::nullopt when all of
// `bytes` is well-formed UTF-8: for readers that reject bad text instead of replacing it.
std::optional<std::size_t> first_invalid_utf8(std::string_view bytes);

// Appends the UTF-8 form of `c`, which must be a Unicode scalar value (not a surrogate).
void append_utf8(std::string& out, char32_t c);

}  // namespace sdgen::tokenizer
