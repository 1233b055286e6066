// Seeded random parameter values; see random_weights.hpp for the rules.
#include "lib/models/random_weights.hpp"

#include <cmath>
#include <unordered_map>

namespace sdgen::models {

namespace {

// Sebastiano Vigna's splitmix64: a full-period 64-bit generator with good mixing, which is all a
// random weight needs; it also turns (seed, name hash) into a well-spread starting state.
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view text, std::uint64_t hash = 0xCBF29CE484222325ull) {
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001B3ull;
  return hash;
}

std::int64_t fan_in(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

// "a.b.weight" -> ("a.b.", "weight")
std::pair<std::string_view, std::string_view> split_last(std::string_view name) {
  const auto dot = name.rfind('.');
  return dot == std::string_view::npos ? std::pair{std::string_view(), name}
                                       : std::pair{name.substr(0, dot + 1), name.substr(dot + 1)};
}

}  // namespace

std::int64_t RandomParameter::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<RandomParameter> plan_random_parameters(std::vector<RandomParameter> parameters) {
  std::unordered_map<std::string_view, const RandomParameter*> weights;  // module prefix -> its weight
  for (const auto& p : parameters) {
    const auto [module, leaf] = split_last(p.name);
    if (leaf == "weight") weights.emplace(module, &p);
  }
  for (auto& p : parameters) {
    const auto [module, leaf] = split_last(p.name);
    const auto it = weights.find(module);
    const RandomParameter* weight = leaf == "weight" ? &p : (it == weights.end() ? nullptr : it->second);
    if (weight != nullptr && weight->shape.size() >= 2) {
      const auto n = fan_in(weight->shape);
      p.init = {.kind = RandomInit::Kind::Uniform, .bound = n > 0 ? 1.0 / std::sqrt(double(n)) : 0.0};
    } else {
      p.init = {.kind = RandomInit::Kind::Constant, .value = leaf == "weight" ? 1.0 : 0.0};
    }
  }
  return parameters;
}

RandomValues::RandomValues(std::uint64_t seed, std::string_view component, const RandomParameter& parameter)
    : init_(parameter.init) {
  std::uint64_t mix = seed ^ fnv1a(parameter.name, fnv1a("/", fnv1a(component)));
  state_ = splitmix64(mix);
}

void RandomValues::next(std::span<float> out) {
  if (init_.kind == RandomInit::Kind::Constant) {
    for (float& v : out) v = static_cast<float>(init_.value);
    return;
  }
  for (float& v : out) {
    // 53 random bits -> [0, 1) exactly, then onto [-bound, bound).
    const double u = double(splitmix64(state_) >> 11) * 0x1p-53;
    v = static_cast<float>((2.0 * u - 1.0) * init_.bound);
  }
}

}  // namespace sdgen::models
