// Bounds- and race-checked views of global and shared memory, for the emulation build.
//
// On the GPU, GlobalPtr<T> and SharedPtr<T> (kernels/cuda/device_api.cuh) are a bare pointer. Here
// they also carry the extent of the memory they view and a name for messages:
//   - GlobalPtr<T> is made on the host from a buffer and its element count (the launch's tensor
//     views), so an index outside the buffer is reported with the buffer's name, the index and the
//     extent. operator[] returns a real reference: global memory is not race-checked.
//   - SharedPtr<T> views one SDGEN_SHARED array or the dynamic shared memory (or a slice of
//     either), and operator[] returns a SharedRef: a proxy that reports every read and write to the
//     runtime, which checks for races, reads of unwritten memory, and copies still in flight.
//
// SharedRef is only usable as a temporary (its members are &&-qualified): `float v = s[i];` reads,
// `s[i] = v;` and `s[i] += v;` write. Keeping one, as in `auto v = s[i];`, would hold a reference
// where the GPU code holds a value, so any later use of such a `v` fails to compile instead;
// write the element type instead of `auto`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/cuda/emu/emulated_cuda.hpp"
#include "kernels/cuda/emu/runtime.hpp"
#include "lib/core/error.hpp"

namespace sdgen::cuda {

namespace emu {

// The checks both views share: an element range inside [0, count).
[[noreturn]] inline void out_of_bounds(const char* space, const char* name, std::int64_t index,
                                       std::int64_t elements, std::int64_t count) {
  fault(cat(space, " memory access out of bounds: ", name, "[", index, "]",
            elements > 1 ? cat(" (", elements, " elements)") : std::string(), " but ", name,
            " has ", count, " elements"));
}

[[noreturn]] inline void misaligned(const char* name, std::int64_t index, std::size_t alignment) {
  fault(cat("misaligned access: &", name, "[", index, "] is not ", alignment, "-byte aligned"));
}

}  // namespace emu

template <class T>
class GlobalPtr {
 public:
  GlobalPtr() = default;
  // `count` elements starting at `data`; `name` appears in messages ("out", "weight").
  GlobalPtr(T* data, std::size_t count, const char* name)
      : base_(data), count_(std::int64_t(count)), name_(name) {}
  // T* -> const T*, as raw pointers convert.
  template <class U>
    requires std::is_same_v<const U, T> && (!std::is_same_v<U, T>)
  GlobalPtr(const GlobalPtr<U>& other)
      : base_(other.base_), count_(other.count_), offset_(other.offset_), name_(other.name_) {}

  T& operator[](std::int64_t i) const {
    const std::int64_t at = offset_ + i;
    if (at < 0 || at >= count_) emu::out_of_bounds("global", name_, at, 1, count_);
    return base_[at];
  }
  T& operator*() const { return (*this)[0]; }
  GlobalPtr operator+(std::int64_t n) const {
    GlobalPtr p = *this;
    p.offset_ += n;
    return p;
  }
  GlobalPtr operator-(std::int64_t n) const { return *this + (-n); }

  // The `count` elements from `offset` on, checked to lie inside this view.
  GlobalPtr slice(std::int64_t offset, std::int64_t count) const {
    expect_in_bounds(offset, count);
    return GlobalPtr(base_ + offset_ + offset, std::size_t(count), name_);
  }
  // The same bytes as elements of U (a vector type, or a bit cast for atomicCAS). The start must
  // be aligned for U, as the GPU requires.
  template <class U>
  GlobalPtr<U> reinterpret() const {
    T* start = base_ + offset_;
    if (reinterpret_cast<std::uintptr_t>(start) % alignof(U) != 0) emu::misaligned(name_, offset_, alignof(U));
    const std::int64_t bytes = (count_ - offset_) * std::int64_t(sizeof(T));
    return GlobalPtr<U>(reinterpret_cast<U*>(start), std::size_t(bytes < 0 ? 0 : bytes / std::int64_t(sizeof(U))),
                        name_);
  }

  // For the wrappers in device_api.cuh, after they have checked the range they touch.
  T* raw() const { return base_ + offset_; }
  void expect_in_bounds(std::int64_t offset, std::int64_t count) const {
    const std::int64_t at = offset_ + offset;
    if (at < 0 || at + count > count_) emu::out_of_bounds("global", name_, at, count, count_);
  }
  const char* name() const { return name_; }

  friend T atomicAdd(GlobalPtr p, T v) { return ::atomicAdd(&p[0], v); }
  friend T atomicMax(GlobalPtr p, T v) { return ::atomicMax(&p[0], v); }
  friend T atomicMin(GlobalPtr p, T v) { return ::atomicMin(&p[0], v); }
  friend T atomicCAS(GlobalPtr p, T compare, T v) { return ::atomicCAS(&p[0], compare, v); }

 private:
  template <class>
  friend class GlobalPtr;

  T* base_ = nullptr;
  std::int64_t count_ = 0;
  std::int64_t offset_ = 0;
  const char* name_ = "";
};

template <class T>
GlobalPtr(T*, std::size_t, const char*) -> GlobalPtr<T>;

// One element of shared memory, as a temporary (see the top of this file).
template <class T>
class SharedRef {
  using Value = std::remove_const_t<T>;

 public:
  SharedRef(T* p, const char* name, std::int64_t index) : p_(p), name_(name), index_(index) {}
  SharedRef(const SharedRef&) = delete;

  operator Value() && { return read(); }
  void operator=(const Value& v) && requires(!std::is_const_v<T>) { write(v); }
  void operator=(SharedRef&& other) && requires(!std::is_const_v<T>) { write(other.read()); }
  void operator+=(const Value& v) && requires(!std::is_const_v<T>) { write(Value(read() + v)); }
  void operator-=(const Value& v) && requires(!std::is_const_v<T>) { write(Value(read() - v)); }
  void operator*=(const Value& v) && requires(!std::is_const_v<T>) { write(Value(read() * v)); }
  void operator/=(const Value& v) && requires(!std::is_const_v<T>) { write(Value(read() / v)); }

 private:
  Value read() const {
    emu::shared_access(emu::Access::Read, p_, sizeof(T), name_, index_);
    Value v;
    std::memcpy(&v, p_, sizeof(T));
    return v;
  }
  void write(const Value& v) const {
    emu::shared_access(emu::Access::Write, p_, sizeof(T), name_, index_);
    std::memcpy(const_cast<Value*>(p_), &v, sizeof(T));
  }

  T* p_;
  const char* name_;
  std::int64_t index_;
};

template <class T>
class SharedPtr {
 public:
  SharedPtr() = default;
  SharedPtr(T* region, std::int64_t count, const char* name) : region_(region), count_(count), name_(name) {}
  template <class U>
    requires std::is_same_v<const U, T> && (!std::is_same_v<U, T>)
  SharedPtr(const SharedPtr<U>& other)
      : region_(other.region_), count_(other.count_), offset_(other.offset_), name_(other.name_) {}

  SharedRef<T> operator[](std::int64_t i) const {
    const std::int64_t at = offset_ + i;
    if (at < 0 || at >= count_) emu::out_of_bounds("shared", name_, at, 1, count_);
    return SharedRef<T>(region_ + at, name_, at);
  }
  SharedRef<T> operator*() const { return (*this)[0]; }
  SharedPtr operator+(std::int64_t n) const {
    SharedPtr p = *this;
    p.offset_ += n;
    return p;
  }
  SharedPtr operator-(std::int64_t n) const { return *this + (-n); }

  SharedPtr slice(std::int64_t offset, std::int64_t count) const {
    expect_in_bounds(offset, count);
    return SharedPtr(region_ + offset_ + offset, count, name_);
  }
  template <class U>
  SharedPtr<U> reinterpret() const {
    T* start = region_ + offset_;
    if (reinterpret_cast<std::uintptr_t>(start) % alignof(U) != 0) emu::misaligned(name_, offset_, alignof(U));
    const std::int64_t bytes = (count_ - offset_) * std::int64_t(sizeof(T));
    return SharedPtr<U>(reinterpret_cast<U*>(start), bytes < 0 ? 0 : bytes / std::int64_t(sizeof(U)), name_);
  }

  T* raw() const { return region_ + offset_; }
  void expect_in_bounds(std::int64_t offset, std::int64_t count) const {
    const std::int64_t at = offset_ + offset;
    if (at < 0 || at + count > count_) emu::out_of_bounds("shared", name_, at, count, count_);
  }
  const char* name() const { return name_; }
  std::int64_t index() const { return offset_; }

  friend T atomicAdd(SharedPtr p, T v) { return p.atomic([v](T old) { return T(old + v); }); }
  friend T atomicMax(SharedPtr p, T v) { return p.atomic([v](T old) { return old < v ? v : old; }); }
  friend T atomicMin(SharedPtr p, T v) { return p.atomic([v](T old) { return v < old ? v : old; }); }
  friend T atomicCAS(SharedPtr p, T compare, T v) {
    return p.atomic([=](T old) { return old == compare ? v : old; });
  }

 private:
  template <class>
  friend class SharedPtr;

  template <class Update>
  T atomic(Update update) const {
    const std::int64_t at = offset_;
    if (at < 0 || at >= count_) emu::out_of_bounds("shared", name_, at, 1, count_);
    emu::shared_access(emu::Access::Atomic, region_ + at, sizeof(T), name_, at);
    return emu::atomic_update(region_ + at, update);
  }

  T* region_ = nullptr;
  std::int64_t count_ = 0;
  std::int64_t offset_ = 0;
  const char* name_ = "";
};

namespace emu {

template <class T>
SharedPtr<T> static_shared_array(const SharedSite& site) {
  return SharedPtr<T>(reinterpret_cast<T*>(static_shared(site)), std::int64_t(site.bytes / sizeof(T)), site.name);
}

template <class T>
SharedPtr<T> dynamic_shared_array(const char* name) {
  const SharedRegion region = dynamic_shared();
  return SharedPtr<T>(reinterpret_cast<T*>(region.data), std::int64_t(region.bytes / sizeof(T)), name);
}

}  // namespace emu
}  // namespace sdgen::cuda

// `SDGEN_SHARED(float, tile, 16 * 17);` declares a block-shared array of 16*17 floats named
// `tile`. The static site object is what makes every thread of a block find the same storage.
#define SDGEN_SHARED(T, name, count)                                                          \
  static constexpr ::sdgen::cuda::emu::SharedSite name##_sdgen_site{#name, sizeof(T) * (count)}; \
  const ::sdgen::cuda::SharedPtr<T> name = ::sdgen::cuda::emu::static_shared_array<T>(name##_sdgen_site)

// `SDGEN_DYNAMIC_SHARED(float, buf);` views the launch's dynamic shared memory as floats.
#define SDGEN_DYNAMIC_SHARED(T, name) \
  const ::sdgen::cuda::SharedPtr<T> name = ::sdgen::cuda::emu::dynamic_shared_array<T>(#name)
