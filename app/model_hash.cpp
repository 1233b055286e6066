#include "app/model_hash.hpp"

#include <algorithm>

#include "app/sha256.hpp"
#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

// A1111's short hash: the first 10 hex digits of the full SHA-256.
constexpr std::size_t kShortHashDigits = 10;

std::string model_name(const weights::OpenedModel& model) {
  std::filesystem::path source = model.source.lexically_normal();
  if (!source.has_filename()) source = source.parent_path();  // "models/sd15/"
  return model.layout == weights::ModelLayout::SingleFile ? source.stem().string() : source.filename().string();
}

}  // namespace

std::vector<std::filesystem::path> model_hash_files(const weights::OpenedModel& model) {
  if (model.layout == weights::ModelLayout::SingleFile) return {model.source};
  std::vector<std::filesystem::path> files;
  for (const auto& [name, source] : model.unet_tensors)
    if (source.file && std::ranges::find(files, source.file->path()) == files.end())
      files.push_back(source.file->path());
  if (files.empty()) throw Error(cat(model.source.string(), ": the UNet has no weight file to hash"));
  std::ranges::sort(files);
  return files;
}

ModelIdentity identify_model(const weights::OpenedModel& model) {
  const auto files = model_hash_files(model);
  return {model_name(model), to_hex(sha256_files(files)).substr(0, kShortHashDigits)};
}

}  // namespace sdgen::app
