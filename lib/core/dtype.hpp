// Element types of tensors in files and in memory. F64/I64 exist only so that the safetensors
// reader can name them in its messages and refuse them; nothing computes in them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace sdgen {

enum class DType { F32, F16, BF16, I32, F64, I64 };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F16:
    case DType::BF16: return 2;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F64:
    case DType::I64: return 8;
  }
  return 0;
}

// The spelling safetensors uses ("F32", "F16", "BF16", ...), also used in messages.
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
  }
  return "?";
}

inline std::optional<DType> dtype_from_name(std::string_view s) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::F64, DType::I64})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

}  // namespace sdgen
