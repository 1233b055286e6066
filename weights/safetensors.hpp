// The safetensors format, read from untrusted files and written atomically.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON, then the data area. The JSON
// maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data area), plus an optional "__metadata__" object of strings.
//
// Everything in the header is checked before a byte of tensor data is touched: N against the file
// size and a 100 MiB cap (the reference implementation's limit), the JSON must be an object, every
// dtype must be known, shape x element size must equal end - begin (overflow-checked), every range
// must lie inside the data area, and no two non-empty ranges may overlap. Each failure is a
// ModelError naming the file and the tensor. After construction every view handed out is in
// bounds by construction.
//
// Views are zero-copy into a read-only memory map. A typed span (f32(), f16_bits(), ...) also
// needs the tensor's start to be aligned to its element size, which files written by the
// safetensors library always are (their header is padded to 8 bytes); convert_to_f32() works on
// any tensor through memcpy and is the path for loaders that convert anyway.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/core/dtype.hpp"
#include "weights/mapped_file.hpp"

namespace sdgen::weights {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // outermost first, as torch writes it
  std::size_t begin = 0;            // byte range inside the data area
  std::size_t end = 0;

  std::int64_t numel() const;
  std::size_t nbytes() const { return end - begin; }
};

// "[320, 4, 3, 3]", for messages.
std::string shape_string(std::span<const std::int64_t> shape);

class SafeTensorsFile {
 public:
  // Maps and validates the file; throws ModelError on any defect.
  explicit SafeTensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  std::size_t file_size() const { return file_.size(); }
  // Tensors in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TensorInfo* find(std::string_view name) const;
  // Throws ModelError "<file>: no tensor '<name>'" when absent.
  const TensorInfo& at(std::string_view name) const;

  std::span<const std::byte> bytes(const TensorInfo& t) const;
  // Zero-copy typed views; throw ModelError when the dtype differs or the data is misaligned.
  std::span<const float> f32(const TensorInfo& t) const;
  std::span<const std::uint16_t> f16_bits(const TensorInfo& t) const;
  std::span<const std::uint16_t> bf16_bits(const TensorInfo& t) const;
  // F32/F16/BF16 -> float, any alignment. `out` must hold numel() floats.
  void convert_to_f32(const TensorInfo& t, std::span<float> out) const;
  std::vector<float> to_f32(const TensorInfo& t) const;

 private:
  template <class T>
  std::span<const T> typed(const TensorInfo& t, DType want) const;

  MappedFile file_;
  std::size_t data_offset_ = 0;  // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// ---- writing (tests, `sdgen make-model`, `--dump`)

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;  // exactly numel x dtype_size bytes
};

// Writes a standard safetensors file (header padded to 8 bytes, tensors in the given order) to a
// temporary name beside `path` and renames it, so a reader never sees a half-written file.
void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// A tensor whose bytes are made when the writer reaches it. A full-size checkpoint (4 GB for SD 1.5
// in fp32) is larger than the memory a user should need to write one, so the streaming writer
// holds one tensor at a time: the peak is the largest tensor (150 MB: SD's token embedding).
struct TensorProducer {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  // Fills the tensor's bytes (numel x dtype_size, little-endian, outermost dimension first).
  std::function<void(std::span<std::byte>)> produce;
};

// The same file as write_safetensors, equally crash-safe (temporary file, fsync, rename), written
// tensor by tensor. Throws Error with the OS reason; the temporary file is removed on any failure,
// an exception from a producer included.
void write_safetensors_streaming(const std::filesystem::path& path, std::span<const TensorProducer> tensors,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace sdgen::weights
