// The full-size SD 1.5 networks on the shape-only backend: every op of a 512x512 guided UNet step
// (batch 2), a VAE decode and a text encode is validated with no weights and no data, while a
// PlanningAllocator records every activation's size and lifetime; the arena planned from that
// record is printed. This is the pipeline's planning pass, run as a test.
//
// What is asserted, and why those bounds:
//  * the plan is at least the peak of simultaneously live bytes (no placement can do better), and
//    at least the skip connections the UNet must hold across its whole down/up path;
//  * the UNet's plan stays under 1 GiB: one self-attention's full score matrix at 64x64 latents
//    (2 x 8 heads x 4096 x 4096 fp32) alone would be 1.07 GB, so a model that materialised it
//    (rather than leaving attention to the tiled op) could not pass;
//  * the outputs have the expected shapes, and every activation but the output was released
//    (lifetimes are exact: nothing leaks into the next step's arena).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <iostream>
#include <map>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/shape_backend.hpp"
#include "lib/core/ctx.hpp"
#include "lib/models/clip_text.hpp"
#include "lib/models/unet.hpp"
#include "lib/models/vae.hpp"
#include "lib/nn/weight_store.hpp"
#include "weights/presets.hpp"

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// The most bytes alive at once, from the records' [first_use, last_use) intervals.
std::size_t peak_live_bytes(const std::vector<sdgen::AllocationRecord>& records) {
  std::map<std::size_t, std::int64_t> delta;  // event -> change in live bytes
  for (const auto& r : records) {
    delta[r.first_use] += static_cast<std::int64_t>(r.bytes);
    delta[r.last_use] -= static_cast<std::int64_t>(r.bytes);
  }
  std::int64_t live = 0, peak = 0;
  for (const auto& [event, change] : delta) peak = std::max(peak, live += change);
  return static_cast<std::size_t>(peak);
}

// How many activations are still held: records() ends those at the current event, the largest
// last_use, which no released activation can have.
std::size_t held_at_end(const sdgen::PlanningAllocator& planner) {
  const auto records = planner.records();
  std::size_t end = 0;
  for (const auto& r : records) end = std::max(end, r.last_use);
  return static_cast<std::size_t>(
      std::count_if(records.begin(), records.end(), [&](const auto& r) { return r.last_use == end; }));
}

struct Planned {
  std::size_t requests = 0;
  std::size_t peak_live = 0;
  std::size_t arena = 0;
};

Planned plan(const sdgen::PlanningAllocator& planner) {
  const auto records = planner.records();
  return {.requests = records.size(),
          .peak_live = peak_live_bytes(records),
          .arena = sdgen::plan_arena(records).total_bytes};
}

void report(const char* what, const Planned& p) {
  std::cout << what << ": " << p.requests << " activations, peak live " << p.peak_live / kMiB << " MiB, planned arena "
            << p.arena / kMiB << " MiB\n";
}

// Null data: the shape backend reads nothing.
sdgen::Tensor shape_only(const sdgen::Shape& shape, sdgen::DType dtype = sdgen::DType::F32) {
  return sdgen::Tensor::contiguous(nullptr, dtype, shape);
}

}  // namespace

TEST_CASE("SD 1.5 at 512x512 validates on the shape backend and plans its arena", "[models][plan]") {
  const auto& preset = sdgen::weights::get_preset(sdgen::weights::PresetId::SD15);
  sdgen::ShapeBackend backend(sdgen::CpuBackend::op_support());
  sdgen::PlanningAllocator planner;
  sdgen::Ctx ctx{backend, planner};

  SECTION("UNet, batch 2 (guidance)") {
    sdgen::models::UNet2DConditionModel unet(preset.unet);
    sdgen::nn::describe_weights({}, sdgen::nn::named_params(unet));
    Planned p;
    {
      const auto out = unet.forward(ctx, shape_only({2, 64, 64, 4}), shape_only({2}), shape_only({2, 77, 768}));
      CHECK(out.view().shape == sdgen::Shape{2, 64, 64, 4});
      p = plan(planner);
      CHECK(held_at_end(planner) == 1);  // the output alone
    }
    report("SD 1.5 UNet 512x512 batch 2", p);
    // The skips alive at the bottom of the UNet: conv_in + 2 resnets at 64x64x320, a downsample +
    // 2 at 32x32 (320, 640, 640), a downsample + 2 at 16x16 (640, 1280, 1280), a downsample + 2 at
    // 8x8 x 1280, for batch 2 in fp32.
    const std::size_t skips =
        2 * 4 * (3 * 64 * 64 * 320 + 32 * 32 * (320 + 640 + 640) + 16 * 16 * (640 + 1280 + 1280) + 3 * 8 * 8 * 1280);
    CHECK(p.arena >= p.peak_live);
    CHECK(p.peak_live >= skips);
    CHECK(p.arena < std::size_t{1} << 30);
  }

  SECTION("VAE decode, one 512x512 image") {
    sdgen::models::AutoencoderKL vae(preset.vae);
    sdgen::nn::describe_weights({}, sdgen::nn::named_params(vae));
    Planned p;
    {
      const auto image = vae.decode(ctx, shape_only({1, 64, 64, 4}));
      CHECK(image.view().shape == sdgen::Shape{1, 512, 512, 3});
      p = plan(planner);
      CHECK(held_at_end(planner) == 1);
    }
    report("SD 1.5 VAE decode 512x512", p);
    // The last up block's resnets read and write [1, 512, 512, 128] fp32 (128 MiB) activations.
    CHECK(p.arena >= p.peak_live);
    CHECK(p.peak_live >= 2 * std::size_t{512 * 512 * 128 * 4});
  }

  SECTION("text encoder, batch 2") {
    sdgen::models::CLIPTextModel clip(preset.text_encoder);
    sdgen::nn::describe_weights({}, sdgen::nn::named_params(clip));
    Planned p;
    {
      const auto embeddings = clip.forward(ctx, shape_only({2, 77}, sdgen::DType::I32));
      CHECK(embeddings.view().shape == sdgen::Shape{2, 77, 768});
      p = plan(planner);
      CHECK(held_at_end(planner) == 1);
    }
    report("SD 1.5 text encoder batch 2", p);
    CHECK(p.arena >= p.peak_live);
  }
}
