// The options of text-to-image generation (the command without a sub-command), as a plain struct
// filled by CLI11, so the run itself never touches the parser.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "app/model_options.hpp"

namespace sdgen::app {

struct GenerateOptions {
  std::shared_ptr<ModelArgs> model;
  std::string prompt;
  std::string negative;
  std::string prompts_file;
  std::string shard = "0/1";  // "K/N"
  std::string output;
  std::string outdir;
  bool overwrite = false;
  bool skip_existing = false;
  int steps = 25;
  double cfg = 7.5;
  std::optional<std::uint64_t> seed;
  std::string scheduler = "dpm++2m";
  bool karras = false;
  double eta = 0.0;
  int width = 0;  // 0: the model's native size (unet sample_size x 8)
  int height = 0;
  int batch = 1;
  std::string device = "auto";
  std::string max_vram;  // --max-vram: device memory sdgen may use ("6G", "3500M"); empty: all of it
  int threads = 0;
  std::string dtype;  // fp32, fp16 or bf16; empty: the device's default (fp32 on the CPU, fp16 on a GPU)
  int clip_skip = 1;  // A1111 numbering: 1 uses the last layer
  bool quiet = false;
  bool profile = false;
  bool dry_run = false;  // load the model, print the memory plan, generate nothing
  std::string json;
  std::string dump;
};

// Registers the generation options on the top-level app; the struct is filled while parsing.
std::shared_ptr<GenerateOptions> add_generate_options(CLI::App& app);

}  // namespace sdgen::app
