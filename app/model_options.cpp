#include "app/model_options.hpp"

#include <cstdlib>

#include "lib/core/error.hpp"

namespace sdgen::app {

weights::OpenOptions ModelArgs::open_options() const {
  std::string path = model;
  if (path.empty()) {
    const char* env = std::getenv("SDGEN_MODEL");
    if (env == nullptr || *env == '\0')
      throw UsageError("no model given: pass -m MODEL (a diffusers folder or a .safetensors file) or set SDGEN_MODEL");
    path = env;
  }
  weights::OpenOptions options{.model = path};
  if (!config.empty()) options.config_dir = config;
  if (!tokenizer.empty()) options.tokenizer_dir = tokenizer;
  if (prediction == "epsilon") options.prediction = weights::PredictionOverride::Epsilon;
  if (prediction == "v") options.prediction = weights::PredictionOverride::VPrediction;
  return options;
}

std::shared_ptr<ModelArgs> add_model_options(CLI::App& cmd) {
  auto args = std::make_shared<ModelArgs>();
  cmd.add_option("-m,--model", args->model,
                 "A diffusers model folder (with model_index.json) or a single-file .safetensors "
                 "checkpoint (default: $SDGEN_MODEL)");
  cmd.add_option("--config", args->config,
                 "Folder with diffusers configs for a single-file checkpoint (default: a preset: SD 1.5, or "
                 "SD 2.1 for a checkpoint with a 1024-wide text encoder)");
  cmd.add_option("--tokenizer", args->tokenizer, "Tokenizer folder (vocab.json, merges.txt, ...)");
  cmd.add_option("--prediction", args->prediction, "Override the scheduler's prediction type")
      ->check(CLI::IsMember({"epsilon", "v"}));
  return args;
}

}  // namespace sdgen::app
