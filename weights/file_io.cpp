#include "weights/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lib/core/error.hpp"

namespace sdgen::weights {

std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ModelError(cat(path.string(), ": file not found"));
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw ModelError(cat(path.string(), ": cannot read: ", ec.message()));
  if (size > max_bytes)
    throw ModelError(cat(path.string(), ": file is too large (", size, " bytes, limit ", max_bytes, ")"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(cat(path.string(), ": cannot open: ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace {

// Removes the temporary file unless the rename succeeded.
struct TempFile {
  std::string path;
  bool keep = false;
  ~TempFile() {
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

[[noreturn]] void fail(const std::filesystem::path& dest, const char* what, int err) {
  throw Error(cat("cannot write ", dest.string(), ": ", what, ": ", std::strerror(err)));
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string pattern = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) fail(path, "cannot create a temporary file", errno);
  TempFile temp{pattern};
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail(path, "write failed", err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, "fsync failed", err);
  }
  ::fchmod(fd, 0644);
  if (::close(fd) != 0) fail(path, "close failed", errno);
  if (::rename(temp.path.c_str(), path.c_str()) != 0) fail(path, "rename failed", errno);
  temp.keep = true;
}

}  // namespace sdgen::weights
