// CLIPTextModel against transformers (tests/data/components/<model>/text.safetensors): the three
// prompts' last_hidden_state, and clip skip against the reference's hidden_states.
//
// fp32 tolerance: max |error| <= 1e-5 * max |reference|. Both sides compute in fp32 with different
// summation orders (oneDNN here, PyTorch's kernels there); each of the ~10 ops per layer
// contributes a rounding error of a few ulp (fp32 eps = 1.2e-7) relative to its output's
// magnitude, and the layer norms renormalise every layer, so the errors do not compound across
// depth: they stay around 1e-6 of the output's scale. 1e-5 (the reference data's own guidance)
// leaves a 10x margin (measured: 3.5e-7 to 7.1e-7) while still catching any real mistake (a wrong
// activation, a missing causal mask or a misplaced residual each change the output by more than
// 1e-2 of its scale).
//
// bf16 (the CPU backend's bf16 mode) tolerance: max |error| <= 3e-2 * max |reference|. Each
// matmul rounds its inputs to bf16 (unit roundoff u = 2^-9 on x and on w: about 2u of its
// output's scale), and the residual stream carries every branch's error to the end; independent
// roundings add in quadrature, so the ~15 matmul stages of the 3-layer encoder (q/k/v, the
// attention's two products, out_proj, fc1, fc2 per layer) give about sqrt(15) * 2u = 1.5e-2.
// 3e-2 (16u) is twice that. // Measured: 6.4e-3 (tiny) and 1.0e-2 (tiny-sd2).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "lib/core/ctx.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/nn/weight_store.hpp"
#include "tests/models/component_support.hpp"
#include "tests/support/paths.hpp"

namespace {

using sdgen::test::compare;

constexpr double kTolerance = 1e-5;
constexpr double kBf16Tolerance = 3e-2;

// The reference's ids are stored as F32; the model takes I32.
std::vector<std::int32_t> ids_of(const sdgen::test::Golden& g) {
  std::vector<std::int32_t> ids;
  for (float v : g.values) ids.push_back(static_cast<std::int32_t>(v));
  return ids;
}

// Row-wise layer norm of `x` [rows, width] with the given affine parameters, as torch defines it
// (biased variance, eps inside the square root), in double: the test's own reference formula for
// final_layer_norm(hidden_states[-k - 1]).
std::vector<float> layer_norm(std::span<const float> x, std::int64_t width, std::span<const float> gamma,
                              std::span<const float> beta, double eps) {
  std::vector<float> out(x.size());
  for (std::size_t r = 0; r < x.size() / static_cast<std::size_t>(width); ++r) {
    const float* row = x.data() + r * static_cast<std::size_t>(width);
    double mean = 0, var = 0;
    for (std::int64_t i = 0; i < width; ++i) mean += row[i];
    mean /= static_cast<double>(width);
    for (std::int64_t i = 0; i < width; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= static_cast<double>(width);
    for (std::int64_t i = 0; i < width; ++i)
      out[r * static_cast<std::size_t>(width) + static_cast<std::size_t>(i)] =
          static_cast<float>((row[i] - mean) / std::sqrt(var + eps) * gamma[static_cast<std::size_t>(i)] +
                             beta[static_cast<std::size_t>(i)]);
  }
  return out;
}

// The fixture's text encoder, loaded for a backend, with the golden prompts' ids.
struct TextEncoderRun {
  sdgen::test::FixtureModel fixture;
  sdgen::models::CLIPTextModel model;
  sdgen::nn::WeightStore store;
  sdgen::weights::SafeTensorsFile golden;
  std::vector<std::int32_t> ids;
  sdgen::Tensor input_ids;  // [3, 77] I32

  TextEncoderRun(sdgen::Backend& backend, const std::string& name)
      : fixture(sdgen::test::load_fixture_model(name)),
        model(fixture.text_encoder_config),
        store(sdgen::test::load_weights(backend, model, fixture.text_encoder)),
        golden(sdgen::test::data_dir() / "components" / name / "text.safetensors") {
    const auto g = sdgen::test::golden_tensor(golden, "input_ids");
    ids = ids_of(g);
    input_ids = sdgen::Tensor::contiguous(ids.data(), sdgen::DType::I32, g.shape);
  }
};

}  // namespace

TEST_CASE("CLIPTextModel matches transformers' last_hidden_state and clip-skip outputs", "[models][clip]") {
  for (const std::string name : {"tiny", "tiny-sd2"}) {
    DYNAMIC_SECTION(name) {
      sdgen::CpuBackend backend;
      TextEncoderRun run(backend, name);
      sdgen::HeapAllocator heap;
      sdgen::Ctx ctx{backend, heap};
      const auto hidden_states = sdgen::test::golden_tensor(run.golden, "hidden_states");  // [L + 1, 3, 77, C]
      const int layers = run.fixture.text_encoder_config.num_hidden_layers;
      REQUIRE(hidden_states.shape[0] == layers + 1);

      SECTION("last_hidden_state") {
        const auto out = run.model.forward(ctx, run.input_ids);
        const auto want = sdgen::test::golden_tensor(run.golden, "last_hidden_state");
        REQUIRE(out.view().shape == want.shape);
        const auto c = compare(sdgen::test::values_of(out), want.values);
        INFO(c.describe());
        CHECK(c.finite);
        CHECK(c.relative_to_max() <= kTolerance);
      }

      SECTION("clip skip: final_layer_norm of an earlier layer's output") {
        const auto& ln = run.model.text_model.final_layer_norm;
        const auto gamma = ln.weight.source->to_f32();
        const auto beta = ln.bias.source->to_f32();
        const std::size_t per_layer = hidden_states.values.size() / static_cast<std::size_t>(layers + 1);
        for (int skip = 1; skip < layers; ++skip) {
          INFO("clip skip " << skip);
          const auto out = run.model.forward(ctx, run.input_ids, sdgen::models::ClipSkip{skip});
          // hidden_states[-(skip + 1)] = hidden_states[layers - skip]: the output of that layer.
          const std::span<const float> layer_output(
              hidden_states.values.data() + static_cast<std::size_t>(layers - skip) * per_layer, per_layer);
          const auto want = layer_norm(layer_output, hidden_states.shape[3], gamma, beta, ln.eps);
          const auto c = compare(sdgen::test::values_of(out), want);
          INFO(c.describe());
          CHECK(c.relative_to_max() <= kTolerance);
        }
      }

      SECTION("skipping every layer is refused") {
        CHECK_THROWS_AS(run.model.forward(ctx, run.input_ids, sdgen::models::ClipSkip{layers}), sdgen::UsageError);
      }
    }
  }
}

TEST_CASE("CLIPTextModel in the CPU's bf16 mode stays close to transformers' fp32", "[models][clip][bf16]") {
  const auto backend = sdgen::test::bf16_backend();
  if (!backend) return;
  for (const std::string name : {"tiny", "tiny-sd2"}) {
    DYNAMIC_SECTION(name) {
      TextEncoderRun run(*backend, name);
      sdgen::HeapAllocator heap;
      sdgen::Ctx ctx{*backend, heap};
      const auto out = run.model.forward(ctx, run.input_ids);
      const auto c = compare(sdgen::test::values_of(out),
                             sdgen::test::golden_tensor(run.golden, "last_hidden_state").values);
      INFO(c.describe());
      CHECK(c.finite);
      CHECK(c.relative_to_max() <= kBf16Tolerance);
    }
  }
}
