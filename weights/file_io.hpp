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

// Writes `bytes` to a temporary file in the destination's directory, flushes it to disk and
// renames it over `path`. An interrupted or failed write leaves no partial file at `path` and
// removes the temporary. Throws Error with the OS reason (disk full, permission denied, ...).
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace sdgen::weights
