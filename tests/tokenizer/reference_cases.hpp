// The tokenizer's reference cases and the check each case must pass, shared by the tests of both
// builds of the tokenizer's Unicode data: ICU's (clip_bpe_test.cpp) and the ASCII-only one
// (clip_bpe_ascii_test.cpp), so that both are held to the same ids in the same way.
//
// Reference data: 42 strings tokenized by Hugging Face's slow CLIPTokenizer (transformers 4.45,
// no ftfy) with two vocabularies: the tiny models' own (tests/data, always present) and the real
// CLIP vocabulary (../shared, third-party, absent on some machines). Each case gives the padded
// ids with SD1's pad token (<|endoftext|>) and SD2's ("!", which HF also splits out of the prompt
// text), the untruncated ids, their token strings and whether truncation happened. Token ids are
// exact, so every comparison is equality.
#pragma once

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/paths.hpp"
#include "tests/tokenizer/temp_dir.hpp"
#include "tokenizer/clip_bpe.hpp"
#include "weights/file_io.hpp"

namespace sdgen::test::tokenizer_cases {

using nlohmann::json;
using sdgen::tokenizer::ClipTokenizer;

inline json load(const std::filesystem::path& path) { return json::parse(weights::read_text_file(path)); }

// tests/data/tokenizer/cases-synthetic.json: the cases with the tiny vocabulary.
inline const json& synthetic() {
  static const json cases = load(data_dir() / "tokenizer" / "cases-synthetic.json");
  return cases;
}

inline const ClipTokenizer& tiny() {
  static const ClipTokenizer tok = ClipTokenizer::from_directory(data_dir() / "models" / "tiny" / "tokenizer");
  return tok;
}

inline const ClipTokenizer& tiny_sd2() {
  static const ClipTokenizer tok = ClipTokenizer::from_directory(data_dir() / "models" / "tiny-sd2" / "tokenizer");
  return tok;
}

// The cases with the real CLIP vocabulary, and its SD1 and SD2 tokenizers; std::nullopt when
// ../shared does not hold them.
struct RealVocabulary {
  json cases;
  ClipTokenizer sd1;
  ClipTokenizer sd2;
};

inline std::optional<RealVocabulary> real_vocabulary() {
  const std::filesystem::path vocab_dir = shared_dir() / "clip-tokenizer";
  const std::filesystem::path cases_path = shared_dir() / "golden" / "tokenizer" / "cases.json";
  if (!std::filesystem::exists(vocab_dir / "vocab.json") || !std::filesystem::exists(cases_path)) return std::nullopt;
  // SD2's tokenizer folder is the same vocabulary with pad_token "!" (the reference's ids_sd2).
  const TempDir sd2_dir;
  for (const char* name : {"vocab.json", "merges.txt"}) std::filesystem::copy_file(vocab_dir / name, sd2_dir.path() / name);
  sd2_dir.write("tokenizer_config.json", R"({"model_max_length": 77, "pad_token": "!"})");
  return RealVocabulary{load(cases_path), ClipTokenizer::from_directory(vocab_dir),
                        ClipTokenizer::from_directory(sd2_dir.path())};
}

inline std::vector<int> ids(const json& c, const char* field) { return c.at(field).get<std::vector<int>>(); }

inline const json& find_case(const json& file, const std::string& text) {
  for (const json& c : file.at("cases")) {
    if (c.at("text") == text) return c;
  }
  throw std::runtime_error("no reference case for '" + text + "'");
}

// Everything the reference gives for one case: padded ids with both pad tokens, untruncated ids,
// token strings, truncation.
inline void check_case(const json& c, const ClipTokenizer& sd1, const ClipTokenizer& sd2) {
  const std::string text = c.at("text");
  INFO("text: " << text);
  CHECK(sd1.encode(text) == ids(c, "ids"));
  CHECK(sd2.encode(text) == ids(c, "ids_sd2"));
  const std::vector<int> full = sd1.encode_full(text);
  CHECK(full == ids(c, "ids_full"));
  CHECK((full.size() > static_cast<std::size_t>(sd1.max_length())) == c.at("truncated").get<bool>());
  const auto tokens_full = c.at("tokens_full").get<std::vector<std::string>>();
  REQUIRE(tokens_full.size() >= 2);  // BOS ... EOS
  CHECK(sd1.tokenize(text) == std::vector<std::string>(tokens_full.begin() + 1, tokens_full.end() - 1));
}

}  // namespace sdgen::test::tokenizer_cases
