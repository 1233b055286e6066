// The options that choose a model, shared by every command that opens one (generate, inspect,
// tokenize), so that -m, --config, --tokenizer and --prediction mean the same thing everywhere.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "weights/model.hpp"

namespace sdgen::app {

struct ModelArgs {
  std::string model;  // -m/--model; defaults to $SDGEN_MODEL
  std::string config;
  std::string tokenizer;
  std::string prediction;

  // Throws UsageError when no model was given and $SDGEN_MODEL is unset.
  weights::OpenOptions open_options() const;
};

// Registers -m/--model (also positional when `positional` names it), --config, --tokenizer and
// --prediction on `cmd`; the returned arguments are filled in while parsing.
std::shared_ptr<ModelArgs> add_model_options(CLI::App& cmd);

}  // namespace sdgen::app
