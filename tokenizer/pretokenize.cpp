#include "tokenizer/pretokenize.hpp"

#include "tokenizer/unicode_data.hpp"

namespace sdgen::tokenizer {

namespace {

constexpr std::u32string_view kStartOfText = U"<|startoftext|>";
constexpr std::u32string_view kEndOfText = U"<|endoftext|>";
// The contraction alternatives after the apostrophe, in the pattern's order.
constexpr std::u32string_view kContractions[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
constexpr char32_t kYpogegrammeni = 0x0345;

bool is_letter(char32_t c) { return unicode::category(c) == unicode::Category::Letter; }
bool is_number(char32_t c) { return unicode::category(c) == unicode::Category::Number; }
bool is_other(char32_t c) {
  return c != kYpogegrammeni && !is_letter(c) && !is_number(c) && !unicode::is_white_space(c);
}

// Length of `literal` if `text` starts with it under simple case folding, else 0.
std::size_t match_literal(std::u32string_view text, std::u32string_view literal) {
  if (text.size() < literal.size()) return 0;
  for (std::size_t i = 0; i < literal.size(); ++i) {
    if (unicode::simple_case_fold(text[i]) != literal[i]) return 0;
  }
  return literal.size();
}

template <class Pred>
std::size_t run_length(std::u32string_view text, Pred pred) {
  std::size_t n = 0;
  while (n < text.size() && pred(text[n])) ++n;
  return n;
}

// Length and kind of the first alternative that matches at the start of `rest`; length 0 when
// none does.
Piece match_at(std::u32string_view rest) {
  if (const auto n = match_literal(rest, kStartOfText)) {
    const auto text = rest.substr(0, n);
    return {text == kStartOfText ? PieceKind::StartOfText : PieceKind::Text, text};
  }
  if (const auto n = match_literal(rest, kEndOfText)) {
    const auto text = rest.substr(0, n);
    return {text == kEndOfText ? PieceKind::EndOfText : PieceKind::Text, text};
  }
  if (rest.front() == U'\'') {
    for (const auto suffix : kContractions) {
      if (match_literal(rest.substr(1), suffix)) return {PieceKind::Text, rest.substr(0, 1 + suffix.size())};
    }
  }
  if (is_letter(rest.front())) return {PieceKind::Text, rest.substr(0, run_length(rest, is_letter))};
  if (is_number(rest.front())) return {PieceKind::Text, rest.substr(0, 1)};
  return {PieceKind::Text, rest.substr(0, run_length(rest, is_other))};
}

}  // namespace

std::vector<Piece> pretokenize(std::u32string_view word) {
  std::vector<Piece> pieces;
  std::size_t pos = 0;
  while (pos < word.size()) {
    const Piece piece = match_at(word.substr(pos));
    if (piece.text.empty()) {
      ++pos;  // whitespace or U+0345: no alternative matches here
      continue;
    }
    pieces.push_back(piece);
    pos += piece.text.size();
  }
  return pieces;
}

}  // namespace sdgen::tokenizer
