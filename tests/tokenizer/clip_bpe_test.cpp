// The CLIP tokenizer (with ICU's Unicode data) against Hugging Face's slow CLIPTokenizer on the
// reference cases of reference_cases.hpp: 42 strings (punctuation, contractions, accents, combining
// marks, CJK, Hangul, emoji, control characters, special-token text, 75/76 words, over 77 tokens),
// with the tiny vocabulary (always) and the real CLIP vocabulary (skipped when absent).
//
// Then robustness: arbitrary bytes (invalid UTF-8, NUL), a 100,000-character prompt and
// concurrent use, checked against the same reference ids wherever the expected result is one of
// them, and otherwise for the shape every encoding must have.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/tokenizer/reference_cases.hpp"
#include "tokenizer/clip_bpe.hpp"

using json = nlohmann::json;
using sdgen::tokenizer::ClipTokenizer;
using namespace sdgen::test::tokenizer_cases;

namespace {

// The reference case made of repeated "a " that HF truncated (76 words: BOS, 75 x "a</w>", EOS).
const json& truncated_a_case(const json& file) {
  for (const json& c : file.at("cases")) {
    const std::string text = c.at("text");
    if (c.at("truncated").get<bool>() && text.starts_with("a a a") && text.find_first_not_of("a ") == std::string::npos)
      return c;
  }
  throw std::runtime_error("no truncated 'a a a ...' reference case");
}

void check_all_cases(const json& file, const ClipTokenizer& sd1, const ClipTokenizer& sd2) {
  REQUIRE(file.at("cases").size() == 42);
  for (const json& c : file.at("cases")) check_case(c, sd1, sd2);
}

// Every encoding, whatever the input: max_length ids in range, BOS first, EOS before the padding.
void check_shape(const ClipTokenizer& tok, const std::string& text) {
  const std::vector<int> got = tok.encode(text);
  REQUIRE(got.size() == static_cast<std::size_t>(tok.max_length()));
  CHECK(got.front() == tok.bos_id());
  const std::size_t body = std::min(tok.encode_full(text).size() - 2, got.size() - 2);
  CHECK(got[body + 1] == tok.eos_id());
  for (std::size_t i = body + 2; i < got.size(); ++i) CHECK(got[i] == tok.pad_id());
  for (const int id : got) CHECK((id >= 0 && id < tok.vocab_size()));
}

}  // namespace

TEST_CASE("the tiny tokenizers load with the reference's special ids", "[tokenizer]") {
  // tests/data/README.md / golden README: 1180 ids, <|startoftext|> = 1178, <|endoftext|> = 1179,
  // pad <|endoftext|> for tiny and "!" = 0 for tiny-sd2, model_max_length 77.
  CHECK(tiny().vocab_size() == 1180);
  CHECK(tiny().bos_id() == 1178);
  CHECK(tiny().eos_id() == 1179);
  CHECK(tiny().pad_id() == 1179);
  CHECK(tiny().max_length() == 77);
  CHECK(tiny_sd2().pad_id() == 0);
  CHECK(tiny_sd2().max_length() == 77);
}

TEST_CASE("all 42 reference cases match HF with the tiny vocabulary", "[tokenizer]") {
  check_all_cases(synthetic(), tiny(), tiny_sd2());
}

TEST_CASE("all 42 reference cases match HF with the real CLIP vocabulary", "[tokenizer]") {
  const auto real = real_vocabulary();
  if (!real) {
    WARN("skipped: the real CLIP vocabulary is not in " << sdgen::test::shared_dir().string());
    return;
  }
  CHECK(real->sd1.vocab_size() == 49408);
  CHECK(real->sd1.bos_id() == 49406);
  CHECK(real->sd1.eos_id() == 49407);
  CHECK(real->sd2.pad_id() == 0);
  check_all_cases(real->cases, real->sd1, real->sd2);
}

TEST_CASE("invalid UTF-8 reads as if the bad bytes were U+FFFD, which the clean-up drops", "[tokenizer]") {
  const json& file = synthetic();
  // Stray continuation, overlong '/', encoded surrogate, above U+10FFFF, truncated 3-byte form, 0xFF.
  const std::string text =
      "a photo\x80graph of an astro\xC0\xAFnaut ri\xED\xA0\x80" "ding a horse\xF4\x90\x80\x80\xE2\x82\xFF";
  CHECK(tiny().encode(text) == ids(find_case(file, "a photograph of an astronaut riding a horse"), "ids"));

  const std::vector<int> empty = ids(find_case(file, ""), "ids");
  CHECK(tiny().encode(std::string(5, '\0')) == empty);
  CHECK(tiny().encode("\xFF\xFE\xC0\x80\xF8\x88\x80\x80\x80") == empty);
}

TEST_CASE("arbitrary bytes never break the tokenizer", "[tokenizer]") {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 400);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text(static_cast<std::size_t>(length(rng)), '\0');
    for (char& ch : text) ch = static_cast<char>(byte(rng));
    INFO("trial " << trial);
    check_shape(tiny(), text);
    check_shape(tiny_sd2(), text);
  }
}

TEST_CASE("a 100,000-character prompt is truncated, not a problem", "[tokenizer]") {
  std::string words;
  while (words.size() < 100000) words += "a ";
  CHECK(tiny().encode(words) == ids(truncated_a_case(synthetic()), "ids"));

  // One 100,000-letter word: the worst case for the BPE loop.
  const std::string one_word(100000, 'b');
  check_shape(tiny(), one_word);
  CHECK(tiny().encode_full(one_word).size() > 77);

  // 100,000 characters from many scripts, in valid UTF-8.
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::uint32_t> code_point(0x20, 0x2FFFF);
  std::string mixed;
  for (int i = 0; i < 100000; ++i) {
    std::uint32_t c = code_point(rng);
    if (c >= 0xD800 && c < 0xE000) c = ' ';
    if (c < 0x80) {
      mixed += static_cast<char>(c);
    } else if (c < 0x800) {
      mixed += {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
    } else if (c < 0x10000) {
      mixed += {static_cast<char>(0xE0 | (c >> 12)), static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
                static_cast<char>(0x80 | (c & 0x3F))};
    } else {
      mixed += {static_cast<char>(0xF0 | (c >> 18)), static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
                static_cast<char>(0x80 | ((c >> 6) & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
    }
  }
  check_shape(tiny(), mixed);
}

TEST_CASE("concurrent encodes share the BPE cache safely", "[tokenizer]") {
  const json& file = synthetic();
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const json& c : file.at("cases")) {
          if (tiny().encode(c.at("text").get<std::string>()) != ids(c, "ids")) ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const int f : failures) CHECK(f == 0);
}
