// `sdgen tokenize -m MODEL "text"`: the token ids the text encoder will see, as JSON, so that a
// user can compare them with transformers' CLIPTokenizer or check where a long prompt is cut.
// Only the tokenizer is loaded: with --tokenizer DIR no model is needed at all.
#include <cstdio>
#include <string>

#include "app/commands.hpp"
#include "app/model_options.hpp"
#include "tokenizer/clip_bpe.hpp"

namespace sdgen::app {

namespace {

std::string json_ids(const std::vector<int>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the CLIP token ids of a text as JSON");
  auto args = add_model_options(*cmd);
  auto text = std::make_shared<std::string>();
  auto full = std::make_shared<bool>(false);
  cmd->add_option("text", *text, "The prompt")->required();
  cmd->add_flag("--full", *full, "All ids (BOS, tokens, EOS) without truncation or padding");
  cmd->callback([args, text, full] {
    const auto dir = args->model.empty() && !args->tokenizer.empty()
                         ? std::filesystem::path(args->tokenizer)
                         : weights::open_model(args->open_options()).tokenizer_dir;
    const auto tok = tokenizer::ClipTokenizer::from_directory(dir);
    const auto ids = *full ? tok.encode_full(*text) : tok.encode(*text);
    std::printf("%s\n", json_ids(ids).c_str());
  });
}

}  // namespace sdgen::app
