// Seeded random weights for a module tree, so that full-size models can be built, run and
// measured without downloading one (`sdgen make-model`).
//
// Which tensors exist, and their shapes, come from the module structs themselves (visit(), the same
// walk that binds a checkpoint), so a random model has exactly the names and shapes a real one of
// that configuration has. Their values follow torch's module defaults (as the golden tiny UNet and
// VAE were initialised), which keep activations in the range a trained model's are in, so that no
// layer overflows and speed is measured on ordinary numbers:
//
//   * a weight of rank >= 2 (linear, convolution, embedding): uniform in +-1/sqrt(fan_in), fan_in
//     being the product of all dimensions but the first (torch's kaiming_uniform_(a=sqrt(5)),
//     the nn.Linear/nn.Conv2d default; torch draws embeddings from N(0, 1) instead, but every
//     embedding here is followed by a LayerNorm, which makes the scale irrelevant);
//   * the bias next to such a weight: uniform in the same +-1/sqrt(fan_in), as torch does;
//   * a weight of rank 1 (a GroupNorm or LayerNorm scale): 1, and the bias beside it: 0.
//
// The values of a tensor depend only on (seed, component, tensor name): each tensor has its own
// generator (splitmix64, seeded from the seed and an FNV-1a hash of "component/name"). Writing
// order, the file layout (diffusers folder or LDM single file) and the dtype conversion therefore
// never change the values, and any tensor can be regenerated alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "lib/nn/visit.hpp"

namespace sdgen::models {

// How a tensor's values are drawn.
struct RandomInit {
  enum class Kind { Uniform, Constant };
  Kind kind = Kind::Constant;
  double bound = 0;  // Uniform: values in [-bound, bound)
  double value = 0;  // Constant
};

struct RandomParameter {
  std::string name;                  // the diffusers name, "down_blocks.0.resnets.0.conv1.weight"
  std::vector<std::int64_t> shape;   // as stored
  RandomInit init;

  std::int64_t numel() const;
};

// The rule above applied to a list of (name, shape) pairs in visit order.
std::vector<RandomParameter> plan_random_parameters(std::vector<RandomParameter> parameters);

// Every parameter of `module` (ignored buffers are not parameters), in visit order, with its rule.
template <class Module>
std::vector<RandomParameter> random_parameters(Module& module) {
  std::vector<RandomParameter> parameters;
  nn::visit_named(module, [&](const std::string& name, auto& leaf) {
    if constexpr (std::is_same_v<std::decay_t<decltype(leaf)>, nn::Param>) parameters.push_back({name, leaf.shape, {}});
  });
  return plan_random_parameters(std::move(parameters));
}

// The values of one parameter, produced in order in pieces of any size, so that a 150 MB tensor
// is never held as floats as well as in its stored dtype.
class RandomValues {
 public:
  RandomValues(std::uint64_t seed, std::string_view component, const RandomParameter& parameter);

  // The next out.size() values.
  void next(std::span<float> out);

 private:
  RandomInit init_;
  std::uint64_t state_;
};

}  // namespace sdgen::models
