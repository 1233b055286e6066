// SHA-256 against the FIPS 180-4 example vectors (NIST's "SHA256.pdf", "SHA256ShortMsg") and,
// for a file, against coreutils' sha256sum: independent references, never the code under test.
// Both implementations are checked; the SHA-extension one only where the CPU has it.
#include "app/sha256.hpp"

#include "app/model_hash.hpp"
#include <catch2/catch.hpp>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "lib/core/error.hpp"
#include "tests/app/run_sdgen.hpp"
#include "tests/app/temp_dir.hpp"
#include "tests/support/paths.hpp"
#include "weights/model.hpp"

namespace {

using sdgen::app::Sha256;

std::vector<Sha256::Implementation> implementations() {
  std::vector<Sha256::Implementation> out = {Sha256::Implementation::Portable};
  if (Sha256::cpu_has_sha_extensions()) out.push_back(Sha256::Implementation::Fastest);
  else WARN("this CPU has no SHA extensions: only the portable SHA-256 is tested");
  return out;
}

// coreutils' answer for a file.
std::string sha256sum(const std::filesystem::path& file) {
  const std::string command = "sha256sum " + sdgen::test::quoted(file);
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, pipe) != nullptr);
  pclose(pipe);
  return std::string(line).substr(0, 64);
}

std::string hash_in_pieces(Sha256::Implementation impl, const std::string& message, std::size_t piece) {
  Sha256 hash(impl);
  for (std::size_t i = 0; i < message.size(); i += piece)
    hash.update(std::as_bytes(std::span(message.data() + i, std::min(piece, message.size() - i))));
  return sdgen::app::to_hex(hash.finish());
}

}  // namespace

TEST_CASE("SHA-256 matches the FIPS 180-4 example vectors", "[sha256]") {
  struct Vector {
    std::string message;
    const char* digest;
  };
  const Vector vectors[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",  // 448 bits: padding needs a 2nd block
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrs"
       "tnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {std::string(1000000, 'a'), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const auto impl : implementations()) {
    for (const auto& v : vectors) {
      INFO("implementation " << int(impl) << ", message of " << v.message.size() << " bytes");
      // Whole, and in pieces that straddle block boundaries in every phase.
      for (std::size_t piece : {std::size_t(1) << 30, std::size_t(1), std::size_t(63), std::size_t(64),
                                std::size_t(65), std::size_t(1000)})
        CHECK(hash_in_pieces(impl, v.message, piece) == v.digest);
    }
  }
}

TEST_CASE("sha256_files hashes files as sha256sum does, and several files as their concatenation", "[sha256]") {
  sdgen::test::TempDir dir;
  std::mt19937 rng(7);
  std::string data(3 * 1024 * 1024 + 37, '\0');  // not a whole number of blocks or read pieces
  for (char& c : data) c = static_cast<char>(rng());
  const auto big = dir.write("random.bin", data);

  const std::filesystem::path one[] = {big};
  CHECK(sdgen::app::to_hex(sdgen::app::sha256_files(one)) == sha256sum(big));

  const std::filesystem::path parts[] = {dir.write("a", "ab"), dir.write("b", ""), dir.write("c", "c")};
  CHECK(sdgen::app::to_hex(sdgen::app::sha256_files(parts)) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  const std::filesystem::path missing[] = {dir.path / "nope.safetensors"};
  CHECK_THROWS_WITH(sdgen::app::sha256_files(missing), Catch::Contains("nope.safetensors") &&
                                                           Catch::Contains("No such file"));
}

TEST_CASE("the model hash is A1111's: SHA-256 of the checkpoint file, of the UNet file for a folder",
          "[sha256]") {
  const auto models = sdgen::test::data_dir() / "models";
  const auto single = sdgen::weights::open_model({.model = models / "tiny-ldm.safetensors",
                                                  .config_dir = models / "tiny"});
  auto id = sdgen::app::identify_model(single);
  CHECK(id.name == "tiny-ldm");
  CHECK(id.short_hash == sha256sum(models / "tiny-ldm.safetensors").substr(0, 10));

  const auto folder = sdgen::weights::open_model({.model = models / "tiny" / ""});  // a trailing '/'
  id = sdgen::app::identify_model(folder);
  CHECK(id.name == "tiny");
  CHECK(id.short_hash == sha256sum(models / "tiny" / "unet" / "diffusion_pytorch_model.safetensors").substr(0, 10));
}
