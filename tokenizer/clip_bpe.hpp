// CLIP's byte-level BPE tokenizer, matching Hugging Face's slow CLIPTokenizer (transformers, with
// ftfy not installed: the plain diffusers set-up) id for id.
//
// What encode() does, in HF's order:
//   1. decode the bytes as UTF-8 (utf8.hpp: invalid bytes become U+FFFD, which step 3 drops);
//   2. split out the added tokens, as transformers' Trie does on the raw text: bos, eos, unk and
//      pad tokens and any "added_tokens_decoder" entry of tokenizer_config.json. Each occurrence
//      becomes its id directly (leftmost match, longest at a position). With SD2's pad token "!"
//      this turns every "!" of a prompt into id 0 instead of BPE's "!</w>";
//   3. clean up, NFC, split and lowercase each remaining segment (text_normalize.hpp);
//   4. split words with CLIP's pattern (pretokenize.hpp);
//   5. byte-level BPE on each piece: its UTF-8 bytes as GPT-2 byte symbols (byte_unicode.hpp),
//      "</w>" joined to the last one, then repeatedly merge every occurrence, left to right, of the
//      adjacent pair with the lowest rank in merges.txt, until no pair has a rank;
//   6. BOS + ids + EOS, keeping the first max_length-2 ids, then padding with the pad id.
//
// Files (from_directory, or from_files with their contents): vocab.json and merges.txt are
// required; tokenizer_config.json (model_max_length, special tokens, added_tokens_decoder) and
// special_tokens_map.json (special tokens; it overrides the config unless the config has
// added_tokens_decoder, as in HF) are optional, with CLIPTokenizer's defaults: <|startoftext|>,
// <|endoftext|> for eos, unk and pad, and 77 positions. As in HF only merges.txt lines 2..48895
// are read (line 1 is the "#version" header): CLIP's 49408-id vocabulary holds 48894 merges.
// Everything is validated at load, and every problem is a ModelError naming the file: a
// vocabulary that is not a dense string->id map, a malformed or duplicated merge, a merge whose
// parts or result are not in the vocabulary, a missing byte symbol, a special token not in the
// vocabulary, an unusable model_max_length. Since the vocabulary then holds every byte symbol and
// every merge result, BPE can never produce a string without an id, and HF's unknown-token
// fallback is never needed.
//
// Thread safety: all methods are const and may be called from several threads at once. BPE
// results of short pieces are cached (as HF does), behind a mutex; the cache is emptied when it
// reaches its size limit, so memory stays bounded whatever the prompts.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdgen::tokenizer {

// The contents of a tokenizer folder's files, as from_directory reads them.
struct TokenizerFiles {
  std::filesystem::path dir;  // only to name the files in messages: dir / "vocab.json", ...
  std::string vocab_json;
  std::string merges_txt;
  std::optional<std::string> tokenizer_config_json;    // absent: CLIPTokenizer's defaults
  std::optional<std::string> special_tokens_map_json;  // absent: the config's tokens
};

class ClipTokenizer {
 public:
  // Loads and validates a tokenizer folder (a diffusers model's tokenizer/); throws ModelError.
  static ClipTokenizer from_directory(const std::filesystem::path& dir);
  // The same from the files' contents (from_directory reads them and calls this; the fuzzer
  // calls it directly); throws ModelError naming dir / the file.
  static ClipTokenizer from_files(const TokenizerFiles& files);

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  // Exactly max_length() ids: BOS, the text's ids (truncated to max_length()-2), EOS, then the
  // pad id. This is tokenizer(text, padding="max_length", truncation=True).input_ids.
  std::vector<int> encode(std::string_view text) const;
  // BOS, all of the text's ids, EOS: tokenizer(text).input_ids.
  std::vector<int> encode_full(std::string_view text) const;
  // The vocabulary strings of the text's tokens, without BOS/EOS: tokenizer.tokenize(text).
  std::vector<std::string> tokenize(std::string_view text) const;

  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  int vocab_size() const;
  int max_length() const;  // tokenizer_config.json's model_max_length (77 for SD)

 private:
  struct Impl;
  explicit ClipTokenizer(std::unique_ptr<Impl> impl);
  std::vector<int> text_ids(std::string_view text) const;

  std::unique_ptr<Impl> impl_;
};

}  // namespace sdgen::tokenizer
