// Planning of linear and conv2d as cuBLASLt calls (see gemm_plan.hpp for the decisions and why).
//
// The checks here are the ones the plan relies on beyond kernels/op_checks (which the backend runs
// first on the Tensors): the geometry is self-consistent, the device pointers the op needs are
// there and hold 16-bit elements (2-byte aligned), and the scratch holds what a conv2d needs. They are
// cheap, so they run on every call: a wrong pointer here would otherwise be a kernel fault on the
// GPU, reported asynchronously and far from its cause.
#include "kernels/cuda/gemm_plan.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "lib/core/error.hpp"

namespace sdgen::cuda {

namespace {

constexpr std::int64_t kHalfBytes = 2;
constexpr std::uint64_t kMaxAlignment = 256;      // cuBLASLt's default requirement for every operand
constexpr std::int64_t kIm2colRowQuantum = 8;     // halves: im2col rows start on 16-byte boundaries
constexpr std::int64_t kChunkRowQuantum = 256;    // chunk sizes when a segment takes several
constexpr std::int64_t kScratchAlignment = 256;   // the im2col rows start this far into scratch

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// A 1x1 conv with stride 1 and no padding is a GEMM on x itself.
bool needs_im2col(const Conv2dGeometry& g) { return !(g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padding == 0); }
std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

const void* halves_after(const void* p, std::int64_t n) { return static_cast<const char*>(p) + n * kHalfBytes; }
void* halves_after(void* p, std::int64_t n) { return static_cast<char*>(p) + n * kHalfBytes; }

// The largest power of two up to 256 dividing the address and the row stride in bytes.
std::uint32_t alignment_of(const void* p, std::int64_t row_stride) {
  const std::uint64_t bits =
      reinterpret_cast<std::uintptr_t>(p) | static_cast<std::uint64_t>(row_stride * kHalfBytes) | kMaxAlignment;
  return static_cast<std::uint32_t>(bits & (~bits + 1));
}

// Fills in the key's alignments from the call's pointers.
GemmCall with_alignments(GemmCall call) {
  GemmAlignment& al = call.key.alignment;
  al.a = alignment_of(call.a, call.key.a_row_stride);
  al.w = alignment_of(call.w, call.key.k);
  al.out = alignment_of(call.out, call.key.out_row_stride);
  al.c = call.c ? alignment_of(call.c, call.key.c_row_stride) : al.out;
  al.bias = call.bias ? alignment_of(call.bias, 0) : static_cast<std::uint32_t>(kMaxAlignment);
  return call;
}

GemmEpilogue epilogue_of(Act fused, const void* bias) {
  if (fused == Act::GeluTanh) return bias ? GemmEpilogue::GeluTanhBias : GemmEpilogue::GeluTanh;
  return bias ? GemmEpilogue::Bias : GemmEpilogue::Default;
}

[[noreturn]] void fail(std::string_view op, const std::string& shapes, const std::string& what) {
  throw BackendError(cat(op, " (", shapes, "): ", what));
}

// A pointer the op reads or writes: present when required, and holding whole 16-bit elements.
enum class Needed { Required, Optional };
void check_pointer(std::string_view op, const std::string& shapes, std::string_view name, const void* p,
                   Needed needed) {
  if (p == nullptr) {
    if (needed == Needed::Required) fail(op, shapes, cat(name, " is a null pointer"));
    return;
  }
  if (reinterpret_cast<std::uintptr_t>(p) % kHalfBytes != 0)
    fail(op, shapes, cat(name, " at ", p, " is not 2-byte aligned, so it cannot hold 16-bit elements"));
}

void check_rows(std::string_view op, const std::string& shapes, std::string_view name, const RowsView& r,
                std::int64_t rows, std::int64_t cols) {
  if (r.rows != rows || r.cols != cols)
    fail(op, shapes, cat(name, " is ", r.rows, " rows of ", r.cols, "; expected ", rows, " rows of ", cols));
  if (r.row_stride < cols)
    fail(op, shapes, cat(name, " has row stride ", r.row_stride, ", less than its ", cols, " columns"));
}

std::string linear_shapes(const LinearGeometry& g) {
  return cat("x [", g.x.rows, ", ", g.x.cols, "] row stride ", g.x.row_stride, ", w [", g.n, ", ", g.k, "], out [",
             g.out.rows, ", ", g.out.cols, "] row stride ", g.out.row_stride);
}

std::string conv_shapes(const Conv2dGeometry& g) {
  return cat("x [", g.batch, ", ", g.h, ", ", g.w, ", ", g.cin, "], w [", g.cout, ", ", g.kh, ", ", g.kw, ", ", g.cin,
             "], stride ", g.stride, ", padding ", g.padding, ", out [", g.batch, ", ", g.ho, ", ", g.wo, ", ", g.cout,
             "]");
}

void validate_linear(const GemmLinear& op) {
  constexpr std::string_view name = "linear";
  const LinearGeometry& g = op.geometry;
  const std::string shapes = linear_shapes(g);
  if (g.n < 1 || g.k < 1 || g.x.rows < 1) fail(name, shapes, "every size must be at least 1");
  check_rows(name, shapes, "x", g.x, g.x.rows, g.k);
  check_rows(name, shapes, "out", g.out, g.x.rows, g.n);
  if ((op.residual != nullptr) != (g.residual.rows > 0))
    fail(name, shapes,
         op.residual ? "a residual pointer is given but the geometry has no residual rows"
                     : "the geometry has residual rows but the residual pointer is null");
  if (op.residual) check_rows(name, shapes, "residual", g.residual, g.x.rows, g.n);
  switch (op.act) {
    case Act::None:
    case Act::Silu:
    case Act::Gelu:
    case Act::GeluTanh:
    case Act::QuickGelu:
      break;
    default:
      fail(name, shapes, cat("unknown activation ", static_cast<int>(op.act)));
  }
  check_pointer(name, shapes, "x", op.x, Needed::Required);
  check_pointer(name, shapes, "w", op.w, Needed::Required);
  check_pointer(name, shapes, "out", op.out, Needed::Required);
  check_pointer(name, shapes, "bias", op.bias, Needed::Optional);
  check_pointer(name, shapes, "residual", op.residual, Needed::Optional);
}

void validate_conv2d(const GemmConv2d& op) {
  constexpr std::string_view name = "conv2d";
  const Conv2dGeometry& g = op.geometry;
  const std::string shapes = conv_shapes(g);
  if (g.batch < 1 || g.h < 1 || g.w < 1 || g.cin < 1 || g.cout < 1 || g.kh < 1 || g.kw < 1)
    fail(name, shapes, "every size must be at least 1");
  if (g.stride < 1 || g.padding < 0) fail(name, shapes, "expected stride >= 1 and padding >= 0");
  if (g.h + 2 * g.padding < g.kh || g.w + 2 * g.padding < g.kw)
    fail(name, shapes, "the padded input is smaller than the kernel");
  const std::int64_t ho = (g.h + 2 * g.padding - g.kh) / g.stride + 1;
  const std::int64_t wo = (g.w + 2 * g.padding - g.kw) / g.stride + 1;
  if (g.ho != ho || g.wo != wo) fail(name, shapes, cat("the output must be ", ho, " x ", wo));
  if (!std::isfinite(op.output_scale)) fail(name, shapes, cat("output_scale ", op.output_scale, " is not finite"));
  check_pointer(name, shapes, "x", op.x, Needed::Required);
  check_pointer(name, shapes, "w", op.w, Needed::Required);
  check_pointer(name, shapes, "out", op.out, Needed::Required);
  check_pointer(name, shapes, "bias", op.bias, Needed::Optional);
  check_pointer(name, shapes, "add_per_channel", op.add_per_channel, Needed::Optional);
  check_pointer(name, shapes, "residual", op.residual, Needed::Optional);
}

// Rows per GEMM for a segment of `rows` output rows when the scratch holds `capacity` im2col rows:
// the segment whole if it fits, else the fewest chunks that fit, balanced, each a multiple of 256
// rows (so that chunk starts keep out's alignment) when the capacity allows it.
std::int64_t balanced_chunk_rows(std::int64_t rows, std::int64_t capacity) {
  if (rows <= capacity) return rows;
  const std::int64_t quantum = capacity >= kChunkRowQuantum ? kChunkRowQuantum : 1;
  const std::int64_t largest = capacity / quantum * quantum;
  const std::int64_t chunks = ceil_div(rows, largest);
  return round_up(ceil_div(rows, chunks), quantum);  // <= largest, as largest is a multiple of quantum
}

}  // namespace

std::size_t GemmKeyHash::operator()(const GemmKey& key) const {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  };
  for (std::int64_t v : {key.m, key.n, key.k, key.a_row_stride, key.c_row_stride, key.out_row_stride})
    mix(static_cast<std::uint64_t>(v));
  mix(static_cast<std::uint64_t>(key.epilogue));
  mix(static_cast<std::uint64_t>(key.c));
  const GemmAlignment& al = key.alignment;
  for (std::uint32_t v : {al.a, al.w, al.c, al.out, al.bias}) mix(v);
  return static_cast<std::size_t>(h);
}

// ---- linear

LinearPlan plan_linear(const GemmLinear& op) {
  validate_linear(op);
  const LinearGeometry& g = op.geometry;
  const Act fused = op.act == Act::GeluTanh ? Act::GeluTanh : Act::None;
  const bool residual_in_c = op.residual != nullptr && op.act == Act::None;

  LinearPlan plan;
  GemmCall& call = plan.gemm;
  call.key = GemmKey{.m = g.x.rows,
                     .n = g.n,
                     .k = g.k,
                     .a_row_stride = g.x.row_stride,
                     .c_row_stride = residual_in_c ? g.residual.row_stride : g.out.row_stride,
                     .out_row_stride = g.out.row_stride,
                     .epilogue = epilogue_of(fused, op.bias),
                     .c = residual_in_c ? GemmC::Residual : GemmC::Unused};
  call.alpha = 1.0f;
  call.beta = residual_in_c ? 1.0f : 0.0f;
  call.a = op.x;
  call.w = op.w;
  call.c = residual_in_c ? op.residual : nullptr;
  call.bias = op.bias;
  call.out = op.out;
  call = with_alignments(call);

  const Act pass_act = op.act == fused ? Act::None : op.act;
  const void* pass_residual = residual_in_c ? nullptr : op.residual;
  if (pass_act != Act::None || pass_residual != nullptr)
    plan.pass = RowsPass{.act = pass_act,
                         .out = op.out,
                         .residual = pass_residual,
                         .rows = g.out.rows,
                         .cols = g.n,
                         .out_row_stride = g.out.row_stride,
                         .residual_row_stride = pass_residual ? g.residual.row_stride : 0};
  return plan;
}

// ---- conv2d

ConvPlan::ConvPlan(const GemmConv2d& op, const GemmScratch& scratch) : op_(op), scratch_(scratch) {
  validate_conv2d(op);
  const Conv2dGeometry& g = op.geometry;
  k_ = g.kh * g.kw * g.cin;
  matrix_ = needs_im2col(g) ? ConvMatrix::Im2col : ConvMatrix::Input;
  bias_ = op.add_per_channel || (op.bias && op.output_scale != 1.0f) ? ConvBias::Scaled
          : op.bias                                                  ? ConvBias::Given
                                                                     : ConvBias::None;
  const std::int64_t pixels = g.ho * g.wo;
  segments_ = op.add_per_channel ? g.batch : 1;
  segment_rows_ = op.add_per_channel ? pixels : g.batch * pixels;
  bias_bytes_ =
      bias_ == ConvBias::Scaled ? static_cast<std::size_t>(round_up(g.cout * kHalfBytes, kScratchAlignment)) : 0;

  std::size_t needed = bias_bytes_;
  std::size_t row_bytes = 0;
  if (matrix_ == ConvMatrix::Im2col) {
    im2col_row_stride_ = round_up(k_, kIm2colRowQuantum);
    row_bytes = static_cast<std::size_t>(im2col_row_stride_ * kHalfBytes);
    needed += row_bytes;
  }
  if (needed > 0 && (scratch.data == nullptr || scratch.bytes < needed))
    fail("conv2d", conv_shapes(g),
         cat("needs at least ", needed, " bytes of GEMM scratch (",
             matrix_ == ConvMatrix::Im2col ? cat("one im2col row of ", k_, " halves padded to ", im2col_row_stride_)
                                           : std::string("no im2col"),
             bias_ == ConvBias::Scaled ? cat(", and the scaled bias of ", g.cout, " halves padded to 256 bytes") : "",
             ") but the scratch ", scratch.data ? cat("holds ", scratch.bytes, " bytes") : std::string("is null")));
  if (scratch.data != nullptr && reinterpret_cast<std::uintptr_t>(scratch.data) % kHalfBytes != 0)
    fail("conv2d", conv_shapes(g), cat("the scratch at ", scratch.data, " is not 2-byte aligned"));

  if (matrix_ == ConvMatrix::Im2col) {
    const auto capacity = static_cast<std::int64_t>((scratch.bytes - bias_bytes_) / row_bytes);
    chunk_rows_ = balanced_chunk_rows(segment_rows_, capacity);
  } else {
    chunk_rows_ = segment_rows_;
  }
  chunks_per_segment_ = ceil_div(segment_rows_, chunk_rows_);
}

std::size_t conv2d_gemm_scratch_bytes(const Conv2dGeometry& g) {
  constexpr std::int64_t kIm2colCap = std::int64_t{64} << 20;
  const std::int64_t bias = round_up(g.cout * kHalfBytes, kScratchAlignment);
  if (!needs_im2col(g)) return static_cast<std::size_t>(bias);
  const std::int64_t row = round_up(g.kh * g.kw * g.cin, kIm2colRowQuantum) * kHalfBytes;
  const std::int64_t rows = std::clamp<std::int64_t>(kIm2colCap / row, 1, g.batch * g.ho * g.wo);
  return static_cast<std::size_t>(bias + rows * row);
}

std::size_t ConvPlan::scratch_used() const {
  const std::int64_t im2col_halves = matrix_ == ConvMatrix::Im2col ? chunk_rows_ * im2col_row_stride_ : 0;
  return bias_bytes_ + static_cast<std::size_t>(im2col_halves * kHalfBytes);
}

ConvStep ConvPlan::step(std::int64_t i) const {
  if (i < 0 || i >= steps())
    throw BackendError(cat("conv2d (", conv_shapes(op_.geometry), "): step ", i, " of ", steps()));
  const Conv2dGeometry& g = op_.geometry;
  const std::int64_t segment = i / chunks_per_segment_;
  const std::int64_t first = (i % chunks_per_segment_) * chunk_rows_;  // within the segment
  const std::int64_t row0 = segment * segment_rows_ + first;
  const std::int64_t rows = std::min(chunk_rows_, segment_rows_ - first);
  const float s = op_.output_scale;

  ConvStep step;
  if (bias_ == ConvBias::Scaled && first == 0)
    step.bias = ConvBiasStep{.bias = op_.bias,
                             .add = op_.add_per_channel ? halves_after(op_.add_per_channel, segment * g.cout) : nullptr,
                             .bias_out = scratch_.data,
                             .channels = g.cout,
                             .scale = s};
  GemmCall& call = step.gemm;
  if (matrix_ == ConvMatrix::Im2col) {
    void* col = static_cast<char*>(scratch_.data) + bias_bytes_;
    step.im2col = Im2colStep{.x = op_.x, .col = col, .row0 = row0, .rows = rows, .col_row_stride = im2col_row_stride_};
    call.a = col;
    call.key.a_row_stride = im2col_row_stride_;
  } else {
    call.a = halves_after(op_.x, row0 * g.cin);
    call.key.a_row_stride = g.cin;
  }
  call.key.m = rows;
  call.key.n = g.cout;
  call.key.k = k_;
  call.key.c_row_stride = g.cout;
  call.key.out_row_stride = g.cout;
  call.key.epilogue = bias_ == ConvBias::None ? GemmEpilogue::Default : GemmEpilogue::Bias;
  call.key.c = op_.residual ? GemmC::Residual : GemmC::Unused;
  call.alpha = s;
  call.beta = op_.residual ? s : 0.0f;
  call.w = op_.w;
  call.c = op_.residual ? halves_after(op_.residual, row0 * g.cout) : nullptr;
  call.bias = bias_ == ConvBias::Given ? op_.bias : bias_ == ConvBias::Scaled ? scratch_.data : nullptr;
  call.out = halves_after(op_.out, row0 * g.cout);
  call = with_alignments(call);
  return step;
}

}  // namespace sdgen::cuda
