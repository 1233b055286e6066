// Fuzzes the CLIP tokenizer on arbitrary bytes (invalid UTF-8, NULs, huge words) with the tiny test
// model's vocabulary, which has every byte symbol, so any text tokenizes.
//
// encode() must return exactly max_length ids (77), starting with BOS, every id inside the
// vocabulary, and it must agree with encode_full(): the same ids truncated to max_length - 2, EOS,
// then padding. tokenize() must give one non-empty vocabulary string per id of the text. A prompt
// is never refused: any exception at all is a finding.
#include <algorithm>

#include "tests/fuzz/fuzz_support.hpp"
#include "tokenizer/clip_bpe.hpp"

using namespace sdgen;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto tokenizer =
      tokenizer::ClipTokenizer::from_directory(fuzz::data_dir() / "models" / "tiny" / "tokenizer");
  const std::string_view text = fuzz::as_text(data, size);
  try {
    const auto ids = tokenizer.encode(text);
    const auto full = tokenizer.encode_full(text);
    const auto pieces = tokenizer.tokenize(text);
    const auto max_length = static_cast<std::size_t>(tokenizer.max_length());

    fuzz::check(max_length == 77, "the tiny tokenizer's max_length is not 77");
    fuzz::check(ids.size() == max_length, "encode() does not return max_length ids");
    fuzz::check(ids.front() == tokenizer.bos_id(), "encode() does not start with BOS");
    for (const int id : ids) fuzz::check(id >= 0 && id < tokenizer.vocab_size(), "encode(): id outside the vocabulary");
    for (const int id : full)
      fuzz::check(id >= 0 && id < tokenizer.vocab_size(), "encode_full(): id outside the vocabulary");

    fuzz::check(full.size() >= 2 && full.front() == tokenizer.bos_id() && full.back() == tokenizer.eos_id(),
                "encode_full() is not BOS ... EOS");
    const std::size_t text_ids = full.size() - 2;
    fuzz::check(pieces.size() == text_ids, "tokenize() and encode_full() disagree on the number of tokens");
    for (const auto& piece : pieces) fuzz::check(!piece.empty(), "tokenize() returned an empty token");

    const std::size_t kept = std::min(text_ids, max_length - 2);
    for (std::size_t i = 0; i < kept; ++i)
      fuzz::check(ids[1 + i] == full[1 + i], "encode() is not encode_full() truncated");
    fuzz::check(ids[1 + kept] == tokenizer.eos_id(), "encode(): no EOS after the text");
    for (std::size_t i = kept + 2; i < max_length; ++i)
      fuzz::check(ids[i] == tokenizer.pad_id(), "encode(): the tail is not padding");
  } catch (const std::exception& e) {
    fuzz::finding(cat("the tokenizer threw on a prompt: ", e.what()));
  }
  return 0;
}
