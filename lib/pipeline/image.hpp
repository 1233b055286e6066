// Decoded VAE output -> 8-bit RGB, exactly as diffusers' image processor and PIL do it, so a PNG
// from sdgen equals the pipeline's PNG pixel for pixel (up to the decode's own rounding).
//
// diffusers: image = (x / 2 + 0.5).clamp(0, 1); pixels = (image * 255).round() in float32, where
// numpy rounds halves to even. The decoder output may exceed [-1, 1]; the clamp takes care of it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sdgen::pipeline {

// `decoded` is one image in NHWC order with 3 channels (H*W*3 floats); returns H*W*3 bytes, RGB.
std::vector<std::uint8_t> to_rgb8(std::span<const float> decoded);

}  // namespace sdgen::pipeline
