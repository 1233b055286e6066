// What the component tests (CLIP, UNet, VAE against tests/data/components) share: a fixture
// model's component bound and converted for a backend, the reference tensors of a golden file,
// and a comparison that reports the worst element.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "lib/core/tensor.hpp"
#include "lib/models/weight_binding.hpp"
#include "lib/nn/weight_store.hpp"
#include "tests/models/fixture_model.hpp"
#include "weights/safetensors.hpp"

namespace sdgen::test {

// The CPU backend in its bf16 mode, or null on a CPU without AVX512-BF16 (the caller returns:
// Catch2 v2 has no SKIP; a WARN says why).
std::unique_ptr<CpuBackend> bf16_backend();

// Binds `module` to the fixture component (which must match completely) and converts its weights
// for `backend` in fp32.
template <class Module>
nn::WeightStore load_weights(Backend& backend, Module& module, const FixtureComponent& component) {
  models::require_complete(models::bind_weights("component", module, component.tensors));
  return nn::WeightStore(backend, {}, nn::named_params(module));
}

// A reference tensor as floats, with its shape.
struct Golden {
  std::vector<float> values;
  Shape shape;
};

Golden golden_tensor(const weights::SafeTensorsFile& file, std::string_view name);
// An NCHW reference image tensor re-laid out as NHWC, for the networks' input.
Golden golden_nhwc(const weights::SafeTensorsFile& file, std::string_view name);

// A host tensor's values (contiguous F32).
std::vector<float> values_of(const Tensor& t);
// An NHWC host tensor's values in NCHW order, to compare with a reference.
std::vector<float> nchw_values_of(const Tensor& t);

struct Comparison {
  double max_abs_error = 0;
  double max_abs_reference = 0;
  std::size_t worst = 0;  // index of the largest error
  double got_at_worst = 0;
  double want_at_worst = 0;
  bool finite = true;  // every value of `got` is finite

  // The scale-aware bound the tests use: max |got - want| <= tolerance * max |want|.
  double relative_to_max() const { return max_abs_error / max_abs_reference; }
  std::string describe() const;
};

Comparison compare(std::span<const float> got, std::span<const float> want);

}  // namespace sdgen::test
