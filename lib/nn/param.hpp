// The leaves of every module tree: one learned tensor (Param), and one tensor some checkpoints
// carry that sdgen deliberately does not use (IgnoredBuffer).
//
// A Param starts life as the architecture's promise: the shape that the config says this tensor
// must have, spelled exactly as the checkpoint stores it under its diffusers name (a 1x1
// convolution's weight is [out, in, 1, 1], not [out, in]), and what the layer uses it for.
// Binding (lib/models/weight_binding.hpp) then points `source` at the bytes inside a
// memory-mapped file, and the weight store (lib/nn/weight_store.hpp) turns the source into
// `value`, the tensor the backend computes with: converted to the backend's dtype and re-laid out
// for its op (a convolution's OIHW becomes OHWI; a 1x1 projection becomes a [out, in] matrix). The
// expected shape stays the single description of what the module needs.
#pragma once

#include <cstdint>
#include <vector>

#include "lib/core/tensor.hpp"
#include "weights/model.hpp"

namespace sdgen::nn {

// What a layer does with a parameter, which decides its layout and dtype on the backend.
enum class ParamUse {
  Vector,          // biases, norm scales and shifts: [n]
  LinearWeight,    // [out, in] (stored so, or as a 1x1 convolution [out, in, 1, 1])
  Conv2dWeight,    // stored [out, in, kh, kw]; computed with as [out, kh, kw, in]
  EmbeddingTable,  // [rows, width], gathered into activations
};

struct Param {
  std::vector<std::int64_t> shape;  // expected, outermost first, as stored (PyTorch order)
  ParamUse use = ParamUse::Vector;
  const weights::TensorSource* source = nullptr;  // set by binding; null until then
  Tensor value;                                   // set by the weight store; empty until then

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// A non-learned tensor that older exports saved beside the weights although the model recomputes
// it (transformers before 4.31 stored CLIP's position_ids = arange(77) as a persistent buffer, so
// the SD 1.5 and 2.1 text encoders on the Hub still carry it). It may be present or absent; when
// present it is neither a parameter nor an "unexpected" tensor, and its contents are never read.
struct IgnoredBuffer {
  const weights::TensorSource* source = nullptr;  // set by binding when the checkpoint has it
};

}  // namespace sdgen::nn
