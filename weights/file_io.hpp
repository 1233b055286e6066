// Whole-file reads and crash-safe writes shared by every part of sdgen that touches disk.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace sdgen::weights {

// Reads a whole (small) file: configs, vocabularies. Throws ModelError naming the file when it is
// missing, unreadable or larger than `max_bytes`.
std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes = 64u << 20);

// A file written under a temporary name in its destination's directory (".NAME.tmp-XXXXXX"),
// flushed to disk and renamed over the destination by commit(). Until commit() succeeds the
// destructor removes the temporary, so a failed or interrupted write (disk full, an exception,
// Ctrl-C unwinding the stack) leaves neither a partial file at the destination nor a temporary.
// Errors throw Error with the destination and the OS reason.
class AtomicOutputFile {
 public:
  explicit AtomicOutputFile(std::filesystem::path destination);
  ~AtomicOutputFile();
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;

  void write(std::span<const std::byte> bytes);
  void commit();

 private:
  [[noreturn]] void fail(const char* what, int err) const;

  std::filesystem::path destination_;
  std::string temp_;  // empty once renamed (or never created)
  int fd_ = -1;
};

// Writes `bytes` to a temporary file in the destination's directory, flushes it to disk and
// renames it over `path` (one AtomicOutputFile). An interrupted or failed write leaves no partial file at `path` and
// removes the temporary. Throws Error with the OS reason (disk full, permission denied, ...).
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace sdgen::weights
