// Fuzzes loading a tokenizer folder: vocab.json, merges.txt, tokenizer_config.json and
// special_tokens_map.json, through ClipTokenizer::from_files (what from_directory calls once it has
// read them). The tokenizer_fuzz harness fuzzes prompts against a fixed, valid folder; this one
// fuzzes the folder, which comes with a downloaded model and is as untrusted as its weights.
//
// One input holds all four files, separated by a line "@@file@@" (kSeparator), in the order above;
// a section that is not there is a file that does not exist (a missing vocab.json or merges.txt
// becomes an empty one, which must be refused). Splitting on a marker rather than on length
// fields keeps the seeds readable and lets the mutations work on the text of each file.
//
// Invariants: loading either refuses the folder with sdgen::Error or gives a tokenizer that keeps
// its promises on a few fixed prompts: encode() gives max_length() ids (77 when there is no
// tokenizer_config.json), BOS first, every id < vocab_size(), and equals encode_full() truncated
// to max_length() - 2 ids, EOS and padding; tokenize() gives one non-empty string per text id.
// Once loaded, a tokenizer never refuses a prompt: any exception there is a finding.
#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.hpp"
#include "tokenizer/clip_bpe.hpp"

using namespace sdgen;
using tokenizer::ClipTokenizer;

namespace {

constexpr std::string_view kSeparator = "\n@@file@@\n";

// Plain words, truncation (more than 75 ids), special tokens written in the text, SD2's "!" pad
// token, non-ASCII text and invalid UTF-8.
constexpr std::array<std::string_view, 6> kPrompts = {
    "a photo of a cat",
    "",
    "<|startoftext|>a red fox!!<|endoftext|> in the snow",
    "na\xc3\xafve caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\xa6\x8a \xff\xfe broken",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four twenty-five "
    "twenty-six twenty-seven twenty-eight twenty-nine thirty thirty-one thirty-two thirty-three",
    "   \t\r\n  ",
};

std::vector<std::string_view> split_sections(std::string_view input) {
  std::vector<std::string_view> sections;
  for (;;) {
    const std::size_t end = input.find(kSeparator);
    sections.push_back(input.substr(0, end));
    if (end == std::string_view::npos) return sections;
    input.remove_prefix(end + kSeparator.size());
  }
}

void check_prompt(const ClipTokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  const auto full = tok.encode_full(text);
  const auto pieces = tok.tokenize(text);
  const auto max_length = static_cast<std::size_t>(tok.max_length());
  const auto in_vocabulary = [&](int id) { return id >= 0 && id < tok.vocab_size(); };

  fuzz::check(ids.size() == max_length, "encode() does not return max_length() ids");
  fuzz::check(ids.front() == tok.bos_id(), "encode() does not start with BOS");
  fuzz::check(std::all_of(ids.begin(), ids.end(), in_vocabulary), "encode(): an id outside the vocabulary");
  fuzz::check(std::all_of(full.begin(), full.end(), in_vocabulary), "encode_full(): an id outside the vocabulary");
  fuzz::check(full.size() >= 2 && full.front() == tok.bos_id() && full.back() == tok.eos_id(),
              "encode_full() is not BOS ... EOS");
  const std::size_t text_ids = full.size() - 2;
  fuzz::check(pieces.size() == text_ids, "tokenize() and encode_full() disagree on the number of tokens");
  for (const auto& piece : pieces) fuzz::check(!piece.empty(), "tokenize() returned an empty token");

  const std::size_t kept = std::min(text_ids, max_length - 2);
  fuzz::check(std::equal(ids.begin() + 1, ids.begin() + 1 + static_cast<std::ptrdiff_t>(kept), full.begin() + 1),
              "encode() is not encode_full() truncated");
  fuzz::check(ids[1 + kept] == tok.eos_id(), "encode(): no EOS after the text");
  fuzz::check(std::all_of(ids.begin() + static_cast<std::ptrdiff_t>(kept + 2), ids.end(),
                          [&](int id) { return id == tok.pad_id(); }),
              "encode(): the tail is not padding");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto sections = split_sections(fuzz::as_text(data, size));
  const auto section = [&](std::size_t i) -> std::optional<std::string> {
    if (i >= sections.size()) return std::nullopt;
    return std::string(sections[i]);
  };
  const tokenizer::TokenizerFiles files{
      .dir = "fuzz/tokenizer",
      .vocab_json = section(0).value_or(""),
      .merges_txt = section(1).value_or(""),
      .tokenizer_config_json = section(2),
      .special_tokens_map_json = section(3),
  };

  std::optional<ClipTokenizer> tok;
  if (!fuzz::accepts([&] { tok.emplace(ClipTokenizer::from_files(files)); })) return 0;

  fuzz::check(tok->max_length() >= 2, "max_length() leaves no room for BOS and EOS");
  if (!files.tokenizer_config_json) fuzz::check(tok->max_length() == 77, "max_length() is not CLIP's default 77");
  try {
    for (const std::string_view prompt : kPrompts) check_prompt(*tok, prompt);
  } catch (const std::exception& e) {
    fuzz::finding(cat("a loaded tokenizer threw on a prompt: ", e.what()));
  }
  return 0;
}
