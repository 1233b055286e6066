#include "weights/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

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

AtomicOutputFile::AtomicOutputFile(std::filesystem::path destination) : destination_(std::move(destination)) {
  const auto dir = destination_.has_parent_path() ? destination_.parent_path() : std::filesystem::path(".");
  temp_ = (dir / ("." + destination_.filename().string() + ".tmp-XXXXXX")).string();
  fd_ = ::mkstemp(temp_.data());
  if (fd_ < 0) {
    temp_.clear();
    fail("cannot create a temporary file", errno);
  }
}

AtomicOutputFile::~AtomicOutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicOutputFile::write(std::span<const std::byte> bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write failed", errno);
    done += static_cast<std::size_t>(n);
  }
}

void AtomicOutputFile::commit() {
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  ::fchmod(fd_, 0644);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(temp_.c_str(), destination_.c_str()) != 0) fail("rename failed", errno);
  temp_.clear();
}

void AtomicOutputFile::fail(const char* what, int err) const {
  throw Error(cat("cannot write ", destination_.string(), ": ", what, ": ", std::strerror(err)));
}

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicOutputFile file(path);
  file.write(bytes);
  file.commit();
}

}  // namespace sdgen::weights
