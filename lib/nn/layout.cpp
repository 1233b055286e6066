// NCHW <-> NHWC copies (see layout.hpp): one transpose of the last three dimensions per image.
#include "lib/nn/layout.hpp"

#include <cstdint>
#include <string_view>

#include "lib/core/error.hpp"

namespace sdgen::nn {

namespace {

// Copies src [B, P, Q] to dst [B, Q, P] (a batch of matrix transposes).
void transpose_inner(std::span<const float> src, std::int64_t batch, std::int64_t p, std::int64_t q,
                     std::span<float> dst) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* s = src.data() + b * p * q;
    float* d = dst.data() + b * p * q;
    for (std::int64_t i = 0; i < p; ++i)
      for (std::int64_t j = 0; j < q; ++j) d[j * p + i] = s[i * q + j];
  }
}

void check(std::string_view what, std::span<const float> src, const Shape& shape, std::span<float> dst) {
  const auto n = static_cast<std::size_t>(shape.numel());
  if (shape.rank() != 4 || src.size() != n || dst.size() != n)
    throw Error(cat(what, ": shape ", shape.str(), " (rank 4 expected) with ", src.size(), " source and ", dst.size(),
                    " destination floats"));
}

}  // namespace

void nchw_to_nhwc(std::span<const float> src, const Shape& nchw, std::span<float> dst) {
  check("nchw_to_nhwc", src, nchw, dst);
  transpose_inner(src, nchw[0], nchw[1], nchw[2] * nchw[3], dst);  // [B, C, HW] -> [B, HW, C]
}

void nhwc_to_nchw(std::span<const float> src, const Shape& nhwc, std::span<float> dst) {
  check("nhwc_to_nchw", src, nhwc, dst);
  transpose_inner(src, nhwc[0], nhwc[1] * nhwc[2], nhwc[3], dst);  // [B, HW, C] -> [B, C, HW]
}

}  // namespace sdgen::nn
