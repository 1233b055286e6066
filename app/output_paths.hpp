// Where generated images go, and what happens to files already there.
//
// Three ways of naming, one per way of running sdgen:
//
//   * `-o FILE` (one prompt): FILE itself; with --batch N > 1, FILE's stem with "-1" ... "-N"
//     before the extension (out.png -> out-1.png, out-2.png).
//   * `--outdir DIR` with one prompt: a running number and a slug of the prompt,
//     "00042-a-red-fox-in-the-snow.png", continuing after the highest number already in DIR (the
//     way A1111 numbers its outputs), so a new run never collides with an earlier one.
//   * `--outdir DIR` with a prompt file: the number is the prompt's position in the file (from 1)
//     and, with --batch N > 1, the image's place in the batch: "00007-a-lighthouse-at-dusk.png",
//     "00007-a-lighthouse-at-dusk-2.png". The name depends only on (prompt, image), so a rerun of an
//     interrupted job (or another shard of it) finds exactly the files it would write, and
//     --skip-existing resumes where it stopped.
//
// A file that exists is never replaced unless asked (ExistingFiles::Overwrite); with Skip a prompt
// whose images all exist is not generated again. These are decided per prompt before its images
// are computed, and the directory is checked to exist and accept a new file when the namer is
// made, so a wrong path fails before the model loads. (A file that appears between that check and
// the write, from another process, is replaced: the PNG writer's rename does not test for it.)
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sdgen::app {

enum class ExistingFiles {
  Refuse,     // an existing target is a UsageError (the default)
  Overwrite,  // --overwrite: replace it
  Skip,       // --skip-existing: a prompt whose images all exist is skipped
};

// Throws UsageError unless `dir` exists, is a directory, and a file can be created in it. That is
// tried by creating and removing a temporary file: unlike reading the permission bits, the answer
// is also right for root and for read-only mounts.
void check_output_directory(const std::filesystem::path& dir);

// Lower-case ASCII letters and digits of the prompt, every other run of characters one '-', at
// most 48 characters cut at a word boundary; "image" when nothing is left (a prompt in another
// script). "A red fox, in the snow!" -> "a-red-fox-in-the-snow".
std::string prompt_slug(std::string_view prompt);

class OutputNamer {
 public:
  // -o FILE. Throws UsageError when FILE does not end in .png, names a directory, or its directory
  // is not writable.
  static OutputNamer to_file(const std::filesystem::path& file, int batch);
  // --outdir DIR for prompts given on the command line: running numbers after the highest in DIR.
  static OutputNamer running_numbers(const std::filesystem::path& dir, int batch);
  // --outdir DIR for a prompt file: numbers from the prompt's position in the file.
  static OutputNamer by_prompt_position(const std::filesystem::path& dir, int batch);

  const std::filesystem::path& directory() const { return directory_; }

  // The paths of one prompt's `batch` images. `item` is the prompt's 0-based position in its
  // prompt file (ignored by the other two namings). Running numbers advance with every call.
  std::vector<std::filesystem::path> paths(std::size_t item, std::string_view prompt);

 private:
  enum class Naming { File, Running, ByPosition };
  OutputNamer(Naming naming, std::filesystem::path target, int batch);

  Naming naming_;
  std::filesystem::path target_;  // the file for File, the directory otherwise
  std::filesystem::path directory_;
  int batch_ = 1;
  std::uint64_t next_number_ = 1;  // Running
};

enum class PromptAction { Generate, Skip };

// Applies the policy to one prompt's image paths: Refuse throws UsageError naming the first that
// exists; Skip returns Skip when every one exists; otherwise Generate (all paths are written).
PromptAction resolve_existing(std::span<const std::filesystem::path> paths, ExistingFiles policy);

}  // namespace sdgen::app
