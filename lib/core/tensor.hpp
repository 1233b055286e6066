// Tensor: a non-owning, trivially copyable view of typed memory on some device.
//
// Dimensions are listed outermost first, in PyTorch order, so shape comments, golden files and
// diffusers agree: an NHWC image is [B, H, W, C], a token sequence [B, N, C]. Strides are in
// elements, in the same order. A view costs nothing: [B, H, W, C] -> [B, H*W, C] is a reshape, and
// attention heads are strides ([B, N, heads, d] over the same memory), which is why NHWC end to
// end keeps the transformer blocks free of transposes.
//
// Memory is owned elsewhere (the weight store, the activation arena, host buffers in tests and I/O,
// a backend's prepared weights); a Tensor never frees anything.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "lib/core/dtype.hpp"
#include "lib/core/error.hpp"

namespace sdgen {

enum class DeviceKind { Cpu, Cuda };

struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;
  friend bool operator==(const Device&, const Device&) = default;
};

// How `data` holds the elements. Strided: element i is at data + sum(index * strides), as for every
// activation. Packed: a backend's private layout (oneDNN's blocked weight formats, bf16) made by
// Backend::prepare_weight; shape and dtype still describe the logical tensor and strides are those
// of the contiguous logical tensor, but only the backend that packed it may read `data`.
enum class Layout { Strided, Packed };

inline constexpr int kMaxRank = 5;

// Fixed-capacity list of dimensions (or strides): no allocation, cheap to pass by value.
class Dims {
 public:
  Dims() = default;
  Dims(std::initializer_list<std::int64_t> dims) {
    if (dims.size() > kMaxRank) throw Error(cat("tensor rank ", dims.size(), " exceeds ", kMaxRank));
    for (auto d : dims) v_[rank_++] = d;
  }
  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return v_[static_cast<std::size_t>(i)]; }
  std::int64_t& operator[](int i) { return v_[static_cast<std::size_t>(i)]; }
  // Dimension counted from the end: back(0) is the innermost.
  std::int64_t back(int i = 0) const { return v_[static_cast<std::size_t>(rank_ - 1 - i)]; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= v_[static_cast<std::size_t>(i)];
    return n;
  }
  void push_back(std::int64_t d) {
    if (rank_ == kMaxRank) throw Error(cat("tensor rank exceeds ", kMaxRank));
    v_[static_cast<std::size_t>(rank_++)] = d;
  }
  friend bool operator==(const Dims& a, const Dims& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  // "[2, 64, 64, 320]", for messages.
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(v_[static_cast<std::size_t>(i)]);
    return s + "]";
  }

 private:
  std::array<std::int64_t, kMaxRank> v_{};
  int rank_ = 0;
};

using Shape = Dims;
using Strides = Dims;

// Row-major (C-contiguous) strides of `shape`.
inline Strides contiguous_strides(const Shape& shape) {
  Strides s = shape;
  std::int64_t step = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    s[i] = step;
    step *= shape[i];
  }
  return s;
}

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  Strides strides;
  Device device;
  Layout layout = Layout::Strided;

  static Tensor contiguous(void* data, DType dtype, const Shape& shape, Device device = {}) {
    return Tensor{data, dtype, shape, contiguous_strides(shape), device};
  }

  int rank() const { return shape.rank(); }
  std::int64_t numel() const { return shape.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  bool is_contiguous() const { return layout == Layout::Strided && strides == contiguous_strides(shape); }

  // Same memory, new shape; only for contiguous tensors.
  Tensor reshape(const Shape& new_shape) const {
    if (!is_contiguous())
      throw Error(cat("reshape of a non-contiguous or packed tensor ", shape.str(), " to ", new_shape.str()));
    if (new_shape.numel() != numel())
      throw Error(cat("reshape ", shape.str(), " to ", new_shape.str(), " changes the element count"));
    return contiguous(data, dtype, new_shape, device);
  }

  template <class T>
  T* ptr() const { return static_cast<T*>(data); }
};

}  // namespace sdgen
