// Fuzzes the prompt-file format (app/prompt_file.hpp): the whole input as a file through
// PromptFileReader, and the input as one line through parse_prompt_line.
//
// Only UsageError may escape. What comes out must keep the format's promises: a line parses to
// nothing only when it is blank or a comment; steps >= 1 and cfg finite; the reader's prompts
// carry no NUL or control character (tab excepted), line numbers only grow and items count up
// from 0.
#include <cmath>

#include "app/prompt_file.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace sdgen;
using namespace sdgen::app;

namespace {

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void check_settings(const PromptSettings& s) {
  if (s.steps) fuzz::check(*s.steps >= 1, "accepted --steps below 1");
  if (s.cfg_scale) fuzz::check(std::isfinite(*s.cfg_scale), "accepted a non-finite --cfg");
}

bool has_control_characters(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  fuzz::accepts([&] {
    const auto parsed = parse_prompt_line(text);
    const auto trimmed = trim_blanks(text);
    if (!parsed) {
      fuzz::check(trimmed.empty() || trimmed.front() == '#', "a line that is not blank or a comment parsed to nothing");
      return;
    }
    fuzz::check(!parsed->prompt.empty() || trimmed.starts_with("\"\""), "an empty prompt not written as \"\"");
    check_settings(parsed->settings);
  });

  const fuzz::MemoryFile file(text);
  fuzz::accepts([&] {
    PromptFileReader reader(file.path());
    std::size_t last_line = 0;
    std::size_t items = 0;
    while (const auto entry = reader.next()) {
      fuzz::check(entry->line > last_line, "line numbers do not grow");
      fuzz::check(entry->item == items++, "items do not count up from 0");
      fuzz::check(!has_control_characters(entry->prompt), "a prompt with a control character");
      if (entry->settings.negative_prompt)
        fuzz::check(!has_control_characters(*entry->settings.negative_prompt), "a --neg with a control character");
      check_settings(entry->settings);
      last_line = entry->line;
    }
  });
  return 0;
}
