// Fuzzes the safetensors reader on whole files: length prefix, JSON header and data area.
//
// The reader's promise (weights/safetensors.hpp) is that once the constructor returns, every view
// it hands out is in bounds. This harness checks that promise against the input itself rather
// than against the reader's own bookkeeping: each tensor's bytes() must be exactly the bytes at
// 8 + N + begin of the fuzzed file (so it lies inside the file and points at the right place), its
// size must be numel x element size, tensors come sorted by offset and non-empty ones never
// overlap, and every name is found again by find(). The float conversions are run on small
// tensors so that the typed views' alignment checks and the f16/bf16 decoders see fuzzed data.
#include <algorithm>
#include <cstring>
#include <set>

#include "tests/fuzz/fuzz_support.hpp"
#include "weights/safetensors.hpp"

using namespace sdgen;
using namespace sdgen::weights;

namespace {

// Converting a large tensor proves nothing a small one does not; it only slows the fuzzer down.
constexpr std::int64_t kMaxConvertedElements = 4096;

void check_tensor(const SafeTensorsFile& file, const TensorInfo& t, const std::uint8_t* data, std::size_t size,
                  std::uint64_t data_offset) {
  std::int64_t numel = 1;
  for (const auto d : t.shape) {
    fuzz::check(d >= 0, cat(t.name, ": negative dimension"));
    numel *= d;
  }
  fuzz::check(numel == t.numel(), cat(t.name, ": numel() disagrees with the shape"));
  fuzz::check(t.begin <= t.end, cat(t.name, ": begin > end"));
  fuzz::check(t.nbytes() == std::uint64_t(numel) * dtype_size(t.dtype), cat(t.name, ": size is not numel x element size"));
  fuzz::check(data_offset + t.end <= size, cat(t.name, ": range ends past the end of the file"));

  const auto bytes = file.bytes(t);
  fuzz::check(bytes.size() == t.nbytes(), cat(t.name, ": bytes() has the wrong size"));
  fuzz::check(bytes.empty() || std::memcmp(bytes.data(), data + data_offset + t.begin, bytes.size()) == 0,
              cat(t.name, ": bytes() are not the file's bytes at the tensor's offsets"));
  fuzz::check(file.find(t.name) == &t, cat(t.name, ": find() does not return the tensor"));

  if (numel > kMaxConvertedElements) return;
  const bool is_float = t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16;
  std::vector<float> values;
  const bool converted = fuzz::accepts([&] { values = file.to_f32(t); });
  fuzz::check(converted == is_float, cat(t.name, ": to_f32() accepts exactly the float dtypes"));
  if (converted) fuzz::check(values.size() == std::size_t(numel), cat(t.name, ": to_f32() has the wrong length"));
  fuzz::accepts([&] {
    const auto view = file.f32(t);
    fuzz::check(view.size() == std::size_t(numel), cat(t.name, ": f32() has the wrong length"));
  });
  fuzz::accepts([&] { fuzz::check(file.f16_bits(t).size() == std::size_t(numel), cat(t.name, ": f16_bits() length")); });
  fuzz::accepts([&] { fuzz::check(file.bf16_bits(t).size() == std::size_t(numel), cat(t.name, ": bf16_bits() length")); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fuzz::MemoryFile memory(fuzz::as_text(data, size));
  fuzz::accepts([&] {
    const SafeTensorsFile file(memory.path());
    // A file the reader accepts has a length prefix, and the header fits in the file after it.
    fuzz::check(size >= 8, "accepted a file shorter than its length prefix");
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = header_size << 8 | data[i];
    fuzz::check(header_size <= size - 8, "accepted a header longer than the file");
    fuzz::check(file.file_size() == size, "file_size() is not the file's size");

    const auto& tensors = file.tensors();
    std::set<std::string> names;
    const TensorInfo* previous = nullptr;  // last non-empty tensor
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      fuzz::check(names.insert(t.name).second, cat(t.name, ": listed twice"));
      fuzz::check(t.name != "__metadata__", "__metadata__ listed as a tensor");
      if (i > 0) fuzz::check(tensors[i - 1].begin <= t.begin, "tensors are not in offset order");
      check_tensor(file, t, data, size, 8 + header_size);
      if (t.nbytes() == 0) continue;
      if (previous != nullptr)
        fuzz::check(previous->end <= t.begin, cat("tensors '", previous->name, "' and '", t.name, "' overlap"));
      previous = &t;
    }
    fuzz::check(file.find("\x01not a tensor name") == nullptr || names.contains("\x01not a tensor name"),
                "find() invents a tensor");
  });
  return 0;
}
