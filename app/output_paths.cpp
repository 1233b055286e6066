// Output naming and the checks on output directories; see output_paths.hpp.
#include "app/output_paths.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

// Long enough to recognise the prompt, short enough that the number and the slug stay readable in
// a file listing (and far below the 255-byte name limit).
constexpr std::size_t kSlugLength = 48;

// Five digits, as A1111 pads its running numbers; larger numbers simply grow.
std::string number_prefix(std::uint64_t number) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%05llu", static_cast<unsigned long long>(number));
  return buffer;
}

bool is_ascii_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

// 1 + the largest "<digits>-" prefix of a name in `dir`; 1 when there is none.
std::uint64_t first_free_number(const std::filesystem::path& dir) {
  std::uint64_t highest = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::uint64_t number = 0;
    const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), number);
    if (err == std::errc() && end != name.data() && end < name.data() + name.size() && *end == '-')
      highest = std::max(highest, number);
  }
  if (ec) throw UsageError(cat("cannot list output directory ", dir.string(), ": ", ec.message()));
  return highest + 1;
}

bool has_png_extension(const std::filesystem::path& file) {
  std::string ext = file.extension().string();
  std::ranges::transform(ext, ext.begin(), ascii_lower);
  return ext == ".png";
}

}  // namespace

void check_output_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto status = std::filesystem::status(dir, ec);
  if (!std::filesystem::exists(status))
    throw UsageError(cat("output directory ", dir.string(), " does not exist"));
  if (!std::filesystem::is_directory(status))
    throw UsageError(cat("output directory ", dir.string(), " is not a directory"));
  std::string probe = (dir / ".sdgen-write-test-XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) throw UsageError(cat("cannot write to output directory ", dir.string(), ": ", std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string prompt_slug(std::string_view prompt) {
  std::string slug;
  for (char c : prompt) {
    if (is_ascii_alnum(c))
      slug += ascii_lower(c);
    else if (!slug.empty() && slug.back() != '-')
      slug += '-';
  }
  if (slug.size() > kSlugLength) {
    const std::size_t cut = slug.rfind('-', kSlugLength);
    slug.resize(cut != std::string::npos && cut > 0 ? cut : kSlugLength);
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug.empty() ? "image" : slug;
}

OutputNamer::OutputNamer(Naming naming, std::filesystem::path target, int batch)
    : naming_(naming), target_(std::move(target)), batch_(batch) {
  if (batch < 1) throw UsageError(cat("--batch must be at least 1, got ", batch));
  directory_ = naming_ == Naming::File ? target_.parent_path() : target_;
  if (directory_.empty()) directory_ = ".";
  check_output_directory(directory_);
}

OutputNamer OutputNamer::to_file(const std::filesystem::path& file, int batch) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw UsageError(cat("-o ", file.string(), " is a directory; use --outdir to write numbered images into it"));
  if (!has_png_extension(file)) throw UsageError(cat("-o ", file.string(), ": the file name must end in .png"));
  return OutputNamer(Naming::File, file, batch);
}

OutputNamer OutputNamer::running_numbers(const std::filesystem::path& dir, int batch) {
  OutputNamer namer(Naming::Running, dir, batch);
  namer.next_number_ = first_free_number(dir);
  return namer;
}

OutputNamer OutputNamer::by_prompt_position(const std::filesystem::path& dir, int batch) {
  return OutputNamer(Naming::ByPosition, dir, batch);
}

std::vector<std::filesystem::path> OutputNamer::paths(std::size_t item, std::string_view prompt) {
  std::vector<std::filesystem::path> out;
  const auto image_suffix = [&](int image) { return batch_ > 1 ? cat("-", image + 1) : std::string(); };
  for (int image = 0; image < batch_; ++image) {
    switch (naming_) {
      case Naming::File:
        out.push_back(target_.parent_path() /
                      cat(target_.stem().string(), image_suffix(image), target_.extension().string()));
        break;
      case Naming::Running:
        out.push_back(target_ / cat(number_prefix(next_number_++), "-", prompt_slug(prompt), ".png"));
        break;
      case Naming::ByPosition:
        out.push_back(target_ / cat(number_prefix(item + 1), "-", prompt_slug(prompt), image_suffix(image), ".png"));
        break;
    }
  }
  return out;
}

PromptAction resolve_existing(std::span<const std::filesystem::path> paths, ExistingFiles policy) {
  if (policy == ExistingFiles::Overwrite) return PromptAction::Generate;
  std::size_t existing = 0;
  for (const auto& path : paths) {
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) continue;
    if (policy == ExistingFiles::Refuse)
      throw UsageError(cat("output file ", path.string(), " already exists (pass --overwrite to replace it, "
                           "or --skip-existing to keep it and skip its prompt)"));
    ++existing;
  }
  return existing == paths.size() && !paths.empty() ? PromptAction::Skip : PromptAction::Generate;
}

}  // namespace sdgen::app
