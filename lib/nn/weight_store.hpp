// The weight store: turns every bound Param's source (bytes inside a memory-mapped checkpoint)
// into the tensor a backend computes with, once, at load.
//
// For each parameter the store decides the target tensor:
//   * dtype from a WeightFormat (the pipeline's policy for the backend: F32 on the CPU reference
//     path; BF16 matrices on AVX512-BF16 CPUs; F16 on a GPU), converted from the stored F32, F16 or
//     BF16 with round-to-nearest-even (lib/core/half.hpp), as torch's .to() does;
//   * layout from its use (nn::ParamUse): a convolution weight goes from torch's OIHW to the
//     op set's OHWI [out, kh, kw, in]; a 1x1 projection stored [out, in, 1, 1] becomes the
//     [out, in] matrix it is (no data moves); everything else keeps its shape.
// Every parameter is then offered to Backend::prepare_weight, which may pack it into memory of its
// own (oneDNN blocked formats; an fp16 copy on a GPU); the store keeps only what the backend did
// not take.
//
// Memory: the mapped file is the source, read once, and nothing is copied twice.
//   * A weight the backend packs is handed to prepare_weight straight from the mapping when its
//     stored bytes already are the target (same dtype, no relayout, aligned); otherwise it passes
//     through one reusable scratch buffer, so no converted copy exists for all weights at once.
//   * An embedding table already in the target dtype is used in place, inside the mapping: a
//     prompt gathers 77 of its rows, so reading it there costs a few pages instead of its size
//     (152 MB for SD 1.x's token table). The mapped files must therefore outlive the store.
//   * Everything else the backend does not take (biases, norms, tables to convert, and weights a
//     backend keeps as given) is converted or copied into ONE host allocation owned by the store
//     (RAII), laid out at 64-byte aligned offsets, and never read from the mapping again. (Reading
//     the vectors in place was tried: every step faulted them back in, and the kernel maps 64 KiB
//     of page cache around each fault, so 175 MB of the sd15 UNet file stayed resident for a few
//     MB of biases.)
//   * The mapped pages of every source are given back to the kernel (madvise) as it is consumed,
//     and all of them at the end, so an fp32 file loaded as bf16 never costs its size in RSS on
//     top of the packed copy.
// A weight the backend keeps as given (the default prepare_weight) but which had to be converted
// is converted a second time, into the store: load time, not memory, pays for not knowing in
// advance what the backend keeps.
//
// The store converts on the host. A device backend receives every parameter through
// prepare_weight and uploads it there, so its store ends up empty.
//
// describe_weights() gives each Param a tensor of the right shape and dtype with no data, so that
// ShapeBackend can run (and plan) a full-size model with no checkpoint at all.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "lib/nn/param.hpp"
#include "lib/nn/visit.hpp"

namespace sdgen::nn {

// The dtypes one backend computes with, by parameter use.
struct WeightFormat {
  DType matrices = DType::F32;  // Linear and Conv2d weights
  DType vectors = DType::F32;   // biases, norm scales and shifts
  DType tables = DType::F32;    // embedding tables (gathered into activations: the activation dtype)
};

struct NamedParam {
  std::string name;  // the diffusers name, for messages
  Param* param = nullptr;
};

// Every Param of a module tree, under its full name.
template <class Module>
std::vector<NamedParam> named_params(Module& module) {
  std::vector<NamedParam> params;
  visit_named(module, [&](const std::string& name, auto& leaf) {
    if constexpr (std::is_same_v<std::decay_t<decltype(leaf)>, Param>) params.push_back({name, &leaf});
  });
  return params;
}

class WeightStore {
 public:
  // Converts every parameter (all must be bound: call after models::require_complete) and sets
  // its `value`. `backend` must outlive the params' use (it may own their packed weights), and so
  // must the mapped files the sources point into.
  WeightStore(Backend& backend, const WeightFormat& format, std::span<const NamedParam> params);

  WeightStore(WeightStore&&) noexcept = default;
  WeightStore& operator=(WeightStore&&) noexcept = default;
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // Bytes of the store's own allocation. (What the backend took over: Backend::held_bytes.)
  std::size_t owned_bytes() const { return owned_bytes_; }
  // Bytes of the tables used in place inside the mapped files.
  std::size_t mapped_bytes() const { return mapped_bytes_; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept;
  };
  std::unique_ptr<std::byte, Free> block_;
  std::size_t owned_bytes_ = 0;
  std::size_t mapped_bytes_ = 0;
};

// Sets each parameter's `value` to a data-less tensor with the shape and dtype a WeightStore would
// give it: for ShapeBackend only (shape tests, planning without a checkpoint).
void describe_weights(const WeightFormat& format, std::span<const NamedParam> params);

}  // namespace sdgen::nn
