// weights::write_safetensors_streaming: the file the in-memory writer would write, produced one
// tensor at a time, and no trace of it when a producer or the disk fails. (It lives with the app
// tests because `sdgen make-model` is its user; the reader it is checked with is the tested one.)
#include <catch2/catch.hpp>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "lib/core/error.hpp"
#include "tests/app/temp_dir.hpp"
#include "weights/safetensors.hpp"

namespace {

using sdgen::DType;
using sdgen::weights::SafeTensorsFile;
using sdgen::weights::TensorProducer;

// Fills a float tensor with start, start + 1, ...
TensorProducer counting(std::string name, std::vector<std::int64_t> shape, float start) {
  return {std::move(name), DType::F32, std::move(shape), [start](std::span<std::byte> out) {
            for (std::size_t i = 0; i < out.size() / 4; ++i) {
              const float v = start + float(i);
              std::memcpy(out.data() + 4 * i, &v, 4);
            }
          }};
}

}  // namespace

TEST_CASE("streamed safetensors read back tensor by tensor", "[safetensors]") {
  sdgen::test::TempDir dir;
  const auto path = dir.path / "streamed.safetensors";
  const std::vector<TensorProducer> tensors = {counting("a", {2, 3}, 10), counting("empty", {0, 4}, 0),
                                               counting("b", {5}, -2)};
  sdgen::weights::write_safetensors_streaming(path, tensors, {{"format", "pt"}});
  CHECK(dir.names() == std::vector<std::string>{"streamed.safetensors"});
  const SafeTensorsFile file(path);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.to_f32(file.at("a")) == std::vector<float>{10, 11, 12, 13, 14, 15});
  CHECK(file.at("empty").numel() == 0);
  CHECK(file.to_f32(file.at("b")) == std::vector<float>{-2, -1, 0, 1, 2});
}

TEST_CASE("a failing producer or destination leaves no file behind", "[safetensors]") {
  sdgen::test::TempDir dir;
  const std::vector<TensorProducer> failing = {
      counting("a", {4}, 0), {"b", DType::F32, {4}, [](std::span<std::byte>) { throw std::runtime_error("no"); }}};
  CHECK_THROWS_WITH(sdgen::weights::write_safetensors_streaming(dir.path / "x.safetensors", failing), "no");
  CHECK(dir.names().empty());

  const std::vector<TensorProducer> twice = {counting("a", {1}, 0), counting("a", {1}, 0)};
  CHECK_THROWS_WITH(sdgen::weights::write_safetensors_streaming(dir.path / "x.safetensors", twice),
                    Catch::Contains("'a' is listed twice"));
  const auto file = dir.write("plain", "x");
  const std::vector<TensorProducer> one = {counting("a", {1}, 0)};
  CHECK_THROWS_WITH(sdgen::weights::write_safetensors_streaming(file / "x.safetensors", one),
                    Catch::Contains("cannot create a temporary file") && Catch::Contains("Not a directory"));
  CHECK(dir.names() == std::vector<std::string>{"plain"});
}
