// The sub-commands of the sdgen CLI. Each add_*_command registers its options on `app` and a
// callback that runs it; errors propagate as sdgen::Error to main().
#pragma once

#include <CLI/CLI.hpp>

namespace sdgen::app {

void add_generate_command(CLI::App& app);  // sdgen "prompt" -o out.png (no sub-command)
void add_devices_command(CLI::App& app);   // sdgen devices: what compute devices this build sees
void add_inspect_command(CLI::App& app);   // sdgen inspect MODEL: layout, configs, every tensor checked
void add_make_model_command(CLI::App& app);  // sdgen make-model: a random-weight model of a real architecture
void add_tokenize_command(CLI::App& app);  // sdgen tokenize -m MODEL TEXT: the token ids as JSON

}  // namespace sdgen::app
