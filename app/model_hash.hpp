// How a generated PNG names the model that made it: A1111's "Model" and "Model hash" fields.
//
// A1111's model hash ("AutoV2", also what CivitAI searches by) is the first 10 hex digits of the
// SHA-256 of the checkpoint file, so a single-file checkpoint gets exactly the hash A1111 shows
// for it. A diffusers folder has no single file; its hash is taken over the UNet's weight file
// (the UNet's files in path order when it is sharded): the UNet is what distinguishes fine-tunes
// (they share VAEs and text encoders), and the digits stay stable when only a config or another
// component's file is touched. The name is the checkpoint's file stem, or the folder's name.
//
// Hashing reads the whole file: about 3.5 s for a 4 GB checkpoint in the page cache with the
// CPU's SHA instructions, 12 s without (sha256.hpp), so commands compute it only when they write
// PNGs, once per run.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "weights/model.hpp"

namespace sdgen::app {

struct ModelIdentity {
  std::string name;        // "v1-5-pruned-emaonly", "stable-diffusion-v1-5"
  std::string short_hash;  // 10 lower-case hex digits
};

// The files the hash is taken over (see above), for messages and tests.
std::vector<std::filesystem::path> model_hash_files(const weights::OpenedModel& model);

// Reads model_hash_files() once. Throws Error naming a file that cannot be read.
ModelIdentity identify_model(const weights::OpenedModel& model);

}  // namespace sdgen::app
