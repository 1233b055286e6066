// The leaves of every module tree: one learned tensor (Param), and one tensor some checkpoints
// carry that sdgen deliberately does not use (IgnoredBuffer).
//
// A Param starts life as the architecture's promise: the shape that the config says this tensor
// must have, spelled exactly as the checkpoint stores it under its diffusers name (a 1x1
// convolution's weight is [out, in, 1, 1], not [out, in]). Binding (lib/models/weight_check.hpp)
// then points it at the bytes inside a memory-mapped file. Uploading to a device is a later step
// that adds a device view beside `source`; the expected shape stays the single description of what
// the module needs.
#pragma once

#include <cstdint>
#include <vector>

#include "weights/model.hpp"

namespace sdgen::nn {

struct Param {
  std::vector<std::int64_t> shape;                // expected, outermost first (PyTorch order)
  const weights::TensorSource* source = nullptr;  // set by binding; null until then

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
