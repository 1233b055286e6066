// What the kernel tests share: 16-bit (fp16 or bf16) device tensors inside poisoned guard bands,
// and the per-element check that complements the storage rule.
//
// Why a per-element check besides storage_rule.hpp: the rule compares maxima over a whole tensor,
// and the naive 16-bit computation it measures against is, for a mean over thousands of elements,
// so poor (a 16-bit running sum stops growing once its spacing exceeds the terms) that the rule
// alone would pass nearly anything. These kernels compute in fp32 and round once, so each output
// must be within half an ulp of the storage format of the fp32 reference (2^-11 relative in fp16,
// 2^-8 in bf16), plus a small absolute term for the kernel's own fp32 roundings (the reference
// backend is the exact value rounded once to fp32), which each test states.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lib/core/tensor.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/emu/device_buffer.hpp"

namespace sdgen::test::half_tensors {

// 16-bit elements of T on the device between guard bands of 0xffff (a NaN in both formats) that no
// kernel may touch. `misalign` shifts the view by that many elements past a 16-byte boundary (1: no
// 16-byte vector access is possible, so launchers must take their scalar path).
template <class T>
class Guarded {
 public:
  static constexpr std::size_t kGuard = 64;  // halves on each side: 128 bytes keep 16-byte alignment

  // `count` elements of poison.
  explicit Guarded(std::size_t count, std::size_t misalign = 0)
      : Guarded(std::vector<std::uint16_t>(count, kPoison), misalign) {}
  // The roundings of `values` to T.
  explicit Guarded(std::span<const float> values, std::size_t misalign = 0)
      : Guarded(to_bits<T>(values), misalign) {}

  cuda::GlobalPtr<T> view(const char* name) const {
    return buffer_.view(name).slice(std::int64_t(front_), std::int64_t(count_));
  }
  cuda::GlobalPtr<const T> input(const char* name) const { return view(name); }

  // The elements as floats, after checking that both guard bands are intact.
  std::vector<float> values() const {
    const std::vector<std::uint16_t> all = buffer_.template to_host<std::uint16_t>();
    std::size_t damaged = 0;
    for (std::size_t i = 0; i < all.size(); ++i)
      if (i < front_ || i >= front_ + count_) damaged += all[i] != kPoison;
    INFO("guard elements overwritten: " << damaged);
    CHECK(damaged == 0);
    return from_bits<T>(std::span(all).subspan(front_, count_));
  }

 private:
  static constexpr std::uint16_t kPoison = 0xffff;

  Guarded(std::vector<std::uint16_t> bits, std::size_t misalign)
      : count_(bits.size()), front_(kGuard + misalign), buffer_(framed(std::move(bits), front_)) {}

  static std::vector<std::uint16_t> framed(std::vector<std::uint16_t> bits, std::size_t front) {
    std::vector<std::uint16_t> all(front, kPoison);
    all.insert(all.end(), bits.begin(), bits.end());
    all.insert(all.end(), kGuard, kPoison);
    return all;
  }

  std::size_t count_, front_;
  DeviceBuffer<T> buffer_;
};

using GuardedHalves = Guarded<__half>;

inline Tensor f32_tensor(std::vector<float>& data, const Shape& shape) {
  return Tensor::contiguous(data.data(), DType::F32, shape);
}

inline double max_abs(std::span<const float> v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::fabs(double(x)));
  return m;
}

// Every element within half an ulp of T of the reference plus absolute_term(i):
// |kernel[i] - reference[i]| <= 2^-(mantissa bits + 1) |reference[i]| + absolute_term(i).
template <class T>
void check_each_element(std::span<const float> kernel, std::span<const float> reference,
                        const std::function<double(std::size_t)>& absolute_term, const std::string& what) {
  REQUIRE(kernel.size() == reference.size());
  std::size_t outside = 0;
  std::size_t first = 0;
  for (std::size_t i = 0; i < kernel.size(); ++i) {
    const double bound = half_ulp<T>(std::fabs(double(reference[i]))) + absolute_term(i);
    if (!(std::fabs(double(kernel[i]) - double(reference[i])) <= bound)) {
      if (outside == 0) first = i;
      ++outside;
    }
  }
  INFO(what << ": " << outside << " elements outside half an " << Format<T>::kName
            << " ulp plus the absolute term; the first at " << first << ": kernel "
            << (outside ? kernel[first] : 0.0f) << ", reference " << (outside ? reference[first] : 0.0f));
  CHECK(outside == 0);
}

inline void check_each_element(std::span<const float> kernel, std::span<const float> reference,
                               const std::function<double(std::size_t)>& absolute_term, const std::string& what) {
  check_each_element<__half>(kernel, reference, absolute_term, what);
}

}  // namespace sdgen::test::half_tensors
