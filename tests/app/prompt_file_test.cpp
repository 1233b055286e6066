// Prompt files: each rule of the format (prompt_file.hpp), sharding, and every error naming the
// file and the line.
#include "app/prompt_file.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "app/output_paths.hpp"
#include "lib/core/error.hpp"
#include "tests/app/temp_dir.hpp"
#include "tests/support/paths.hpp"

using namespace std::literals;

namespace {

using sdgen::UsageError;
using sdgen::app::PromptEntry;
using sdgen::app::PromptFileReader;

std::vector<PromptEntry> read_all(const std::filesystem::path& file, sdgen::app::Shard shard = {}) {
  PromptFileReader reader(file, shard);
  std::vector<PromptEntry> out;
  while (auto entry = reader.next()) out.push_back(std::move(*entry));
  return out;
}

sdgen::app::ParsedLine parse(std::string_view line) {
  auto parsed = sdgen::app::parse_prompt_line(line);
  REQUIRE(parsed.has_value());
  return *parsed;
}

// The message of the UsageError that reading `content` as a prompt file throws.
std::string error_for(std::string_view content) {
  sdgen::test::TempDir dir;
  const auto file = dir.write("prompts.txt", content);
  try {
    read_all(file);
  } catch (const UsageError& e) {
    const std::string message = e.what();
    const std::string prefix = file.string() + ":";
    REQUIRE(message.starts_with(prefix));  // every error names the file ...
    return message.substr(prefix.size());  // ... and starts with the line number
  }
  FAIL("no error for " << content);
  return {};
}

}  // namespace

TEST_CASE("prompt files: one prompt per line, comments and blank lines skipped, CRLF and BOM accepted",
          "[prompt_file]") {
  sdgen::test::TempDir dir;
  const auto file = dir.write("prompts.txt",
                              "\xEF\xBB\xBF# a comment\r\n"
                              "a red fox in the snow\r\n"
                              "\r\n"
                              "   \t\n"
                              "  # an indented comment\n"
                              "  a lighthouse at dusk #nofilter  \n"
                              "caf\xC3\xA9 au lait");  // no newline at the end
  const auto entries = read_all(file);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].prompt == "a red fox in the snow");
  CHECK(entries[0].line == 2);
  CHECK(entries[0].item == 0);
  CHECK(entries[1].prompt == "a lighthouse at dusk #nofilter");  // '#' inside a line is text
  CHECK(entries[1].line == 6);
  CHECK(entries[1].item == 1);
  CHECK(entries[2].prompt == "caf\xC3\xA9 au lait");
  CHECK(entries[2].line == 7);
  CHECK(!entries[0].settings.seed);
  CHECK(!entries[0].settings.negative_prompt);

  const auto summary = sdgen::app::check_prompt_file(file);
  CHECK(summary.prompts == 3);
  CHECK(summary.in_shard == 3);
}

TEST_CASE("a line may carry its own settings", "[prompt_file]") {
  auto p = parse("a lighthouse at dusk --neg \"blurry, low quality\" --seed 7");
  CHECK(p.prompt == "a lighthouse at dusk");
  CHECK(p.settings.negative_prompt == "blurry, low quality");
  CHECK(p.settings.seed == 7u);
  CHECK(!p.settings.steps);
  CHECK(!p.settings.cfg_scale);

  p = parse("an astronaut --steps 30 --cfg 6.5 --negative blurry, low quality --seed 18446744073709551615");
  CHECK(p.prompt == "an astronaut");
  CHECK(p.settings.steps == 30);
  CHECK(p.settings.cfg_scale == 6.5);
  CHECK(p.settings.negative_prompt == "blurry, low quality");  // unquoted: up to the next setting
  CHECK(p.settings.seed == 18446744073709551615ull);

  // Quoting keeps a " --" in the prompt; \" and \\ are the escapes; other dashes need nothing.
  p = parse(R"("a prompt that -- keeps \"its\" dashes \\o/" --seed 8)");
  CHECK(p.prompt == R"(a prompt that -- keeps "its" dashes \o/)");
  CHECK(p.settings.seed == 8u);
  CHECK(parse("a well--known x-ray--style photo").prompt == "a well--known x-ray--style photo");
  CHECK(parse("\"\" --seed 3").prompt.empty());  // an explicitly empty prompt
}

TEST_CASE("bad lines are errors naming the file and the line", "[prompt_file]") {
  CHECK_THAT(error_for("ok\nbad \xE9t\xE9\n"), Catch::StartsWith("2: not valid UTF-8 (byte 0xE9 at column 5)"));
  CHECK_THAT(error_for("\xED\xA0\x80 surrogate\n"), Catch::StartsWith("1: not valid UTF-8"));
  CHECK_THAT(error_for("\xC0\xAF overlong\n"), Catch::StartsWith("1: not valid UTF-8"));
  CHECK_THAT(error_for("ok\n\nnul\0byte\n"sv), Catch::StartsWith("3: NUL byte at column 4"));
  CHECK_THAT(error_for("bell\x07\n"), Catch::StartsWith("1: control character 7 at column 5"));
  CHECK_THAT(error_for("old mac\rline ends\r"), Catch::StartsWith("1: control character 13"));
  CHECK_THAT(error_for("a fox --sed 3\n"), Catch::StartsWith("1: unknown setting --sed"));
  CHECK_THAT(error_for("a fox -- b\n"), Catch::StartsWith("1: '--' without a setting name"));
  CHECK_THAT(error_for("a fox --seed 3 --seed 4\n"), Catch::StartsWith("1: --seed is given twice"));
  CHECK_THAT(error_for("a fox --neg a --negative b\n"), Catch::StartsWith("1: --neg is given twice"));
  CHECK_THAT(error_for("a fox --seed -1\n"), Catch::StartsWith("1: --seed needs a whole number from 0 to 2^64-1, got '-1'"));
  CHECK_THAT(error_for("a fox --seed 18446744073709551616\n"), Catch::StartsWith("1: --seed needs a whole number"));
  CHECK_THAT(error_for("a fox --seed 7 8\n"), Catch::StartsWith("1: --seed needs a whole number from 0 to 2^64-1, got '7 8'"));
  CHECK_THAT(error_for("a fox --steps 0\n"), Catch::StartsWith("1: --steps needs a whole number of at least 1, got 0"));
  CHECK_THAT(error_for("a fox --steps ten\n"), Catch::StartsWith("1: --steps needs a whole number of at least 1, got 'ten'"));
  CHECK_THAT(error_for("a fox --cfg inf\n"), Catch::StartsWith("1: --cfg needs a finite number"));
  CHECK_THAT(error_for("a fox --cfg\n"), Catch::StartsWith("1: --cfg needs a value"));
  CHECK_THAT(error_for("a fox --neg --seed 2\n"), Catch::StartsWith("1: --neg needs a value"));
  CHECK_THAT(error_for("--seed 2\n"), Catch::StartsWith("1: no prompt before the settings"));
  CHECK_THAT(error_for("\"a fox --seed 2\n"), Catch::StartsWith("1: the quoted prompt has no closing \""));
  CHECK_THAT(error_for("\"a fox\"--seed 2\n"), Catch::StartsWith("1: the quoted prompt must be followed by a space"));
  CHECK_THAT(error_for("\"a fox\" and more\n"), Catch::StartsWith("1: expected a setting such as --seed"));
  CHECK_THAT(error_for("a fox --neg \"x\n"), Catch::StartsWith("1: the quoted value of --neg has no closing \""));
  CHECK_THAT(error_for(std::string(70000, 'a')), Catch::StartsWith("1: line is longer than 65536 bytes"));
}

// Found by tests/fuzz/prompt_file_fuzz: a single '-' ending the line after a quoted prompt or
// value made the setting-name read start past the end, and std::out_of_range escaped.
TEST_CASE("a lone '-' after quoted text is a usage error", "[prompt_file]") {
  CHECK_THAT(error_for("\"a fox\" -\n"), Catch::StartsWith("1: expected a setting such as --seed"));
  CHECK_THAT(error_for("a fox --neg \"x\" -\n"), Catch::StartsWith("1: expected a setting such as --seed"));
  CHECK_THROWS_AS(sdgen::app::parse_prompt_line("\"a fox\" -"), UsageError);
}

TEST_CASE("files that cannot be read, or hold no prompt, are named", "[prompt_file]") {
  sdgen::test::TempDir dir;
  CHECK_THROWS_AS(PromptFileReader(dir.path / "missing.txt"), UsageError);
  CHECK_THROWS_WITH(PromptFileReader(dir.path / "missing.txt"),
                    Catch::Contains("missing.txt") && Catch::Contains("No such file"));
  CHECK_THROWS_WITH(PromptFileReader(dir.path), Catch::Contains("is a directory"));
  const auto empty = dir.write("empty.txt", "# only a comment\n\n");
  CHECK_THROWS_WITH(sdgen::app::check_prompt_file(empty), Catch::Contains("holds no prompts"));
}

TEST_CASE("--shard K/N takes every N-th prompt from K, and every shard checks every line", "[prompt_file]") {
  using sdgen::app::parse_shard;
  CHECK(parse_shard("0/1").count == 1);
  CHECK(parse_shard("2/3").index == 2);
  for (const char* bad : {"3/3", "1/0", "-1/3", "1", "a/b", "1/3/4", "/3", "1/"})
    CHECK_THROWS_AS(parse_shard(bad), UsageError);

  sdgen::test::TempDir dir;
  const auto file = dir.write("p.txt", "p0\n# c\np1\np2\n\np3\np4\np5\np6\n");
  std::vector<std::string> got;
  for (const auto& e : read_all(file, parse_shard("1/3"))) got.push_back(e.prompt + "@" + std::to_string(e.item));
  CHECK(got == std::vector<std::string>{"p1@1", "p4@4"});
  const auto summary = sdgen::app::check_prompt_file(file, parse_shard("0/3"));
  CHECK(summary.prompts == 7);
  CHECK(summary.in_shard == 3);  // p0, p3, p6

  // A bad line in another shard's share still stops this shard.
  const auto bad = dir.write("bad.txt", "p0\np1 --sed 1\n");
  CHECK_THROWS_WITH(read_all(bad, parse_shard("0/2")), Catch::Contains("bad.txt:2: unknown setting --sed"));
}

TEST_CASE("a million-line prompt file streams through", "[prompt_file]") {
  sdgen::test::TempDir dir;
  const auto file = dir.path / "million.txt";
  {
    std::ofstream out(file, std::ios::binary);
    for (int i = 0; i < 1000000; ++i) out << "prompt number " << i << (i % 3 ? "\n" : " --seed 5\r\n");
  }
  const auto summary = sdgen::app::check_prompt_file(file, sdgen::app::parse_shard("3/4"));
  CHECK(summary.prompts == 1000000);
  CHECK(summary.in_shard == 250000);
}

TEST_CASE("examples/prompts.txt reads as documented", "[prompt_file]") {
  const auto file = sdgen::test::data_dir() / ".." / ".." / "examples" / "prompts.txt";
  const auto entries = read_all(file);
  REQUIRE(entries.size() == 7);
  CHECK(entries[2].prompt == "a lighthouse on a cliff at dusk, oil painting");
  CHECK(entries[2].settings.negative_prompt == "blurry, low quality");
  CHECK(entries[2].settings.seed == 42u);
  CHECK(entries[3].settings.steps == 30);
  CHECK(entries[3].settings.cfg_scale == 6.5);
  CHECK(entries[4].settings.negative_prompt == "cartoon, 3d render");
  CHECK(entries[5].prompt == "a neon sign reading -- OPEN -- in a dark alley, cinematic");
  CHECK(entries[6].settings.seed == 3u);
  // The name the file's header promises for the third prompt.
  CHECK(sdgen::app::prompt_slug(entries[2].prompt) == "a-lighthouse-on-a-cliff-at-dusk-oil-painting");
}
