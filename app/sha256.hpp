// SHA-256 (FIPS 180-4), for the "Model hash" every PNG carries.
//
// AUTOMATIC1111 identifies a checkpoint by the first 10 hex digits of the SHA-256 of its file
// (its "AutoV2" hash; CivitAI looks models up by the same digits), so sdgen has to hash files of
// 2 to 4 GB. The portable rounds run at 340 MB/s on this project's reference machine (a 2-core
// Xeon VM with AVX512-BF16), 12 s for SD 1.5 in fp32; the CPU's SHA extensions (Intel since Ice Lake
// and Goldmont, AMD since Zen: sha256rnds2/msg1/msg2) run at 1.2 GB/s there, so Sha256 uses them
// when CPUID reports them and the portable rounds otherwise. Both are tested against the
// FIPS 180-4 example vectors.
//
// Not a dependency for one function: the algorithm is short and fixed, libcrypto would be a
// 4 MB runtime library for it, and the portable rounds are the reference the hardware path is
// tested against.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace sdgen::app {

using Sha256Digest = std::array<std::uint8_t, 32>;

class Sha256 {
 public:
  enum class Implementation {
    Fastest,   // the SHA instructions when the CPU has them, else Portable
    Portable,  // plain C++ rounds on any CPU
  };

  explicit Sha256(Implementation implementation = Implementation::Fastest);

  // Whether this CPU has the SHA extensions (CPUID leaf 7, EBX bit 29) and SSE4.1.
  static bool cpu_has_sha_extensions();

  void update(std::span<const std::byte> bytes);
  // Pads, processes the last block and returns the digest; the object is spent afterwards.
  Sha256Digest finish();

 private:
  void process_blocks(const std::uint8_t* blocks, std::size_t count);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> pending_{};  // a partial block
  std::size_t pending_size_ = 0;
  std::uint64_t total_bytes_ = 0;
  bool hardware_ = false;
};

// Lower-case hex of a digest: "e3b0c442...".
std::string to_hex(const Sha256Digest& digest);

// The SHA-256 of the files' bytes, one after the other (of one file's, for one path), read in
// 4 MiB pieces, never a whole file at once. Throws Error naming a file that cannot be read.
Sha256Digest sha256_files(std::span<const std::filesystem::path> paths);

}  // namespace sdgen::app
