#include "lib/pipeline/image.hpp"

#include <algorithm>
#include <cmath>

namespace sdgen::pipeline {

std::vector<std::uint8_t> to_rgb8(std::span<const float> decoded) {
  std::vector<std::uint8_t> out(decoded.size());
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    const float unit = std::clamp(decoded[i] / 2.0f + 0.5f, 0.0f, 1.0f);
    // nearbyint rounds halves to even under the default rounding mode, as numpy's round does.
    out[i] = static_cast<std::uint8_t>(std::nearbyint(unit * 255.0f));
  }
  return out;
}

}  // namespace sdgen::pipeline
