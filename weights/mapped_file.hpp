// A read-only memory map of a whole file (RAII). Weights are served straight out of the map, so a
// 4 GB checkpoint costs page cache, not a second copy in the heap.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace sdgen::weights {

class MappedFile {
 public:
  // Throws ModelError when the file cannot be opened, is a directory, or is empty.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release() noexcept;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sdgen::weights
