// What every forward function receives: the backend that computes and the allocator that provides
// activations. Model code never sees which backend or which allocator it runs with.
#pragma once

#include "kernels/backend.hpp"
#include "lib/core/allocator.hpp"

namespace sdgen {

struct Ctx {
  Backend& backend;
  Allocator& allocator;
  DType activation_dtype = DType::F32;  // the pipeline's choice for the backend (F16 on the GPU)

  Activation alloc(const Shape& shape) { return Activation(allocator, shape, activation_dtype); }
  Activation alloc(const Shape& shape, DType dtype) { return Activation(allocator, shape, dtype); }
};

}  // namespace sdgen
