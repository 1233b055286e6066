// Prompt files (`sdgen --prompts FILE`): many prompts, one model load.
//
// The format, one prompt per line:
//
//     # comment lines and blank lines are skipped
//     a red fox in the snow
//     a lighthouse at dusk --neg "blurry, low quality" --seed 7
//     an astronaut riding a horse --steps 30 --cfg 6.5
//     "a prompt that -- keeps its dashes" --seed 8
//
//   * A line holds a prompt, optionally followed by settings for that line only, each written
//     `--name value`. The settings begin at the first "--" that follows white space; everything
//     before it (trimmed) is the prompt. A prompt that must contain such a " --" is written in
//     double quotes; so may be any value ("..." with \" and \\ as the only escapes). An unquoted
//     value runs to the next " --" (so `--neg blurry, low quality --seed 3` needs no quotes).
//   * Settings: --neg (or --negative) TEXT, --seed N (0 .. 2^64-1), --steps N (>= 1),
//     --cfg X (a finite number). Each overrides the command line's value for its line.
//     An unknown or repeated setting is an error, not a silent part of the prompt.
//   * A line whose first non-blank character is '#' is a comment; a '#' anywhere else is text.
//   * An empty prompt is allowed only when written as "" (unconditional generation).
//   * The file is UTF-8 (a leading byte-order mark is skipped); "\r\n" line ends are accepted.
//     Invalid UTF-8, a NUL or another control character (tab excepted), or a line over 64 KiB
//     (CLIP reads 77 tokens; such a line is a wrong file, not a prompt) is an error.
//
// Every error is a UsageError "FILE:LINE: what is wrong". The reader streams: it holds one line at
// a time, so a million-line file costs no memory; check_prompt_file() reads a file through once so
// that a bad line is reported before the model is loaded, and counts the prompts for progress.
//
// Sharding (--shard K/N) spreads one file over N processes or machines: shard K takes prompts
// K, K+N, K+2N, ... counting from 0 in file order. Every shard still checks every line, so all
// shards agree on the numbering and fail on the same bad line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdgen::app {

// A line's own settings; unset ones come from the command line.
struct PromptSettings {
  std::optional<std::string> negative_prompt;
  std::optional<std::uint64_t> seed;
  std::optional<int> steps;
  std::optional<double> cfg_scale;
};

struct PromptEntry {
  std::string prompt;
  PromptSettings settings;
  std::size_t line = 0;  // 1-based line number in the file, for messages
  std::size_t item = 0;  // 0-based position among the file's prompts (the same in every shard)
};

struct Shard {
  std::size_t index = 0;  // K, 0-based
  std::size_t count = 1;  // N

  bool contains(std::size_t item) const { return item % count == index; }
};

// Parses --shard "K/N" with 0 <= K < N. Throws UsageError.
Shard parse_shard(std::string_view text);

class PromptFileReader {
 public:
  // Opens the file; throws UsageError naming it when it is missing, a directory or unreadable.
  explicit PromptFileReader(const std::filesystem::path& path, Shard shard = {});

  // The next prompt in this shard, or std::nullopt after the last line. Throws UsageError
  // "FILE:LINE: ..." at the first bad line, whichever shard it belongs to.
  std::optional<PromptEntry> next();

 private:
  bool read_line(std::string& line);  // false at the end of the file

  std::filesystem::path path_;
  Shard shard_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
  std::vector<char> buffer_;
  std::size_t buffer_begin_ = 0;
  std::size_t buffer_end_ = 0;
  bool end_of_file_ = false;
  std::size_t line_number_ = 0;
  std::size_t items_ = 0;  // prompts seen so far, in every shard
};

struct PromptFileSummary {
  std::size_t prompts = 0;   // in the whole file
  std::size_t in_shard = 0;  // in the selected shard
};

// Reads the whole file once, checking every line. Throws UsageError at the first bad line, or
// when the file holds no prompt at all.
PromptFileSummary check_prompt_file(const std::filesystem::path& path, Shard shard = {});

// One line's content (no line end): std::nullopt for a blank or comment line, else the prompt
// and its settings. Throws UsageError with the problem, without the FILE:LINE prefix.
struct ParsedLine {
  std::string prompt;
  PromptSettings settings;
};
std::optional<ParsedLine> parse_prompt_line(std::string_view line);

}  // namespace sdgen::app
