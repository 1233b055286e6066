// A bit-exact copy of torch's CPU generator, so that `--seed N` gives the very latents diffusers
// draws with torch.Generator("cpu").manual_seed(N).
//
// torch's CPU generator is a 32-bit MT19937 seeded with the low 32 bits of the seed (the same
// initialisation as std::mt19937). torch.randn on a float32 tensor of n >= 16 elements fills the
// buffer with 24-bit uniforms and turns each block of 16 into normals with a vectorised
// Box-Muller (8 pairs), redrawing the last 16 values when n is not a multiple of 16. On x86-64 the
// log and sincos are the float32 Cephes polynomials of avx_mathfun.h, with the multiply-adds GCC
// fused; rng.cpp reproduces them operation by operation (it is compiled with -ffp-contract=off
// so that only the fmaf calls written out are fused). Tensors of fewer than 16 elements use a
// double-precision Box-Muller with a cached second value, as torch does.
// ../shared/golden/README.md describes the algorithm; tests/core/rng_test.cpp checks it against
// the golden noise tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>

namespace sdgen {

class TorchCpuGenerator {
 public:
  explicit TorchCpuGenerator(std::uint64_t seed) : engine_(static_cast<std::uint32_t>(seed)) {}

  // Fills `out` exactly as torch.randn(out.size(), generator=g) would (float32), advancing the
  // generator as torch does, so consecutive calls match consecutive torch draws.
  void randn(std::span<float> out);

  std::uint32_t next_u32() { return static_cast<std::uint32_t>(engine_()); }

 private:
  double next_normal_double();  // torch's at::normal_distribution<double> with its cache

  std::mt19937 engine_;
  std::optional<double> cached_normal_;
};

}  // namespace sdgen
