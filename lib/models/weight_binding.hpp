// Binding a model's parameters to an opened checkpoint, and accounting for every tensor.
//
// The module tree (built from the config) says which tensors must exist and with which shapes;
// the checkpoint (a weights::ComponentTensors map from diffusers names to bytes) says what exists.
// Binding walks the tree's visit() once and reconciles the two in both directions, as llama.cpp's
// loader does: every expected name must be present with exactly the expected shape and a
// floating-point dtype, and every name in the checkpoint must be claimed by some module. Nothing
// is fixed up silently: a checkpoint that does not match its config is refused, because a
// "mostly loaded" model produces plausible garbage rather than an error.
//
// The result is a WeightReport, not an exception, so that `sdgen inspect` can print every problem;
// the pipeline calls require_complete(), which throws one ModelError summarising the first few.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lib/core/dtype.hpp"
#include "lib/nn/param.hpp"
#include "lib/nn/visit.hpp"
#include "weights/model.hpp"

namespace sdgen::models {

struct ShapeMismatch {
  std::string name;
  std::string stored_as;  // the key in the file when it differs from `name` (single-file checkpoints)
  std::vector<std::int64_t> expected;
  std::vector<std::int64_t> got;
};

struct DTypeMismatch {
  std::string name;
  std::string stored_as;
  DType dtype = DType::F32;
};

struct WeightReport {
  std::string component;                     // "unet", "vae", "text_encoder": starts every message
  std::vector<std::filesystem::path> files;   // the files the component's tensors come from
  std::vector<std::string> missing;           // required by the architecture, absent
  std::vector<std::string> unexpected;        // present, claimed by no module
  std::vector<ShapeMismatch> wrong_shape;
  std::vector<DTypeMismatch> wrong_dtype;     // weights must be F32, F16 or BF16
  std::vector<std::string> ignored;           // known unused buffers that were present
  std::size_t tensor_count = 0;               // parameters the architecture defines
  std::int64_t parameter_count = 0;           // their elements (what torch's numel() sum gives)
  std::map<DType, std::size_t> dtypes;        // bound parameters, by stored dtype

  std::size_t problem_count() const {
    return missing.size() + unexpected.size() + wrong_shape.size() + wrong_dtype.size();
  }
  bool complete() const { return problem_count() == 0; }
};

// One leaf of a module tree under its full name, as the visitor produces it.
struct NamedLeaf {
  std::string name;
  std::variant<nn::Param*, nn::IgnoredBuffer*> leaf;
};

// Points each leaf whose tensor is present and correct at its source (others stay unbound) and
// reports everything that does not match. The sources must outlive the leaves.
WeightReport bind_leaves(std::string_view component, std::span<const NamedLeaf> leaves,
                         const weights::ComponentTensors& tensors);

template <class Module>
WeightReport bind_weights(std::string_view component, Module& module, const weights::ComponentTensors& tensors) {
  std::vector<NamedLeaf> leaves;
  nn::visit_named(module, [&](const std::string& name, auto& leaf) { leaves.push_back({name, &leaf}); });
  return bind_leaves(component, leaves, tensors);
}

// One line per problem, without the component prefix: shape and dtype mismatches first (they say
// the most about what is wrong), then missing, then unexpected tensors.
std::vector<std::string> describe_problems(const WeightReport& report);

// Throws a ModelError naming the component, its files, the problem counts and the first few
// problems, when the report has any.
void require_complete(const WeightReport& report);

}  // namespace sdgen::models
