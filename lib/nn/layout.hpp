// NCHW <-> NHWC on the host, for the pipeline's boundary.
//
// The networks run NHWC end to end (backend.hpp), while torch, diffusers and the reference files
// are NCHW: the initial noise is drawn in torch's order [B, C, H, W], and dumps and golden tensors
// are compared in it. These two copies are the only places the layouts meet. They work on host
// floats; the decoded image comes out as [B, H, W, 3], which is already the order PNG wants.
#pragma once

#include <span>

#include "lib/core/tensor.hpp"

namespace sdgen::nn {

// src [B, C, H, W] (shape `nchw`) -> dst [B, H, W, C]; both hold nchw.numel() floats.
void nchw_to_nhwc(std::span<const float> src, const Shape& nchw, std::span<float> dst);
// src [B, H, W, C] (shape `nhwc`) -> dst [B, C, H, W]; both hold nhwc.numel() floats.
void nhwc_to_nchw(std::span<const float> src, const Shape& nhwc, std::span<float> dst);

}  // namespace sdgen::nn
