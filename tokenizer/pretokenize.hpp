// CLIP's split pattern, written out by hand. Hugging Face's CLIPTokenizer runs
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// with the `regex` module and IGNORECASE over the cleaned-up text. At each position the first
// alternative that matches wins (not the longest), and a position where none matches is skipped.
// So: "'single" gives 's + ingle; digits are single pieces; a run of punctuation is one piece, and
// it swallows a following "<|endoftext|>" ("!<|" then "endoftext" then "|>").
//
// Two consequences of IGNORECASE, reproduced here: the literals compare under simple case
// folding, so U+017F (long s) matches the `s` of 's and <|startoftext|>; and U+0345 (combining
// ypogegrammeni, which folds to a Greek letter) matches no alternative at all and is skipped.
//
// Words come from basic_tokenize(), so they hold no whitespace and every piece lies inside one
// word; splitting word by word is the same as running the pattern over the joined text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sdgen::tokenizer {

enum class PieceKind {
  Text,         // goes through byte-level BPE
  StartOfText,  // exactly "<|startoftext|>": HF's BPE cache maps it straight to that vocabulary entry
  EndOfText,    // exactly "<|endoftext|>", likewise
};

struct Piece {
  PieceKind kind = PieceKind::Text;
  std::u32string_view text;
};

// The pattern's matches in `word`, in order. The views point into `word`.
std::vector<Piece> pretokenize(std::u32string_view word);

}  // namespace sdgen::tokenizer
