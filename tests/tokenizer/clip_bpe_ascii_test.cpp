// The tokenizer built with the ASCII-only Unicode data (tokenizer/unicode_data_ascii.cpp, what a
// host without ICU gets) against the same reference as ICU's build (reference_cases.hpp): every
// reference case whose text is ASCII must give Hugging Face's ids exactly, with both vocabularies,
// and every other case must be refused with the one-line message, never tokenized differently.
// This executable links sdgen_tokenizer_ascii, so it runs in every build, ICU or not.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "lib/core/error.hpp"
#include "tests/tokenizer/reference_cases.hpp"
#include "tokenizer/clip_bpe.hpp"

using json = nlohmann::json;
using Catch::Matchers::Contains;
using sdgen::tokenizer::ClipTokenizer;
using namespace sdgen::test::tokenizer_cases;

namespace {

constexpr const char* kRefusal =
    "this build has no Unicode support (built without ICU); use ASCII prompts or rebuild with libicu-dev";

bool is_ascii(const std::string& text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Checks every case: ASCII ones against the reference, the others for the refusal. Returns how
// many were ASCII, so that a test can insist the reference exercises this build at all.
int check_cases(const json& file, const ClipTokenizer& sd1, const ClipTokenizer& sd2) {
  int ascii_cases = 0;
  for (const json& c : file.at("cases")) {
    const std::string text = c.at("text");
    if (is_ascii(text)) {
      ++ascii_cases;
      check_case(c, sd1, sd2);
    } else {
      INFO("text: " << text);
      CHECK_THROWS_AS(sd1.encode(text), sdgen::UsageError);
      CHECK_THROWS_WITH(sd1.encode(text), Contains(kRefusal));
      CHECK_THROWS_WITH(sd1.tokenize(text), Contains(kRefusal));
    }
  }
  return ascii_cases;
}

}  // namespace

TEST_CASE("ASCII build: every ASCII reference case matches HF with the tiny vocabulary", "[tokenizer]") {
  // 28 of the 42 cases are ASCII: punctuation, contractions, digits, tabs and newlines, control
  // characters, special-token text, case, 75/76 words and truncation.
  CHECK(check_cases(synthetic(), tiny(), tiny_sd2()) == 28);
}

TEST_CASE("ASCII build: every ASCII reference case matches HF with the real CLIP vocabulary", "[tokenizer]") {
  const auto real = real_vocabulary();
  if (!real) {
    WARN("skipped: the real CLIP vocabulary is not in " << sdgen::test::shared_dir().string());
    return;
  }
  CHECK(check_cases(real->cases, real->sd1, real->sd2) == 28);
}

TEST_CASE("ASCII build: the refusal names the first character it cannot handle", "[tokenizer]") {
  CHECK_THROWS_WITH(tiny().encode("a caf\xC3\xA9 at night"), Contains("(the text has U+00E9)"));
  CHECK_THROWS_WITH(tiny().encode("emoji \xF0\x9F\x98\x80"), Contains("(the text has U+1F600)"));
}

TEST_CASE("ASCII build: invalid UTF-8 is dropped as in the ICU build, not refused", "[tokenizer]") {
  // Bytes that do not decode become U+FFFD, which the clean-up drops before any character data is
  // needed; the reference is HF's ids for the text without them.
  const std::string text =
      "a photo\x80graph of an astro\xC0\xAFnaut ri\xED\xA0\x80" "ding a horse\xF4\x90\x80\x80\xE2\x82\xFF";
  CHECK(tiny().encode(text) == ids(find_case(synthetic(), "a photograph of an astronaut riding a horse"), "ids"));
}
