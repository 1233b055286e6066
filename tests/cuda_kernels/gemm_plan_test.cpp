// The GEMM layer's planning (kernels/cuda/gemm_plan.hpp) on the CPU: which epilogue, C operand and
// pass each linear gets, how a conv2d becomes GEMMs (im2col or not, which bias, how its output rows
// are split into segments and chunks, where each step's pointers point), the alignments in the
// algorithm cache's key, and the validation messages. The plan never dereferences a pointer, so
// the operands here are made-up device addresses chosen for their alignment.
//
// Expected values are written out by hand from the rules of gemm_plan.hpp (cuBLASLt adds C and the
// bias before its epilogue's activation; its GELU is the tanh form; the conv scale distributes over
// the sum), not computed by the code under test. gemm_emulated_test.cpp checks that plans compute
// the right numbers.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "kernels/cuda/gemm_plan.hpp"
#include "lib/core/error.hpp"

namespace sdgen::test::gemm_plan_test {

using cuda::ConvBias;
using cuda::ConvMatrix;
using cuda::ConvPlan;
using cuda::GemmC;
using cuda::GemmEpilogue;

void* at(std::uintptr_t address) { return reinterpret_cast<void*>(address); }
std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// A linear [77, 768] x [3072, 768]^T (CLIP's MLP fc1) at 256-aligned addresses with contiguous rows.
cuda::GemmLinear clip_fc1(Act act, const void* bias, const void* residual) {
  const RowsView x{77, 768, 768}, out{77, 3072, 3072};
  return {.geometry = {.x = x, .out = out, .residual = residual ? out : RowsView{}, .n = 3072, .k = 768},
          .x = at(0x100000),
          .w = at(0x200000),
          .bias = bias,
          .residual = residual,
          .out = at(0x300000),
          .act = act};
}

struct LinearExpectation {
  Act act;
  bool bias, residual;
  GemmEpilogue epilogue;
  GemmC c;
  bool pass;
  Act pass_act;
  bool pass_residual;
};

TEST_CASE("plan_linear: only tanh-GELU fuses, the residual is C only without an activation", "[cuda][gemm]") {
  using enum Act;
  const LinearExpectation table[] = {
      {None, false, false, GemmEpilogue::Default, GemmC::Unused, false, None, false},
      {None, true, false, GemmEpilogue::Bias, GemmC::Unused, false, None, false},
      {None, false, true, GemmEpilogue::Default, GemmC::Residual, false, None, false},
      {None, true, true, GemmEpilogue::Bias, GemmC::Residual, false, None, false},
      {GeluTanh, false, false, GemmEpilogue::GeluTanh, GemmC::Unused, false, None, false},
      {GeluTanh, true, false, GemmEpilogue::GeluTanhBias, GemmC::Unused, false, None, false},
      // C would be added before the GELU: the residual goes to the pass, which adds it after.
      {GeluTanh, true, true, GemmEpilogue::GeluTanhBias, GemmC::Unused, true, None, true},
      // cuBLASLt has no erf-GELU, SiLU or quick-GELU: the bias in the epilogue, the activation after.
      {Gelu, true, false, GemmEpilogue::Bias, GemmC::Unused, true, Gelu, false},
      {Gelu, true, true, GemmEpilogue::Bias, GemmC::Unused, true, Gelu, true},
      {Silu, false, false, GemmEpilogue::Default, GemmC::Unused, true, Silu, false},
      {Silu, false, true, GemmEpilogue::Default, GemmC::Unused, true, Silu, true},
      {QuickGelu, true, true, GemmEpilogue::Bias, GemmC::Unused, true, QuickGelu, true},
  };
  for (const LinearExpectation& e : table) {
    INFO("act " << static_cast<int>(e.act) << ", bias " << e.bias << ", residual " << e.residual);
    const void* bias = e.bias ? at(0x400000) : nullptr;
    const void* residual = e.residual ? at(0x500000) : nullptr;
    const cuda::LinearPlan plan = cuda::plan_linear(clip_fc1(e.act, bias, residual));
    const cuda::GemmCall& g = plan.gemm;
    CHECK(g.key.epilogue == e.epilogue);
    CHECK(g.key.c == e.c);
    CHECK(g.alpha == 1.0f);
    CHECK(g.beta == (e.c == GemmC::Residual ? 1.0f : 0.0f));
    CHECK(g.c == (e.c == GemmC::Residual ? residual : nullptr));
    CHECK(g.bias == bias);
    // The GEMM itself: m = rows, n = out features, k = in features; x is a, the weight w.
    CHECK(g.key.m == 77);
    CHECK(g.key.n == 3072);
    CHECK(g.key.k == 768);
    CHECK(g.key.a_row_stride == 768);
    CHECK(g.key.out_row_stride == 3072);
    CHECK(g.a == at(0x100000));
    CHECK(g.w == at(0x200000));
    CHECK(g.out == at(0x300000));
    REQUIRE(plan.pass.has_value() == e.pass);
    if (e.pass) {
      CHECK(plan.pass->act == e.pass_act);
      CHECK(plan.pass->residual == (e.pass_residual ? residual : nullptr));
      CHECK(plan.pass->out == at(0x300000));
      CHECK(plan.pass->rows == 77);
      CHECK(plan.pass->cols == 3072);
      CHECK(plan.pass->out_row_stride == 3072);
      CHECK(plan.pass->residual_row_stride == (e.pass_residual ? 3072 : 0));
    }
  }
}

TEST_CASE("plan_linear: strides and alignments of column slices", "[cuda][gemm]") {
  // q = x_norm w_q^T written into columns [320, 640) of a fused [4096, 960] buffer, x read from
  // columns [0, 320) of a [4096, 640] one, with the residual a slice too.
  const cuda::GemmLinear op{.geometry = {.x = {4096, 320, 640}, .out = {4096, 320, 960},
                                         .residual = {4096, 320, 328}, .n = 320, .k = 320},
                            .x = at(0x10040),           // 64-aligned; rows of 1280 bytes
                            .w = at(0x20000),           // rows of 640 bytes (128-aligned)
                            .bias = at(0x30002),        // 2-aligned
                            .residual = at(0x40010),    // 16-aligned; rows of 656 bytes (16-aligned)
                            .out = at(0x50000 + 640),   // 128-aligned; rows of 1920 bytes (128-aligned)
                            .act = Act::None};
  const cuda::LinearPlan plan = cuda::plan_linear(op);
  const cuda::GemmKey& key = plan.gemm.key;
  CHECK(key.a_row_stride == 640);
  CHECK(key.c_row_stride == 328);
  CHECK(key.out_row_stride == 960);
  CHECK(key.alignment.a == 64);
  CHECK(key.alignment.w == 128);
  CHECK(key.alignment.bias == 2);
  CHECK(key.alignment.c == 16);
  CHECK(key.alignment.out == 128);
  CHECK_FALSE(plan.pass.has_value());

  // Without a residual, C is D: its stride and alignment are out's. A 256-aligned weight of
  // 768-element rows (1536 bytes) is capped at 256.
  cuda::GemmLinear plain = clip_fc1(Act::None, nullptr, nullptr);
  plain.out = at(0x300008);
  const cuda::GemmKey k2 = cuda::plan_linear(plain).gemm.key;
  CHECK(k2.alignment.w == 256);
  CHECK(k2.alignment.out == 8);
  CHECK(k2.alignment.c == 8);
  CHECK(k2.c_row_stride == 3072);
  CHECK(k2.alignment.bias == 256);  // no bias: never constrains
}

TEST_CASE("GemmKey: equal for calls that may share an algorithm, different otherwise", "[cuda][gemm]") {
  const cuda::GemmKeyHash hash;
  const cuda::GemmKey a = cuda::plan_linear(clip_fc1(Act::GeluTanh, at(0x400000), nullptr)).gemm.key;
  // Other addresses with the same alignments: the same key.
  cuda::GemmLinear moved = clip_fc1(Act::GeluTanh, at(0x700000), nullptr);
  moved.x = at(0x900000);
  moved.out = at(0xA00000);
  const cuda::GemmKey b = cuda::plan_linear(moved).gemm.key;
  CHECK(a == b);
  CHECK(hash(a) == hash(b));
  // Each of: an address of lower alignment, another epilogue, another size, a C operand.
  cuda::GemmLinear misaligned = moved;
  misaligned.x = at(0x900010);
  const cuda::GemmKey different[] = {
      cuda::plan_linear(misaligned).gemm.key,
      cuda::plan_linear(clip_fc1(Act::None, at(0x400000), nullptr)).gemm.key,
      cuda::plan_linear(clip_fc1(Act::None, at(0x400000), at(0x500000))).gemm.key,
  };
  for (const cuda::GemmKey& d : different) CHECK_FALSE(a == d);
  std::set<std::size_t> hashes{hash(a)};
  for (const cuda::GemmKey& d : different) hashes.insert(hash(d));
  CHECK(hashes.size() == 4);
}

Conv2dGeometry conv_geometry(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t cin, std::int64_t cout,
                             std::int64_t k, int stride, int padding) {
  Conv2dGeometry g{.batch = batch, .h = h, .w = w, .cin = cin, .cout = cout, .kh = k, .kw = k, .stride = stride,
                   .padding = padding};
  g.ho = (h + 2 * padding - k) / stride + 1;
  g.wo = (w + 2 * padding - k) / stride + 1;
  return g;
}

constexpr std::uintptr_t kX = 0x1000000, kW = 0x2000000, kBias = 0x3000000, kAdd = 0x4000000, kResidual = 0x5000000,
                         kOut = 0x6000000, kScratch = 0x7000000;
constexpr std::size_t k64MiB = std::size_t(64) << 20;

cuda::GemmConv2d conv_op(const Conv2dGeometry& g, bool bias, bool add, bool residual, float scale) {
  return {.geometry = g,
          .x = at(kX),
          .w = at(kW),
          .bias = bias ? at(kBias) : nullptr,
          .add_per_channel = add ? at(kAdd) : nullptr,
          .residual = residual ? at(kResidual) : nullptr,
          .out = at(kOut),
          .output_scale = scale};
}

const cuda::GemmScratch kScratch64{.data = at(kScratch), .bytes = k64MiB};

TEST_CASE("ConvPlan: im2col unless 1x1 stride 1 unpadded; which bias; segments", "[cuda][gemm]") {
  SECTION("the GEMM's matrix") {
    CHECK(ConvPlan(conv_op(conv_geometry(2, 64, 64, 320, 320, 3, 1, 1), false, false, false, 1), kScratch64).matrix() ==
          ConvMatrix::Im2col);
    CHECK(ConvPlan(conv_op(conv_geometry(2, 64, 64, 320, 640, 1, 1, 0), false, false, false, 1), kScratch64).matrix() ==
          ConvMatrix::Input);
    CHECK(ConvPlan(conv_op(conv_geometry(2, 64, 64, 320, 640, 1, 2, 0), false, false, false, 1), kScratch64).matrix() ==
          ConvMatrix::Im2col);
    CHECK(ConvPlan(conv_op(conv_geometry(2, 64, 64, 320, 640, 1, 1, 1), false, false, false, 1), kScratch64).matrix() ==
          ConvMatrix::Im2col);
  }
  SECTION("the bias: the op's when s = 1 without add, else s * (bias + add) in scratch") {
    const Conv2dGeometry g = conv_geometry(2, 32, 32, 640, 640, 3, 1, 1);
    CHECK(ConvPlan(conv_op(g, false, false, false, 1), kScratch64).bias() == ConvBias::None);
    CHECK(ConvPlan(conv_op(g, false, false, true, 0.5f), kScratch64).bias() == ConvBias::None);
    CHECK(ConvPlan(conv_op(g, true, false, false, 1), kScratch64).bias() == ConvBias::Given);
    CHECK(ConvPlan(conv_op(g, true, false, false, 0.5f), kScratch64).bias() == ConvBias::Scaled);
    CHECK(ConvPlan(conv_op(g, false, true, false, 1), kScratch64).bias() == ConvBias::Scaled);
    CHECK(ConvPlan(conv_op(g, true, true, true, 1), kScratch64).bias() == ConvBias::Scaled);
  }
  SECTION("segments: one per image with a per-channel add, else the batch") {
    const Conv2dGeometry g = conv_geometry(2, 32, 32, 640, 640, 3, 1, 1);
    const ConvPlan per_image(conv_op(g, true, true, false, 1), kScratch64);
    CHECK(per_image.segments() == 2);
    CHECK(per_image.segment_rows() == 1024);
    CHECK(per_image.steps() == 2);
    const ConvPlan whole(conv_op(g, true, false, false, 1), kScratch64);
    CHECK(whole.segments() == 1);
    CHECK(whole.segment_rows() == 2048);
    CHECK(whole.steps() == 1);
  }
  SECTION("im2col rows padded to 8 halves") {
    CHECK(ConvPlan(conv_op(conv_geometry(1, 64, 64, 4, 320, 3, 1, 1), true, false, false, 1), kScratch64)
              .im2col_row_stride() == 40);
    CHECK(ConvPlan(conv_op(conv_geometry(1, 64, 64, 3, 128, 3, 1, 1), true, false, false, 1), kScratch64)
              .im2col_row_stride() == 32);
    CHECK(ConvPlan(conv_op(conv_geometry(1, 64, 64, 320, 320, 3, 1, 1), true, false, false, 1), kScratch64)
              .im2col_row_stride() == 2880);
    CHECK(ConvPlan(conv_op(conv_geometry(1, 64, 64, 320, 640, 1, 1, 0), true, false, false, 1), kScratch64)
              .im2col_row_stride() == 0);
  }
}

TEST_CASE("ConvPlan: the VAE's full-resolution convs in 64 MiB of scratch", "[cuda][gemm]") {
  // [1, 512, 512, 128] 3x3: 262144 rows of 1152 halves (604 MB). 64 MiB hold 29127 rows; the
  // largest multiple of 256 is 28928, so 10 chunks, balanced to ceil(262144 / 10) = 26215 rounded
  // up to 26368 rows (the last one 262144 - 9 * 26368 = 24832).
  const ConvPlan vae128(conv_op(conv_geometry(1, 512, 512, 128, 128, 3, 1, 1), true, false, false, 1), kScratch64);
  CHECK(vae128.chunk_rows() == 26368);
  CHECK(vae128.steps() == 10);
  CHECK(vae128.step(9).gemm.key.m == 24832);
  CHECK(vae128.scratch_used() == std::size_t(26368) * 1152 * 2);
  // [1, 512, 512, 256] -> 128: rows of 2304 halves; 14563 fit, 14336 = 56 * 256, 19 chunks of
  // ceil(262144 / 19) = 13798 -> 13824 rows.
  const ConvPlan vae256(conv_op(conv_geometry(1, 512, 512, 256, 128, 3, 1, 1), true, false, false, 1), kScratch64);
  CHECK(vae256.chunk_rows() == 13824);
  CHECK(vae256.steps() == 19);
  CHECK(vae256.scratch_used() <= k64MiB);
  // The UNet's largest (64x64x320 3x3 at batch 2 with the time embedding): 4096 rows of 2880 halves
  // per image, 23 MB: one GEMM per image.
  const ConvPlan unet(conv_op(conv_geometry(2, 64, 64, 320, 320, 3, 1, 1), true, true, true, 1), kScratch64);
  CHECK(unet.chunk_rows() == 4096);
  CHECK(unet.steps() == 2);
}

// What the backend reserves for a conv on this path (conv2d_gemm_scratch_bytes): the scaled bias
// (Cout halves, padded to 256 bytes) and im2col rows for the whole batch up to 64 MiB. Given that,
// the plan runs one GEMM per segment, with any bias; beyond 64 MiB in chunks, as above.
TEST_CASE("conv2d_gemm_scratch_bytes: enough for one GEMM per segment, up to 64 MiB of im2col", "[cuda][gemm]") {
  // The UNet's conv_in at 512x512 with guidance: 8192 rows of 36 halves padded to 40 (80 bytes),
  // after 640 bytes of bias padded to 768.
  const Conv2dGeometry conv_in = conv_geometry(2, 64, 64, 4, 320, 3, 1, 1);
  CHECK(cuda::conv2d_gemm_scratch_bytes(conv_in) == 768 + 8192 * 80);
  for (const bool add : {false, true}) {
    const ConvPlan plan(conv_op(conv_in, true, add, true, 0.5f),
                        {.data = at(kScratch), .bytes = cuda::conv2d_gemm_scratch_bytes(conv_in)});
    CHECK(plan.chunk_rows() == plan.segment_rows());
    CHECK(plan.steps() == plan.segments());
  }
  // The VAE's 128-channel full-resolution conv: 29127 rows of 2304 bytes fit in 64 MiB.
  CHECK(cuda::conv2d_gemm_scratch_bytes(conv_geometry(1, 512, 512, 128, 3, 3, 1, 1)) == 256 + 29127 * 2304);
  // A 1x1 reads x: only the bias.
  CHECK(cuda::conv2d_gemm_scratch_bytes(conv_geometry(2, 64, 64, 320, 640, 1, 1, 0)) == 1280);
  // A single row larger than 64 MiB is still one row.
  CHECK(cuda::conv2d_gemm_scratch_bytes(conv_geometry(1, 4, 4, 4 << 20, 8, 3, 1, 1)) == 256 + (std::size_t{9} << 23));
}

TEST_CASE("ConvPlan: every step's pointers, chunk by chunk", "[cuda][gemm]") {
  // [2, 10, 10, 16] -> 24, 3x3: 100 rows per image of 144 halves (288 bytes), a per-image bias of
  // 24 halves padded to 256 bytes, and 256 + 37 * 288 bytes of scratch: 37 rows fit, so each image
  // takes 3 chunks of 34, 34 and 32 rows (balanced, fewer than 256 rows: no rounding).
  const Conv2dGeometry g = conv_geometry(2, 10, 10, 16, 24, 3, 1, 1);
  const cuda::GemmScratch scratch{.data = at(kScratch), .bytes = 256 + 37 * 288};
  const ConvPlan plan(conv_op(g, true, true, true, 0.5f), scratch);
  REQUIRE(plan.steps() == 6);
  const std::int64_t row0s[] = {0, 34, 68, 100, 134, 168};
  const std::int64_t rows[] = {34, 34, 32, 34, 34, 32};
  for (std::int64_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    const cuda::ConvStep s = plan.step(i);
    const std::int64_t image = i / 3;
    const std::uintptr_t out_offset = std::uintptr_t(row0s[i] * 24 * 2);
    // The scaled bias before the first chunk of each image, from that image's add row.
    REQUIRE(s.bias.has_value() == (i % 3 == 0));
    if (s.bias) {
      CHECK(s.bias->bias == at(kBias));
      CHECK(s.bias->add == at(kAdd + std::uintptr_t(image * 24 * 2)));
      CHECK(s.bias->bias_out == at(kScratch));
      CHECK(s.bias->channels == 24);
      CHECK(s.bias->scale == 0.5f);
    }
    REQUIRE(s.im2col.has_value());
    CHECK(s.im2col->x == at(kX));
    CHECK(s.im2col->col == at(kScratch + 256));
    CHECK(s.im2col->row0 == row0s[i]);
    CHECK(s.im2col->rows == rows[i]);
    CHECK(s.im2col->col_row_stride == 144);
    const cuda::GemmCall& c = s.gemm;
    CHECK(c.key.m == rows[i]);
    CHECK(c.key.n == 24);
    CHECK(c.key.k == 144);
    CHECK(c.key.a_row_stride == 144);
    CHECK(c.key.out_row_stride == 24);
    CHECK(c.key.c_row_stride == 24);
    CHECK(c.key.epilogue == GemmEpilogue::Bias);
    CHECK(c.key.c == GemmC::Residual);
    CHECK(c.alpha == 0.5f);
    CHECK(c.beta == 0.5f);
    CHECK(c.a == at(kScratch + 256));
    CHECK(c.w == at(kW));
    CHECK(c.bias == at(kScratch));
    CHECK(c.c == at(kResidual + out_offset));
    CHECK(c.out == at(kOut + out_offset));
  }

  // Without the add and with s = 1: the op's bias, one segment over both images, chunks crossing
  // from one into the other; no bias step; alpha 1, no C.
  const ConvPlan whole(conv_op(g, true, false, false, 1), {.data = at(kScratch), .bytes = 37 * 288});
  REQUIRE(whole.steps() == 6);
  std::int64_t next = 0;
  for (std::int64_t i = 0; i < whole.steps(); ++i) {
    const cuda::ConvStep s = whole.step(i);
    CHECK_FALSE(s.bias.has_value());
    REQUIRE(s.im2col.has_value());
    CHECK(s.im2col->row0 == next);
    CHECK(s.im2col->col == at(kScratch));
    CHECK(s.gemm.bias == at(kBias));
    CHECK(s.gemm.alpha == 1.0f);
    CHECK(s.gemm.beta == 0.0f);
    CHECK(s.gemm.c == nullptr);
    CHECK(s.gemm.key.c == GemmC::Unused);
    next += s.im2col->rows;
  }
  CHECK(next == 200);
  CHECK(whole.step(2).im2col->row0 == 68);  // rows 68..101: image 0's last 32 and image 1's first 2
  CHECK(whole.step(2).im2col->rows == 34);
}

TEST_CASE("ConvPlan: a 1x1 conv reads x directly, image by image with an add", "[cuda][gemm]") {
  // [2, 8, 8, 320] -> 640 1x1 with a per-channel add: each image's GEMM reads x at its first pixel.
  const ConvPlan plan(conv_op(conv_geometry(2, 8, 8, 320, 640, 1, 1, 0), true, true, false, 1),
                      {.data = at(kScratch), .bytes = 1280});
  CHECK(plan.matrix() == ConvMatrix::Input);
  REQUIRE(plan.steps() == 2);
  const cuda::ConvStep second = plan.step(1);
  CHECK_FALSE(second.im2col.has_value());
  REQUIRE(second.bias.has_value());
  CHECK(second.bias->add == at(kAdd + 640 * 2));
  CHECK(second.gemm.a == at(kX + 64 * 320 * 2));
  CHECK(second.gemm.key.a_row_stride == 320);
  CHECK(second.gemm.key.m == 64);
  CHECK(second.gemm.key.k == 320);
  CHECK(second.gemm.out == at(kOut + 64 * 640 * 2));
  CHECK(plan.scratch_used() == 1280);  // the scaled bias only
  // With the op's bias and no add, it needs no scratch at all.
  const ConvPlan none(conv_op(conv_geometry(2, 8, 8, 320, 640, 1, 1, 0), true, false, true, 1), {});
  CHECK(none.steps() == 1);
  CHECK(none.scratch_used() == 0);
  CHECK(none.step(0).gemm.key.m == 128);
}

TEST_CASE("ConvPlan: chunks are balanced multiples of 256 rows, covering each segment once", "[cuda][gemm]") {
  // A 3x3 conv over 8 channels (rows of 72 halves, 144 bytes) with scratch for `capacity` rows.
  for (std::int64_t capacity : {1, 7, 255, 256, 300, 1000, 4095, 4096, 5000, 20000}) {
    CAPTURE(capacity);
    const Conv2dGeometry g = conv_geometry(3, 40, 50, 8, 8, 3, 1, 1);  // 2000 rows per image
    const ConvPlan plan(conv_op(g, false, true, false, 1),
                        {.data = at(kScratch), .bytes = 256 + std::size_t(capacity) * 144});
    CHECK(plan.chunk_rows() <= capacity);
    if (capacity < 2000) {
      if (capacity >= 256) CHECK(plan.chunk_rows() % 256 == 0);
      // No fewer chunks than needed: one chunk less would not fit.
      const std::int64_t per_segment = plan.steps() / 3;
      CHECK((per_segment - 1) * (capacity >= 256 ? capacity / 256 * 256 : capacity) < 2000);
    } else {
      CHECK(plan.chunk_rows() == 2000);
    }
    std::int64_t covered = 0;
    for (std::int64_t i = 0; i < plan.steps(); ++i) {
      const cuda::ConvStep s = plan.step(i);
      CHECK(s.im2col->row0 == covered);
      CHECK(s.im2col->row0 / 2000 == (s.im2col->row0 + s.im2col->rows - 1) / 2000);  // within one image
      covered += s.im2col->rows;
    }
    CHECK(covered == 6000);
  }
}

TEST_CASE("GEMM plans: invalid requests fail with the op and the shapes", "[cuda][gemm]") {
  using Catch::Contains;
  SECTION("linear") {
    cuda::GemmLinear op = clip_fc1(Act::Silu, at(0x400000), nullptr);
    op.x = nullptr;
    REQUIRE_THROWS_AS(cuda::plan_linear(op), BackendError);
    REQUIRE_THROWS_WITH(cuda::plan_linear(op), Contains("linear (x [77, 768] row stride 768, w [3072, 768]") &&
                                                    Contains("x is a null pointer"));
    op = clip_fc1(Act::Silu, at(0x400001), nullptr);
    REQUIRE_THROWS_WITH(cuda::plan_linear(op), Contains("bias at 0x400001 is not 2-byte aligned"));
    op = clip_fc1(Act::Silu, nullptr, nullptr);
    op.geometry.out.rows = 76;
    REQUIRE_THROWS_WITH(cuda::plan_linear(op), Contains("out is 76 rows of 3072; expected 77 rows of 3072"));
    op = clip_fc1(Act::Silu, nullptr, nullptr);
    op.geometry.x.row_stride = 700;
    REQUIRE_THROWS_WITH(cuda::plan_linear(op), Contains("x has row stride 700, less than its 768 columns"));
    op = clip_fc1(Act::Silu, nullptr, nullptr);
    op.residual = at(0x500000);
    REQUIRE_THROWS_WITH(cuda::plan_linear(op),
                        Contains("a residual pointer is given but the geometry has no residual"));
    op = clip_fc1(Act::Silu, nullptr, at(0x500000));
    op.residual = nullptr;
    REQUIRE_THROWS_WITH(cuda::plan_linear(op),
                        Contains("the geometry has residual rows but the residual pointer is null"));
    op = clip_fc1(static_cast<Act>(42), nullptr, nullptr);
    REQUIRE_THROWS_WITH(cuda::plan_linear(op), Contains("unknown activation 42"));
  }
  SECTION("conv2d") {
    const Conv2dGeometry g = conv_geometry(2, 64, 64, 320, 320, 3, 1, 1);
    const std::string shapes =
        "conv2d (x [2, 64, 64, 320], w [320, 3, 3, 320], stride 1, padding 1, out [2, 64, 64, 320])";
    // One im2col row is 2880 halves (5760 bytes) and the scaled bias 320 halves (640 -> 768 bytes).
    REQUIRE_THROWS_AS(ConvPlan(conv_op(g, true, true, false, 1), {.data = at(kScratch), .bytes = 6000}), BackendError);
    REQUIRE_THROWS_WITH(ConvPlan(conv_op(g, true, true, false, 1), {.data = at(kScratch), .bytes = 6000}),
                        Contains(shapes) && Contains("needs at least 6528 bytes of GEMM scratch") &&
                            Contains("holds 6000 bytes"));
    REQUIRE_THROWS_WITH(ConvPlan(conv_op(g, false, false, false, 1), {}), Contains("needs at least 5760 bytes") &&
                                                                               Contains("the scratch is null"));
    cuda::GemmConv2d wrong_out = conv_op(g, false, false, false, 1);
    wrong_out.geometry.ho = 63;
    REQUIRE_THROWS_WITH(ConvPlan(wrong_out, kScratch64), Contains("the output must be 64 x 64"));
    REQUIRE_THROWS_WITH(ConvPlan(conv_op(g, false, false, false, std::numeric_limits<float>::quiet_NaN()), kScratch64),
                        Contains("output_scale nan is not finite"));
    cuda::GemmConv2d odd = conv_op(g, false, true, false, 1);
    odd.add_per_channel = at(kAdd + 1);
    REQUIRE_THROWS_WITH(ConvPlan(odd, kScratch64), Contains("add_per_channel at") && Contains("is not 2-byte aligned"));
    REQUIRE_THROWS_WITH(ConvPlan(conv_op(g, false, false, false, 1), kScratch64).step(2),
                        Contains("step 2 of 1"));
  }
}

}  // namespace sdgen::test::gemm_plan_test
