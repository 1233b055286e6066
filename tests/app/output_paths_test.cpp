// Output naming (output_paths.hpp): the three namings, what happens to existing files, and the
// up-front checks on the output directory.
#include "app/output_paths.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "tests/app/temp_dir.hpp"

namespace {

using sdgen::UsageError;
using sdgen::app::ExistingFiles;
using sdgen::app::OutputNamer;
using sdgen::app::PromptAction;

std::vector<std::string> names(const std::vector<std::filesystem::path>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(p.filename().string());
  return out;
}

}  // namespace

TEST_CASE("prompt slugs are short lower-case ASCII words joined by dashes", "[output_paths]") {
  using sdgen::app::prompt_slug;
  CHECK(prompt_slug("A red fox, in the snow!") == "a-red-fox-in-the-snow");
  CHECK(prompt_slug("  --(masterpiece:1.2)--  ") == "masterpiece-1-2");
  CHECK(prompt_slug("caf\xC3\xA9 au lait") == "caf-au-lait");
  CHECK(prompt_slug("\xE6\x97\xA5\xE6\x9C\xAC") == "image");  // nothing ASCII left
  CHECK(prompt_slug("") == "image");
  const std::string slug = prompt_slug(
      "an extremely detailed matte painting of a futuristic city at night, neon lights, rain, 8k");
  CHECK(slug == "an-extremely-detailed-matte-painting-of-a");  // cut at a word, at most 48 characters
  CHECK(prompt_slug(std::string(60, 'x')) == std::string(48, 'x'));  // one long word: cut anyway
}

TEST_CASE("-o FILE: the file, or numbered siblings for a batch", "[output_paths]") {
  sdgen::test::TempDir dir;
  auto one = OutputNamer::to_file(dir.path / "out.png", 1);
  CHECK(one.paths(0, "a fox") == std::vector<std::filesystem::path>{dir.path / "out.png"});
  CHECK(one.directory() == dir.path);
  auto three = OutputNamer::to_file(dir.path / "fox.PNG", 3);
  CHECK(names(three.paths(0, "a fox")) == std::vector<std::string>{"fox-1.PNG", "fox-2.PNG", "fox-3.PNG"});

  CHECK_THROWS_WITH(OutputNamer::to_file(dir.path / "out.jpg", 1), Catch::Contains("must end in .png"));
  CHECK_THROWS_WITH(OutputNamer::to_file(dir.path, 1), Catch::Contains("is a directory; use --outdir"));
  CHECK_THROWS_WITH(OutputNamer::to_file(dir.path / "missing" / "out.png", 1), Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(OutputNamer::to_file(dir.path / "out.png", 0), Catch::Contains("--batch must be at least 1"));
}

TEST_CASE("--outdir with one prompt: running numbers after the highest already there", "[output_paths]") {
  sdgen::test::TempDir dir;
  auto fresh = OutputNamer::running_numbers(dir.path, 2);
  CHECK(names(fresh.paths(0, "A red fox")) == std::vector<std::string>{"00001-a-red-fox.png", "00002-a-red-fox.png"});
  CHECK(names(fresh.paths(0, "a cat")) == std::vector<std::string>{"00003-a-cat.png", "00004-a-cat.png"});

  dir.write("00041-earlier.png", "");
  dir.write("7-other.png", "");
  dir.write("123456.png", "");  // no dash: not a numbered output
  dir.write("notes-99.txt", "");
  auto next = OutputNamer::running_numbers(dir.path, 1);
  CHECK(names(next.paths(0, "a fox")) == std::vector<std::string>{"00042-a-fox.png"});
}

TEST_CASE("--outdir with a prompt file: names from the prompt's position, stable across runs", "[output_paths]") {
  sdgen::test::TempDir dir;
  dir.write("00099-unrelated.png", "");  // does not shift the numbering
  auto single = OutputNamer::by_prompt_position(dir.path, 1);
  CHECK(names(single.paths(6, "a lighthouse at dusk")) == std::vector<std::string>{"00007-a-lighthouse-at-dusk.png"});
  CHECK(names(single.paths(6, "a lighthouse at dusk")) == std::vector<std::string>{"00007-a-lighthouse-at-dusk.png"});
  auto batch = OutputNamer::by_prompt_position(dir.path, 2);
  CHECK(names(batch.paths(0, "fox")) == std::vector<std::string>{"00001-fox-1.png", "00001-fox-2.png"});
  CHECK(names(batch.paths(123456, "fox")) == std::vector<std::string>{"123457-fox-1.png", "123457-fox-2.png"});
}

TEST_CASE("existing files are refused, replaced or skipped as asked", "[output_paths]") {
  sdgen::test::TempDir dir;
  const std::vector<std::filesystem::path> paths = {dir.path / "00001-fox-1.png", dir.path / "00001-fox-2.png"};
  using sdgen::app::resolve_existing;
  CHECK(resolve_existing(paths, ExistingFiles::Refuse) == PromptAction::Generate);
  CHECK(resolve_existing(paths, ExistingFiles::Skip) == PromptAction::Generate);

  dir.write("00001-fox-1.png", "png");
  CHECK_THROWS_AS(resolve_existing(paths, ExistingFiles::Refuse), UsageError);
  CHECK_THROWS_WITH(resolve_existing(paths, ExistingFiles::Refuse),
                    Catch::Contains("00001-fox-1.png already exists") && Catch::Contains("--overwrite"));
  CHECK(resolve_existing(paths, ExistingFiles::Skip) == PromptAction::Generate);  // one is missing
  CHECK(resolve_existing(paths, ExistingFiles::Overwrite) == PromptAction::Generate);

  dir.write("00001-fox-2.png", "png");
  CHECK(resolve_existing(paths, ExistingFiles::Skip) == PromptAction::Skip);
}

TEST_CASE("output directories are checked before anything is computed", "[output_paths]") {
  sdgen::test::TempDir dir;
  using sdgen::app::check_output_directory;
  CHECK_NOTHROW(check_output_directory(dir.path));
  CHECK(dir.names().empty());  // the probe file is gone
  CHECK_THROWS_WITH(check_output_directory(dir.path / "nope"), Catch::Contains("nope does not exist"));
  const auto file = dir.write("file.png", "");
  CHECK_THROWS_WITH(check_output_directory(file), Catch::Contains("is not a directory"));
  // Unwritable even for root: a "directory" below a regular file ...
  CHECK_THROWS_AS(OutputNamer::by_prompt_position(file / "sub", 1), UsageError);
  // ... and an existing directory that refuses new files, which the probe must catch: a read-only
  // one for an ordinary user; for root (whom permission bits do not stop), /proc/self.
  const std::filesystem::path read_only = ::geteuid() == 0 ? std::filesystem::path("/proc/self") : dir.path / "ro";
  if (::geteuid() != 0) {
    std::filesystem::create_directory(read_only);
    std::filesystem::permissions(read_only, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  }
  if (std::filesystem::is_directory(read_only))
    CHECK_THROWS_WITH(check_output_directory(read_only),
                      Catch::Contains("cannot write to output directory " + read_only.string()));
  else
    WARN("no /proc: the write probe of an existing read-only directory is not tested");
  if (::geteuid() != 0) std::filesystem::permissions(read_only, std::filesystem::perms::owner_all);
}
