// Data files compiled into the sdgen binary (see embed_files.cmake and app/CMakeLists.txt for
// which), so that commands that need them work wherever the binary is installed.
#pragma once

#include <span>
#include <string_view>

namespace sdgen::app {

struct EmbeddedFile {
  std::string_view path;   // relative to the folder it was embedded from: "tiny/tokenizer/vocab.json"
  std::string_view bytes;  // the file's content, byte for byte
};

std::span<const EmbeddedFile> embedded_files();

}  // namespace sdgen::app
