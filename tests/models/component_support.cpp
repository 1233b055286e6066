#include "tests/models/component_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "lib/core/error.hpp"
#include "lib/nn/layout.hpp"

namespace sdgen::test {

std::unique_ptr<CpuBackend> bf16_backend() {
  try {
    return std::make_unique<CpuBackend>(CpuBackendOptions{.compute = DType::BF16});
  } catch (const UsageError& e) {
    WARN("bf16 not tested: " << e.what());
    return nullptr;
  }
}

Golden golden_tensor(const weights::SafeTensorsFile& file, std::string_view name) {
  const auto& info = file.at(name);
  Golden g{.values = file.to_f32(info)};
  for (auto d : info.shape) g.shape.push_back(d);
  return g;
}

Golden golden_nhwc(const weights::SafeTensorsFile& file, std::string_view name) {
  const Golden nchw = golden_tensor(file, name);
  Golden g{.values = std::vector<float>(nchw.values.size()),
           .shape = {nchw.shape[0], nchw.shape[2], nchw.shape[3], nchw.shape[1]}};
  nn::nchw_to_nhwc(nchw.values, nchw.shape, g.values);
  return g;
}

std::vector<float> values_of(const Tensor& t) {
  if (t.dtype != DType::F32 || !t.is_contiguous()) throw Error("values_of: expected a contiguous F32 tensor");
  const float* p = t.ptr<const float>();
  return {p, p + t.numel()};
}

std::vector<float> nchw_values_of(const Tensor& t) {
  const std::vector<float> nhwc = values_of(t);
  std::vector<float> nchw(nhwc.size());
  nn::nhwc_to_nchw(nhwc, t.shape, nchw);
  return nchw;
}

Comparison compare(std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size()) throw Error(cat("compare: ", got.size(), " values against ", want.size()));
  Comparison c;
  for (std::size_t i = 0; i < got.size(); ++i) {
    c.finite = c.finite && std::isfinite(got[i]);
    // NaN compares false: count it as an infinite error.
    const double err = std::isfinite(got[i]) ? std::abs(double(got[i]) - double(want[i])) : INFINITY;
    c.max_abs_reference = std::max(c.max_abs_reference, std::abs(double(want[i])));
    if (err > c.max_abs_error || (i == 0 && err == 0)) {
      c.max_abs_error = err;
      c.worst = i;
      c.got_at_worst = got[i];
      c.want_at_worst = want[i];
    }
  }
  return c;
}

std::string Comparison::describe() const {
  std::ostringstream s;
  s << "max |error| " << max_abs_error << " at element " << worst << " (got " << got_at_worst << ", want "
    << want_at_worst << "); max |reference| " << max_abs_reference << "; ratio " << relative_to_max()
    << (finite ? "" : "; NON-FINITE values");
  return s.str();
}

}  // namespace sdgen::test
