#include "tokenizer/clip_bpe.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <unordered_map>

#include "lib/core/error.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenize.hpp"
#include "tokenizer/text_normalize.hpp"
#include "tokenizer/utf8.hpp"
#include "weights/file_io.hpp"

namespace sdgen::tokenizer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Real files are far smaller (CLIP: vocab.json 1 MB, merges.txt 0.5 MB, 49408 ids); the caps only
// keep a corrupt file from exhausting memory.
constexpr std::size_t kMaxFileBytes = 64u << 20;
constexpr std::size_t kMaxVocabEntries = 1u << 20;
// HF, like the original CLIP code, reads merges.txt lines [1 : 49152 - 256 - 2 + 1]: 48894 merges,
// which with the 512 byte symbols and the 2 special tokens make CLIP's 49408 ids. Later lines are
// ignored.
constexpr std::size_t kMaxMerges = 49152 - 256 - 2;
// CLIP's context length, CLIPTokenizer's value when tokenizer_config.json gives none.
constexpr int kDefaultMaxLength = 77;
constexpr int kLargestMaxLength = 1 << 16;
// Prompt words are short; caching only short pieces keeps one long garbage word from filling the
// cache, and the entry limit bounds it across many prompts.
constexpr std::size_t kMaxCachedPieceBytes = 64;
constexpr std::size_t kMaxCacheEntries = 1u << 16;

constexpr std::string_view kEndOfWord = "</w>";
constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";

// ---- message helpers

// `s` in single quotes for a one-line message: control bytes escaped, cut after 60 bytes.
std::string excerpt(std::string_view s) {
  constexpr std::size_t kMaxShown = 60;
  std::string out = "'";
  std::size_t shown = std::min(s.size(), kMaxShown);
  while (shown < s.size() && shown > 0 && (static_cast<unsigned char>(s[shown]) & 0xC0) == 0x80)
    --shown;  // do not cut a UTF-8 sequence
  for (const char ch : s.substr(0, shown)) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x20 || b == 0x7F) {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    } else {
      out += ch;
    }
  }
  return out + (shown < s.size() ? "...'" : "'");
}

json parse_json_object(const std::string& text, const fs::path& path, std::string_view what) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ModelError(cat(path.string(), ": not valid JSON: ", e.what()));
  }
  if (!j.is_object())
    throw ModelError(cat(path.string(), ": expected a JSON object (", what, "), found ", j.type_name()));
  return j;
}

// ---- vocab.json

struct Vocabulary {
  std::vector<std::string> tokens;  // by id
  std::unordered_map<std::string, int> ids;

  std::optional<int> find(const std::string& token) const {
    const auto it = ids.find(token);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }
};

// A dense map: N distinct string keys with the ids 0..N-1, each once.
Vocabulary load_vocabulary(const std::string& text, const fs::path& path) {
  const json j = parse_json_object(text, path, "token string -> id");
  const std::size_t n = j.size();
  if (n == 0) throw ModelError(cat(path.string(), ": the vocabulary is empty"));
  if (n > kMaxVocabEntries)
    throw ModelError(cat(path.string(), ": ", n, " entries is more than the limit of ", kMaxVocabEntries));
  Vocabulary vocab;
  vocab.tokens.resize(n);
  vocab.ids.reserve(n);
  std::vector<bool> seen(n, false);
  for (const auto& [token, value] : j.items()) {
    if (!value.is_number_integer())
      throw ModelError(cat(path.string(), ": token ", excerpt(token), " has id ", excerpt(value.dump()),
                           "; ids must be integers"));
    const bool negative = !value.is_number_unsigned() && value.get<std::int64_t>() < 0;
    const std::uint64_t id = negative ? 0 : value.get<std::uint64_t>();
    if (negative || id >= n)
      throw ModelError(cat(path.string(), ": token ", excerpt(token), " has id ", value.dump(),
                           ", outside 0..", n - 1, " (the ", n, " entries must use the ids 0..", n - 1, ")"));
    if (seen[id])
      throw ModelError(cat(path.string(), ": tokens ", excerpt(vocab.tokens[id]), " and ", excerpt(token),
                           " both have id ", id));
    seen[id] = true;
    vocab.tokens[id] = token;
    vocab.ids.emplace(token, static_cast<int>(id));
  }
  return vocab;
}

// The ids of the 256 byte symbols, alone and as a word's last symbol ("</w>" joined).
struct ByteSymbols {
  std::array<int, 256> inner{};
  std::array<int, 256> last{};
};

ByteSymbols find_byte_symbols(const Vocabulary& vocab, const fs::path& path) {
  ByteSymbols ids;
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    append_utf8(symbol, byte_to_unicode()[b]);
    for (const bool last : {false, true}) {
      const std::string token = last ? symbol + std::string(kEndOfWord) : symbol;
      const auto id = vocab.find(token);
      if (!id)
        throw ModelError(cat(path.string(), ": the symbol ", excerpt(token), " of byte ", b,
                             " is missing (a CLIP vocabulary holds all 256 byte symbols, each also with ",
                             kEndOfWord, ")"));
      (last ? ids.last : ids.inner)[b] = *id;
    }
  }
  return ids;
}

// ---- merges.txt

struct Merge {
  int rank = 0;
  int merged = 0;  // the id of the joined symbol
};
using MergeTable = std::unordered_map<std::uint64_t, Merge>;

std::uint64_t pair_key(int left, int right) {
  return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) | static_cast<std::uint32_t>(right);
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::vector<std::string_view> split_ascii_space(std::string_view s) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < s.size()) {
    if (is_ascii_space(s[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && !is_ascii_space(s[j])) ++j;
    parts.push_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}

MergeTable load_merges(const std::string& text, const fs::path& path, const Vocabulary& vocab,
                       const fs::path& vocab_path) {
  std::string_view rest = text;
  while (!rest.empty() && is_ascii_space(rest.front())) rest.remove_prefix(1);
  while (!rest.empty() && is_ascii_space(rest.back())) rest.remove_suffix(1);

  auto next_line = [&rest] {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(std::min(end + 1, rest.size()));
    return line;
  };
  const std::string_view header = next_line();
  if (!header.starts_with("#version"))
    throw ModelError(cat(path.string(), ": line 1 should be the \"#version\" header, found ", excerpt(header)));

  auto symbol_id = [&](const std::string& symbol, std::size_t line_number, std::string_view role) {
    const auto id = vocab.find(symbol);
    if (!id)
      throw ModelError(cat(path.string(), ": line ", line_number, ": ", role, " ", excerpt(symbol),
                           " is not in the vocabulary ", vocab_path.string()));
    return *id;
  };

  MergeTable merges;
  for (std::size_t rank = 0; rank < kMaxMerges && !rest.empty(); ++rank) {
    const std::size_t line_number = rank + 2;
    const std::string_view line = next_line();
    const auto parts = split_ascii_space(line);
    if (parts.size() != 2)
      throw ModelError(cat(path.string(), ": line ", line_number,
                           ": expected two symbols separated by a space, found ", excerpt(line)));
    const std::string left(parts[0]);
    const std::string right(parts[1]);
    const int left_id = symbol_id(left, line_number, "symbol");
    const int right_id = symbol_id(right, line_number, "symbol");
    const int merged_id = symbol_id(left + right, line_number, "the merged symbol");
    const auto [it, inserted] =
        merges.try_emplace(pair_key(left_id, right_id), Merge{static_cast<int>(rank), merged_id});
    if (!inserted)
      throw ModelError(cat(path.string(), ": line ", line_number, ": the merge ", excerpt(line),
                           " already appears on line ", it->second.rank + 2));
  }
  return merges;
}

// ---- tokenizer_config.json and special_tokens_map.json

// A special token's text and where it came from, for messages.
struct NamedToken {
  std::string content;
  fs::path file;  // empty: CLIPTokenizer's default
};

struct SpecialTokens {
  NamedToken bos{std::string(kStartOfText)};
  NamedToken eos{std::string(kEndOfText)};
  NamedToken unk{std::string(kEndOfText)};
  NamedToken pad{std::string(kEndOfText)};
};

constexpr std::pair<const char*, NamedToken SpecialTokens::*> kSpecialKeys[] = {
    {"bos_token", &SpecialTokens::bos},
    {"eos_token", &SpecialTokens::eos},
    {"unk_token", &SpecialTokens::unk},
    {"pad_token", &SpecialTokens::pad},
};

struct AddedToken {
  int id = 0;
  std::string content;
};

struct Settings {
  SpecialTokens special;
  int max_length = kDefaultMaxLength;
  std::vector<AddedToken> added;  // tokenizer_config.json's added_tokens_decoder
  fs::path config_path;
};

// A token is a string or an AddedToken object {"content": ..., "lstrip": ..., ...}. The
// whitespace-eating flags change how the text around the token is split; CLIP's tokens never set
// them, so a file that does is refused rather than tokenized differently from HF.
std::string token_content(const json& value, const fs::path& file, const std::string& key) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object()) {
    const auto content = value.find("content");
    if (content != value.end() && content->is_string()) {
      for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
        const auto it = value.find(flag);
        if (it != value.end() && it->is_boolean() && it->get<bool>())
          throw ModelError(cat(file.string(), ": ", key, " sets \"", flag,
                               "\": true, which sdgen does not support (CLIP's tokens never do)"));
      }
      return content->get<std::string>();
    }
  }
  throw ModelError(cat(file.string(), ": ", key, " should be a string or an object with a string \"content\", found ",
                       excerpt(value.dump())));
}

void read_special_tokens(const json& j, const fs::path& file, SpecialTokens& special) {
  for (const auto& [key, member] : kSpecialKeys) {
    const auto it = j.find(key);
    if (it != j.end()) special.*member = NamedToken{token_content(*it, file, key), file};
  }
}

Settings load_settings(const TokenizerFiles& files) {
  Settings settings;
  settings.config_path = files.dir / "tokenizer_config.json";
  bool has_added_tokens = false;
  if (files.tokenizer_config_json) {
    const fs::path& path = settings.config_path;
    const json config = parse_json_object(*files.tokenizer_config_json, path, "tokenizer settings");
    read_special_tokens(config, path, settings.special);
    if (const auto it = config.find("model_max_length"); it != config.end()) {
      const bool usable = it->is_number_integer() && it->get<std::int64_t>() >= 2 &&
                          it->get<std::int64_t>() <= kLargestMaxLength;
      if (!usable)
        throw ModelError(cat(path.string(), ": model_max_length is ", excerpt(it->dump()),
                             "; expected an integer from 2 to ", kLargestMaxLength, " (CLIP uses 77)"));
      settings.max_length = it->get<int>();
    }
    if (const auto it = config.find("added_tokens_decoder"); it != config.end()) {
      if (!it->is_object())
        throw ModelError(cat(path.string(), ": added_tokens_decoder should be an object of id -> token"));
      has_added_tokens = true;
      for (const auto& [id_text, token] : it->items()) {
        int id = -1;
        const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
        if (ec != std::errc{} || end != id_text.data() + id_text.size() || id < 0)
          throw ModelError(cat(path.string(), ": added_tokens_decoder key ", excerpt(id_text), " is not an id"));
        settings.added.push_back({id, token_content(token, path, "added_tokens_decoder[" + id_text + "]")});
      }
    }
  }
  // HF reads special_tokens_map.json only for configs without added_tokens_decoder (the
  // "legacy" branch of from_pretrained), and there it overrides the config's tokens.
  const fs::path map_path = files.dir / "special_tokens_map.json";
  if (!has_added_tokens && files.special_tokens_map_json)
    read_special_tokens(parse_json_object(*files.special_tokens_map_json, map_path, "special tokens"), map_path,
                        settings.special);
  return settings;
}

// ---- added-token splitting

struct SplitToken {
  std::u32string text;
  int id = 0;
};

}  // namespace

// ---- the tokenizer

struct ClipTokenizer::Impl {
  std::vector<std::string> tokens;
  ByteSymbols bytes;
  MergeTable merges;
  int start_of_text = 0;  // the split pattern's literals
  int end_of_text = 0;
  int bos = 0;
  int eos = 0;
  int pad = 0;
  int max_length = kDefaultMaxLength;
  std::vector<SplitToken> split_tokens;  // longest first

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache;

  std::vector<int> text_ids(std::string_view text) const;
  void append_segment(std::u32string_view segment, std::vector<int>& ids) const;
  void append_bpe(std::string_view piece, std::vector<int>& ids) const;
  std::vector<int> bpe(std::string_view piece) const;
};

// The merge loop, with HF's order of merges but without its quadratic rescans: a heap of the
// adjacent pairs that have a rank, ordered by (rank, position). HF merges every occurrence of the
// lowest-ranked pair in one left-to-right pass before it looks at the pairs those merges created,
// so all heap entries of that rank are taken out first and applied in position order; entries made
// stale by an earlier merge are skipped. A merge never recreates its own pair (the joined symbol is
// longer than either part), so the pass cannot feed itself.
std::vector<int> ClipTokenizer::Impl::bpe(std::string_view piece) const {
  constexpr int kNone = -1;
  if (piece.empty()) return {};
  const int n = static_cast<int>(piece.size());
  std::vector<int> symbol(piece.size());
  std::vector<int> prev(piece.size());
  std::vector<int> next(piece.size());
  for (int i = 0; i < n; ++i) {
    const auto byte = static_cast<unsigned char>(piece[static_cast<std::size_t>(i)]);
    symbol[i] = (i + 1 == n ? bytes.last : bytes.inner)[byte];
    prev[i] = i - 1;
    next[i] = i + 1 == n ? kNone : i + 1;
  }

  struct Candidate {
    int rank;
    int left;  // node indices; a merged symbol keeps its left node, so index order is text order
    int right;
    int left_symbol;
    int right_symbol;
    int merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](int left, int right) {
    if (left == kNone || right == kNone) return;
    const auto it = merges.find(pair_key(symbol[left], symbol[right]));
    if (it != merges.end())
      heap.push({it->second.rank, left, right, symbol[left], symbol[right], it->second.merged});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);

  std::vector<Candidate> pass;
  while (!heap.empty()) {
    const int rank = heap.top().rank;
    pass.clear();
    while (!heap.empty() && heap.top().rank == rank) {
      pass.push_back(heap.top());
      heap.pop();
    }
    for (const Candidate& c : pass) {
      const bool current =
          symbol[c.left] == c.left_symbol && next[c.left] == c.right && symbol[c.right] == c.right_symbol;
      if (!current) continue;
      symbol[c.left] = c.merged;
      symbol[c.right] = kNone;
      next[c.left] = next[c.right];
      if (next[c.left] != kNone) prev[next[c.left]] = c.left;
      consider(prev[c.left], c.left);
      consider(c.left, next[c.left]);
    }
  }

  std::vector<int> ids;
  for (int i = 0; i != kNone; i = next[i]) ids.push_back(symbol[i]);  // node 0 is never merged away
  return ids;
}

void ClipTokenizer::Impl::append_bpe(std::string_view piece, std::vector<int>& ids) const {
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    const std::lock_guard lock(cache_mutex);
    if (const auto it = cache.find(piece); it != cache.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> result = bpe(piece);
  ids.insert(ids.end(), result.begin(), result.end());
  if (cacheable) {
    const std::lock_guard lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(piece), std::move(result));
  }
}

void ClipTokenizer::Impl::append_segment(std::u32string_view segment, std::vector<int>& ids) const {
  std::string utf8;
  for (const std::u32string& word : basic_tokenize(segment)) {
    for (const Piece& piece : pretokenize(word)) {
      switch (piece.kind) {
        case PieceKind::StartOfText:
          ids.push_back(start_of_text);
          break;
        case PieceKind::EndOfText:
          ids.push_back(end_of_text);
          break;
        case PieceKind::Text:
          utf8.clear();
          for (const char32_t c : piece.text) append_utf8(utf8, c);
          append_bpe(utf8, ids);
          break;
      }
    }
  }
}

std::vector<int> ClipTokenizer::Impl::text_ids(std::string_view text) const {
  const std::u32string code_points = decode_utf8_lossy(text);
  const std::u32string_view all = code_points;
  std::vector<int> ids;
  std::size_t segment_start = 0;
  std::size_t pos = 0;
  while (pos < all.size()) {
    const auto hit = std::find_if(split_tokens.begin(), split_tokens.end(),
                                  [&](const SplitToken& t) { return all.substr(pos).starts_with(t.text); });
    if (hit == split_tokens.end()) {
      ++pos;
      continue;
    }
    append_segment(all.substr(segment_start, pos - segment_start), ids);
    ids.push_back(hit->id);
    pos += hit->text.size();
    segment_start = pos;
  }
  append_segment(all.substr(segment_start), ids);
  return ids;
}

ClipTokenizer ClipTokenizer::from_directory(const fs::path& dir) {
  const auto read = [&](const char* name) { return weights::read_text_file(dir / name, kMaxFileBytes); };
  const auto read_optional = [&](const char* name) -> std::optional<std::string> {
    if (!fs::exists(dir / name)) return std::nullopt;
    return read(name);
  };
  return from_files({
      .dir = dir,
      .vocab_json = read("vocab.json"),
      .merges_txt = read("merges.txt"),
      .tokenizer_config_json = read_optional("tokenizer_config.json"),
      .special_tokens_map_json = read_optional("special_tokens_map.json"),
  });
}

ClipTokenizer ClipTokenizer::from_files(const TokenizerFiles& files) {
  const fs::path vocab_path = files.dir / "vocab.json";
  Vocabulary vocab = load_vocabulary(files.vocab_json, vocab_path);
  auto impl = std::make_unique<Impl>();
  impl->bytes = find_byte_symbols(vocab, vocab_path);
  impl->merges = load_merges(files.merges_txt, files.dir / "merges.txt", vocab, vocab_path);
  const Settings settings = load_settings(files);
  impl->max_length = settings.max_length;

  auto literal_id = [&](std::string_view literal) {
    const auto id = vocab.find(std::string(literal));
    if (!id)
      throw ModelError(cat(vocab_path.string(), ": ", excerpt(literal),
                           " is missing (CLIP's split pattern produces it)"));
    return *id;
  };
  impl->start_of_text = literal_id(kStartOfText);
  impl->end_of_text = literal_id(kEndOfText);

  // An empty token is never split out, as in HF's Trie, which ignores it: it would match
  // everywhere without consuming any text.
  auto add_split_token = [&](const std::string& content, int id) {
    if (content.empty()) return;
    SplitToken token{decode_utf8_lossy(content), id};
    const auto same = [&](const SplitToken& t) { return t.text == token.text; };
    if (std::none_of(impl->split_tokens.begin(), impl->split_tokens.end(), same))
      impl->split_tokens.push_back(std::move(token));
  };
  // HF splits every special token out of the prompt text, unk included (which BPE here never
  // needs, since every symbol it can form has an id).
  auto special_id = [&](const char* key, const NamedToken& token) {
    const auto id = vocab.find(token.content);
    if (!id) {
      if (token.file.empty())
        throw ModelError(cat(vocab_path.string(), ": ", key, " ", excerpt(token.content),
                             " (CLIPTokenizer's default) is not in the vocabulary"));
      throw ModelError(cat(token.file.string(), ": ", key, " ", excerpt(token.content),
                           " is not in the vocabulary ", vocab_path.string()));
    }
    add_split_token(token.content, *id);
    return *id;
  };
  impl->bos = special_id("bos_token", settings.special.bos);
  impl->eos = special_id("eos_token", settings.special.eos);
  special_id("unk_token", settings.special.unk);
  impl->pad = special_id("pad_token", settings.special.pad);
  for (const AddedToken& token : settings.added) {
    const auto id = vocab.find(token.content);
    if (id != token.id)
      throw ModelError(cat(settings.config_path.string(), ": added token ", excerpt(token.content), " (id ", token.id,
                           ") is not that entry of ", vocab_path.string(),
                           "; tokens beyond the vocabulary (textual inversion) are not supported"));
    add_split_token(token.content, token.id);
  }
  std::stable_sort(impl->split_tokens.begin(), impl->split_tokens.end(),
                   [](const SplitToken& a, const SplitToken& b) { return a.text.size() > b.text.size(); });

  impl->tokens = std::move(vocab.tokens);
  return ClipTokenizer(std::move(impl));
}

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

std::vector<int> ClipTokenizer::text_ids(std::string_view text) const { return impl_->text_ids(text); }

std::vector<int> ClipTokenizer::encode(std::string_view text) const {
  std::vector<int> body = text_ids(text);
  const auto kept = std::min(body.size(), static_cast<std::size_t>(impl_->max_length - 2));
  std::vector<int> ids;
  ids.reserve(static_cast<std::size_t>(impl_->max_length));
  ids.push_back(impl_->bos);
  ids.insert(ids.end(), body.begin(), body.begin() + static_cast<std::ptrdiff_t>(kept));
  ids.push_back(impl_->eos);
  ids.resize(static_cast<std::size_t>(impl_->max_length), impl_->pad);
  return ids;
}

std::vector<int> ClipTokenizer::encode_full(std::string_view text) const {
  std::vector<int> ids{impl_->bos};
  const std::vector<int> body = text_ids(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(impl_->eos);
  return ids;
}

std::vector<std::string> ClipTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (const int id : text_ids(text)) out.push_back(impl_->tokens[static_cast<std::size_t>(id)]);
  return out;
}

int ClipTokenizer::bos_id() const { return impl_->bos; }
int ClipTokenizer::eos_id() const { return impl_->eos; }
int ClipTokenizer::pad_id() const { return impl_->pad; }
int ClipTokenizer::vocab_size() const { return static_cast<int>(impl_->tokens.size()); }
int ClipTokenizer::max_length() const { return impl_->max_length; }

}  // namespace sdgen::tokenizer
