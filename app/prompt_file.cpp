// The prompt-file reader and line parser; the format is documented in prompt_file.hpp.
#include "app/prompt_file.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "lib/core/error.hpp"
#include "tokenizer/utf8.hpp"

namespace sdgen::app {

namespace {

// Longer lines are not prompts (CLIP reads 77 tokens, a few hundred bytes): a binary or wrong
// file is reported instead of read into memory whole.
constexpr std::size_t kMaxLineBytes = 64 * 1024;
constexpr std::size_t kReadPiece = 64 * 1024;

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Where the next setting starts: a "--" at `from` or later that follows white space (or starts the
// text), or npos.
std::size_t next_setting(std::string_view line, std::size_t from) {
  for (std::size_t i = line.find("--", from); i != std::string_view::npos; i = line.find("--", i + 1))
    if (i == 0 || is_blank(line[i - 1])) return i;
  return std::string_view::npos;
}

// Reads a "..." string starting at line[pos] == '"'; \" and \\ are the escapes. Advances `pos`
// past the closing quote, which must be followed by white space or the end of the line.
std::string read_quoted(std::string_view line, std::size_t& pos, std::string_view what) {
  std::string out;
  for (std::size_t i = pos + 1; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
      out += line[++i];
    } else if (line[i] == '"') {
      pos = i + 1;
      if (pos < line.size() && !is_blank(line[pos]))
        throw UsageError(cat("the quoted ", what, " must be followed by a space, not '", line[pos], "'"));
      return out;
    } else {
      out += line[i];
    }
  }
  throw UsageError(cat("the quoted ", what, " has no closing \""));
}

// A value: quoted, or the text up to the next setting, trimmed.
std::string read_value(std::string_view line, std::size_t& pos, std::string_view name) {
  if (pos < line.size() && line[pos] == '"') return read_quoted(line, pos, cat("value of --", name));
  const std::size_t end = std::min(next_setting(line, pos), line.size());
  const std::string_view value = trim(line.substr(pos, end - pos));
  pos = end;
  if (value.empty()) throw UsageError(cat("--", name, " needs a value"));
  return std::string(value);
}

template <class T>
T parse_number(const std::string& text, std::string_view name, std::string_view expected) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    throw UsageError(cat("--", name, " needs ", expected, ", got '", text, "'"));
  return value;
}

template <class T>
void set_once(std::optional<T>& slot, T value, std::string_view name) {
  if (slot) throw UsageError(cat("--", name, " is given twice"));
  slot = std::move(value);
}

}  // namespace

std::optional<ParsedLine> parse_prompt_line(std::string_view text) {
  const std::string_view line = trim(text);
  if (line.empty() || line.front() == '#') return std::nullopt;

  ParsedLine parsed;
  std::size_t pos = 0;
  if (line.front() == '"') {
    parsed.prompt = read_quoted(line, pos, "prompt");
  } else {
    pos = std::min(next_setting(line, 0), line.size());
    parsed.prompt = std::string(trim(line.substr(0, pos)));
    if (parsed.prompt.empty()) throw UsageError("no prompt before the settings (write \"\" for an empty prompt)");
  }

  for (;;) {
    while (pos < line.size() && is_blank(line[pos])) ++pos;
    if (pos == line.size()) break;
    // After the prompt or a value, only a setting can follow.
    // Checked first: the name is read from pos + 2, which must not pass the end (a trailing "-").
    if (line.substr(pos, 2) != "--")
      throw UsageError(cat("expected a setting such as --seed after the quoted text, got '", line.substr(pos), "'"));
    std::size_t name_end = pos + 2;
    while (name_end < line.size() && !is_blank(line[name_end])) ++name_end;
    const std::string name(line.substr(pos + 2, name_end - pos - 2));
    if (name.empty())
      throw UsageError("'--' without a setting name (put the prompt in double quotes to keep a \" --\" in it)");
    pos = name_end;
    while (pos < line.size() && is_blank(line[pos])) ++pos;

    PromptSettings& s = parsed.settings;
    if (name == "neg" || name == "negative") {
      set_once(s.negative_prompt, read_value(line, pos, name), "neg");
    } else if (name == "seed") {
      set_once(s.seed, parse_number<std::uint64_t>(read_value(line, pos, name), name, "a whole number from 0 to 2^64-1"),
               name);
    } else if (name == "steps") {
      const int steps = parse_number<int>(read_value(line, pos, name), name, "a whole number of at least 1");
      if (steps < 1) throw UsageError(cat("--steps needs a whole number of at least 1, got ", steps));
      set_once(s.steps, steps, name);
    } else if (name == "cfg") {
      const double cfg = parse_number<double>(read_value(line, pos, name), name, "a number");
      if (!std::isfinite(cfg)) throw UsageError(cat("--cfg needs a finite number, got ", cfg));
      set_once(s.cfg_scale, cfg, name);
    } else {
      throw UsageError(cat("unknown setting --", name,
                           " (a line may set --neg, --seed, --steps and --cfg; put the prompt in double quotes "
                           "to keep a \" --\" in it)"));
    }
  }
  return parsed;
}

Shard parse_shard(std::string_view text) {
  const std::size_t slash = text.find('/');
  Shard shard;
  const auto parse = [&](std::string_view part, std::size_t& out) {
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), out);
    return ec == std::errc() && end == part.data() + part.size() && !part.empty();
  };
  if (slash == std::string_view::npos || !parse(text.substr(0, slash), shard.index) ||
      !parse(text.substr(slash + 1), shard.count) || shard.count == 0 || shard.index >= shard.count)
    throw UsageError(cat("--shard needs K/N with 0 <= K < N (shard K of N, counting from 0), got '", text, "'"));
  return shard;
}

PromptFileReader::PromptFileReader(const std::filesystem::path& path, Shard shard)
    : path_(path), shard_(shard), buffer_(kReadPiece) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw UsageError(cat("prompt file ", path.string(), " is a directory"));
  file_.reset(std::fopen(path.c_str(), "rb"));
  if (!file_) throw UsageError(cat("cannot open prompt file ", path.string(), ": ", std::strerror(errno)));
}

bool PromptFileReader::read_line(std::string& line) {
  line.clear();
  for (;;) {
    if (buffer_begin_ == buffer_end_) {
      if (end_of_file_) return !line.empty();
      const std::size_t n = std::fread(buffer_.data(), 1, buffer_.size(), file_.get());
      if (n == 0 && std::ferror(file_.get()))
        throw UsageError(cat("cannot read prompt file ", path_.string(), ": ", std::strerror(errno)));
      end_of_file_ = n < buffer_.size() || std::feof(file_.get());
      buffer_begin_ = 0;
      buffer_end_ = n;
      continue;
    }
    const char* begin = buffer_.data() + buffer_begin_;
    const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', buffer_end_ - buffer_begin_));
    const std::size_t take = newline ? std::size_t(newline - begin) : buffer_end_ - buffer_begin_;
    if (line.size() + take > kMaxLineBytes)
      throw UsageError(cat(path_.string(), ":", line_number_ + 1, ": line is longer than ", kMaxLineBytes,
                           " bytes; is this a text file of prompts?"));
    line.append(begin, take);
    buffer_begin_ += take + (newline ? 1 : 0);
    if (newline) return true;
  }
}

std::optional<PromptEntry> PromptFileReader::next() {
  std::string line;
  while (read_line(line)) {
    ++line_number_;
    const std::string where = cat(path_.string(), ":", line_number_, ": ");
    std::string_view text = line;
    if (text.ends_with('\r')) text.remove_suffix(1);
    if (line_number_ == 1 && text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
    if (const auto bad = tokenizer::first_invalid_utf8(text)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[*bad]));
      throw UsageError(cat(where, "not valid UTF-8 (byte ", hex, " at column ", *bad + 1,
                           "); save the file as UTF-8"));
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == 0) throw UsageError(cat(where, "NUL byte at column ", i + 1, "; is this a text file of prompts?"));
      if (c < 0x20 && c != '\t')
        throw UsageError(cat(where, "control character ", static_cast<int>(c), " at column ", i + 1));
    }
    std::optional<ParsedLine> parsed;
    try {
      parsed = parse_prompt_line(text);
    } catch (const UsageError& e) {
      throw UsageError(where + e.what());
    }
    if (!parsed) continue;
    const std::size_t item = items_++;
    if (shard_.contains(item))
      return PromptEntry{std::move(parsed->prompt), std::move(parsed->settings), line_number_, item};
  }
  return std::nullopt;
}

PromptFileSummary check_prompt_file(const std::filesystem::path& path, Shard shard) {
  PromptFileSummary summary;
  // Reading every line in shard 0 of 1 counts the file's prompts; the shard's share follows.
  PromptFileReader reader(path);
  while (const auto entry = reader.next()) {
    ++summary.prompts;
    if (shard.contains(entry->item)) ++summary.in_shard;
  }
  if (summary.prompts == 0)
    throw UsageError(cat("prompt file ", path.string(), " holds no prompts (every line is blank or a # comment)"));
  return summary;
}

}  // namespace sdgen::app
