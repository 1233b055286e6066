#include "weights/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>
#include <nlohmann/json.hpp>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"
#include "weights/file_io.hpp"

namespace sdgen::weights {

namespace {

// The reference implementation refuses headers over 100 MB; a real SD checkpoint's is < 200 KB.
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;
constexpr std::size_t kMaxRank = 8;

using json = nlohmann::json;

std::uint64_t read_le_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

// Multiplies without overflow; false when the product does not fit.
bool mul_fits(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafeTensorsFile::SafeTensorsFile(const std::filesystem::path& path) : file_(path) {
  const std::string where = path.string();
  const auto all = file_.bytes();
  if (all.size() < 8)
    throw ModelError(cat(where, ": not a safetensors file (", all.size(), " bytes, too short for a header)"));
  const std::uint64_t header_len = read_le_u64(all.data());
  if (header_len > kMaxHeaderBytes)
    throw ModelError(cat(where, ": not a safetensors file (header length ", header_len,
                         " exceeds the 100 MiB limit)"));
  if (header_len > all.size() - 8)
    throw ModelError(cat(where, ": truncated or not a safetensors file (header length ", header_len,
                         " but only ", all.size() - 8, " bytes follow)"));
  if (header_len < 2) throw ModelError(cat(where, ": safetensors header is empty"));
  data_offset_ = 8 + static_cast<std::size_t>(header_len);
  const std::size_t data_size = all.size() - data_offset_;

  const auto* text = reinterpret_cast<const char*>(all.data() + 8);
  json header = json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded())
    throw ModelError(cat(where, ": safetensors header is not valid JSON"));
  if (!header.is_object())
    throw ModelError(cat(where, ": safetensors header is not a JSON object"));

  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw ModelError(cat(where, ": __metadata__ must be an object of strings"));
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string())
          throw ModelError(cat(where, ": __metadata__ value for '", k, "' is not a string"));
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string tensor = cat(where, ": tensor '", name, "'");
    if (name.empty()) throw ModelError(cat(where, ": a tensor has an empty name"));
    if (!entry.is_object()) throw ModelError(cat(tensor, ": entry is not an object"));
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || sh == entry.end() || off == entry.end())
      throw ModelError(cat(tensor, ": entry needs dtype, shape and data_offsets"));
    if (!dt->is_string()) throw ModelError(cat(tensor, ": dtype is not a string"));
    const auto dtype = dtype_from_name(dt->get<std::string>());
    if (!dtype)
      throw ModelError(cat(tensor, ": unsupported dtype '", dt->get<std::string>(),
                           "' (supported: F32, F16, BF16, I32, F64, I64)"));
    if (!sh->is_array() || sh->size() > kMaxRank)
      throw ModelError(cat(tensor, ": shape must be an array of at most ", kMaxRank, " sizes"));
    TensorInfo info{.name = name, .dtype = *dtype};
    std::uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        throw ModelError(cat(tensor, ": shape must hold non-negative integers"));
      const auto dim = d.get<std::uint64_t>();
      if (dim > std::uint64_t(std::numeric_limits<std::int64_t>::max()) || !mul_fits(numel, dim, numel))
        throw ModelError(cat(tensor, ": shape is absurdly large"));
      info.shape.push_back(static_cast<std::int64_t>(dim));
    }
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      throw ModelError(cat(tensor, ": data_offsets must be two non-negative integers"));
    const auto begin = (*off)[0].get<std::uint64_t>();
    const auto end = (*off)[1].get<std::uint64_t>();
    if (begin > end)
      throw ModelError(cat(tensor, ": data_offsets [", begin, ", ", end, "] run backwards"));
    if (end > data_size)
      throw ModelError(cat(tensor, ": data offsets [", begin, ", ", end, "] lie outside the data area (",
                           data_size, " bytes); the file is truncated or corrupt"));
    std::uint64_t expected = 0;
    if (!mul_fits(numel, dtype_size(*dtype), expected) || expected != end - begin)
      throw ModelError(cat(tensor, ": shape ", shape_string(info.shape), " of ", dtype_name(*dtype),
                           " needs ", numel * dtype_size(*dtype), " bytes but data_offsets span ",
                           end - begin));
    info.begin = static_cast<std::size_t>(begin);
    info.end = static_cast<std::size_t>(end);
    tensors_.push_back(std::move(info));
  }

  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorInfo* previous = nullptr;  // last non-empty tensor
  for (const auto& t : tensors_) {
    if (t.nbytes() == 0) continue;
    if (previous != nullptr && t.begin < previous->end)
      throw ModelError(cat(where, ": tensors '", previous->name, "' and '", t.name,
                           "' overlap in the data area"));
    previous = &t;
  }
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorInfo* SafeTensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafeTensorsFile::at(std::string_view name) const {
  if (const auto* t = find(name)) return *t;
  throw ModelError(cat(path().string(), ": no tensor '", name, "'"));
}

std::span<const std::byte> SafeTensorsFile::bytes(const TensorInfo& t) const {
  return file_.bytes().subspan(data_offset_ + t.begin, t.nbytes());
}

template <class T>
std::span<const T> SafeTensorsFile::typed(const TensorInfo& t, DType want) const {
  if (t.dtype != want)
    throw ModelError(cat(path().string(), ": tensor '", t.name, "' is ", dtype_name(t.dtype),
                         ", expected ", dtype_name(want)));
  const auto b = bytes(t);
  if (reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) != 0)
    throw ModelError(cat(path().string(), ": tensor '", t.name,
                         "' is not aligned to its element size; re-save the file with the "
                         "safetensors library"));
  return {reinterpret_cast<const T*>(b.data()), b.size() / sizeof(T)};
}

std::span<const float> SafeTensorsFile::f32(const TensorInfo& t) const {
  return typed<float>(t, DType::F32);
}
std::span<const std::uint16_t> SafeTensorsFile::f16_bits(const TensorInfo& t) const {
  return typed<std::uint16_t>(t, DType::F16);
}
std::span<const std::uint16_t> SafeTensorsFile::bf16_bits(const TensorInfo& t) const {
  return typed<std::uint16_t>(t, DType::BF16);
}

void SafeTensorsFile::convert_to_f32(const TensorInfo& t, std::span<float> out) const {
  const auto n = static_cast<std::size_t>(t.numel());
  if (out.size() != n)
    throw Error(cat("convert_to_f32: tensor '", t.name, "' has ", n, " elements, buffer ", out.size()));
  const auto* src = bytes(t).data();
  switch (t.dtype) {
    case DType::F32:
      // memcpy's pointers must not be null even for 0 bytes, and an empty tensor's may be.
      if (n != 0) std::memcpy(out.data(), src, n * 4);
      return;
    case DType::F16:
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h = 0;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    default:
      throw ModelError(cat(path().string(), ": tensor '", t.name, "' is ", dtype_name(t.dtype),
                           ", which cannot be used as floating-point weights"));
  }
}

std::vector<float> SafeTensorsFile::to_f32(const TensorInfo& t) const {
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  convert_to_f32(t, out);
  return out;
}

namespace {

std::size_t tensor_bytes(const std::string& name, DType dtype, std::span<const std::int64_t> shape) {
  std::uint64_t bytes = dtype_size(dtype);
  for (auto d : shape)
    if (d < 0 || !mul_fits(bytes, static_cast<std::uint64_t>(d), bytes))
      throw Error(cat("write_safetensors: tensor '", name, "' has an invalid shape ", shape_string(shape)));
  return static_cast<std::size_t>(bytes);
}

// The 8-byte length and the JSON header, padded with spaces so that the data area, and with it
// every tensor written in order of decreasing element size, starts 8-byte aligned.
std::string header_bytes(std::span<const TensorProducer> tensors, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& t : tensors) {
    if (header.contains(t.name)) throw Error(cat("write_safetensors: tensor '", t.name, "' is listed twice"));
    const std::size_t bytes = tensor_bytes(t.name, t.dtype, t.shape);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorProducer> producers;
  producers.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (tensor_bytes(t.name, t.dtype, t.shape) != t.data.size())
      throw Error(cat("write_safetensors: tensor '", t.name, "' has ", t.data.size(),
                      " bytes for shape ", shape_string(t.shape)));
    producers.push_back({t.name, t.dtype, t.shape, [data = t.data](std::span<std::byte> out) {
                           if (!data.empty()) std::memcpy(out.data(), data.data(), data.size());
                         }});
  }
  write_safetensors_streaming(path, producers, metadata);
}

void write_safetensors_streaming(const std::filesystem::path& path, std::span<const TensorProducer> tensors,
                                 const std::map<std::string, std::string>& metadata) {
  const std::string header = header_bytes(tensors, metadata);
  AtomicOutputFile file(path);
  file.write(std::as_bytes(std::span(header)));
  std::vector<std::byte> buffer;  // reused: its capacity grows to the largest tensor
  for (const auto& t : tensors) {
    buffer.resize(tensor_bytes(t.name, t.dtype, t.shape));
    t.produce(buffer);
    file.write(buffer);
  }
  file.commit();
}

}  // namespace sdgen::weights
