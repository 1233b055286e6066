// The flash-attention kernel (kernels/cuda/flash_attention.cuh) against the reference backend's
// attention (tests/support/reference_backend.hpp: the plain softmax in double, rounded once to fp32),
// in both 16-bit storage formats T the kernel is instantiated for: fp16 (__half) and bf16
// (__nv_bfloat16). Below, u = 2^-(mantissa bits + 1) is half an ulp of T, relative: 2^-11 for fp16
// (10 mantissa bits), 2^-8 for bf16 (7); every bound is written in u, and its bf16 value follows.
//
// Every case draws random q, k, v rounded to T (never zeros), runs the kernel, ReferenceBackend::
// attention (on the same rounded values) and a naive attention in T written here, and checks two bounds:
//  1. the project's storage rule (storage_rule.hpp): max|kernel - fp32| <= 2 max|naive T - fp32| + one
//     ulp of T at the largest output (2u relative: 2^-10 in fp16, 2^-7 in bf16; at least one ulp at
//     T's smallest normal, 2^-14 or 2^-126). The naive attention rounds every intermediate to T, as
//     a plain 16-bit implementation without fp32 accumulation would: the dot products, the scaled
//     scores, each exponential, the running sum, each weight p / sum and the P V sums. The absolute
//     term is the kernel's final rounding of its fp32 result to T (up to half an ulp of the
//     output), which twice the naive error need not cover where that error happens to be small
//     (a single key: naive and reference agree exactly).
//  2. per element, a bound from the kernel's own precision, since the naive error (0.004 to 0.03
//     in fp16, more in bf16) would let a small defect through: the kernel rounds only the weights p
//     to T (relative u each, so at most u sum_j p_j |v_j| / sum_j p_j on the output, with l
//     summing the unrounded p) and the output (half an ulp: u |out|); its scores, exp2 and sums
//     are fp32 (errors near 2^-20). So |kernel - fp32| <= u (M + |out|), M = sum p |v| / sum p
//     computed here in double; we allow twice that, 2u (M + |out|) (2^-10 in fp16, 2^-7 in bf16),
//     plus an absolute floor (kPrecisionFloor<T>). In fp16 the floor is 2^-14: weights below fp16's
//     normal range (2^-14) round with an absolute error up to 2^-25, and 160 keys of |v| < 6 over a
//     sum of weights >= 1 make that < 2^-14. bf16 has fp32's exponent range: its subnormals lie
//     below 2^-126, where rounding a weight costs at most 2^-134, so only the fp32 steps (~2^-20)
//     are left, and its floor is 2^-17, 8 times those. The largest error / bound seen is about
//     1/3 in fp16 and 0.35 in bf16. Defects it catches that the rule alone does not (tried by
//     editing the kernel, fp16): a scale off by 0.1%, one weight of 16 off by 0.2%, one padding key
//     past Nk left unmasked. In bf16 (tried by editing this test): q, k and v uploaded as fp16 bits
//     fail every case, both bounds; a scale 2^-8 (0.4%) too large fails two of the seven.
// Every output element must be finite, and the elements around the output (guard bands before and
// after it, and the gap of a padded output row) must still hold the 0xffff the buffer started with
// (a NaN in both formats). Input elements outside the q/k/v views (row padding, a leading offset)
// are T's NaN (0x7e00 in fp16, 0x7fc0 in bf16): a kernel that read them would produce NaN.
//
// Sizes. Emulation runs each CUDA thread as a fiber and each mma as a warp collective, so a case
// stays at Nq <= 128 and Nk <= 160 with at most 16 CTAs. That still crosses every tile boundary:
// the query tile is 64 rows and the key tile 64 (head widths <= 80) or 32 (wider), so Nq = 100 is
// a full and a ragged query tile, Nq = 77 likewise, Nk = 100 or 77 gives two or more key tiles
// with a ragged last one (and, causal, a diagonal tile per warp), Nk = 20 and Nk = 1 a single
// ragged tile. The head widths instantiate every kernel: 4, 8, 16 (width 16), 40 (48), 64, 80, 160,
// and 512 and 320 for the wide path (column chunks of 128, the last one partial for 320).
// The layouts: q, k, v as column slices of one fused [B, N, 3 * heads * d] buffer (the QKV
// projection) and as separate tensors; misaligned ones (a base one element off 16 bytes, row
// strides not a multiple of 8 elements, heads whose first column is not a multiple of 8) take the
// plain-load path, aligned ones cp.async; the aligned head_dim 4 with one head takes cp.async with
// half-filled 16-byte chunks.
// fp16 runs every case. bf16 runs the cases marked for it (a `bf16` flag beside each): every
// padded head width (16, 48, 64, 80, 160 and 512) at least once, causal and not, fused and
// separate, cross-attention, both load paths (all the misaligned cases), the wide single heads
// (320 and 512, aligned and not), a single key and a causal Nq != Nk: about a third of the time
// of the fp16 cases.
//
// This file is compiled twice (see CMakeLists.txt): here the kernel runs on the emulator, and in
// sdgen_cuda_kernels_gpu_tests on a GPU.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/flash_attention.cuh"
#include "kernels/op_checks.hpp"
#include "tests/cuda_kernels/storage_rule.hpp"
#include "tests/emu/device_buffer.hpp"
#include "tests/support/reference_backend.hpp"

using namespace sdgen;
using namespace sdgen::test;

// A namespace of its own, tests included: the GPU build compiles every kernel family's test file
// into one translation unit (cuda_kernels_gpu.cu), where anonymous namespaces would merge.
namespace attention_test {

// How q, k and v lie in memory.
enum class QkvLayout {
  Fused,     // one [B, N, 3C + row_pad] buffer, q | k | v column slices (self-attention only)
  Separate,  // three buffers [B, N, C + row_pad]
};

struct AttentionCase {
  int batch = 1;
  int nq = 64;
  int nk = 64;
  int head_dim = 64;
  AttentionArgs args;
  QkvLayout layout = QkvLayout::Separate;
  int row_pad = 0;      // elements after each input row (not part of the views)
  int base_offset = 0;  // elements before the first input element (1: misaligned for cp.async)
  int out_row_pad = 0;  // elements after each output row: must stay untouched
  float q_sigma = 1.0f;  // > 1 sharpens the softmax, so the running maximum moves between key tiles
  std::uint64_t seed = 1;
  // How the launcher must load q, k and v (checked when given): the case is about that path.
  std::optional<std::array<cuda::TileLoad, 3>> loads;
};

// One operand's place in its buffer, in elements.
struct Placement {
  int buffer = 0;
  std::int64_t offset = 0, batch_stride = 0, row_stride = 0, rows = 0;
};

constexpr std::uint16_t kPoison = 0xffff;  // a NaN in both formats
constexpr std::int64_t kGuard = 64;  // output elements before and after the output view
// The absolute floor of the per-element bound (top of this file). fp16: weights below its normal
// range (2^-14) round with an absolute error up to 2^-25; at most 160 keys of |v| < 6 over a sum
// of weights >= 1 make that < 2^-14, and the fp32 steps add ~2^-20. bf16: its subnormals (below
// 2^-126) round with at most 2^-134, so the fp32 steps alone, with a factor 8: 2^-17.
template <class T>
constexpr double kPrecisionFloor = std::is_same_v<T, __half> ? 0x1p-14 : 0x1p-17;

std::int64_t extent(const Placement& p, std::int64_t batch, std::int64_t cols) {
  return (batch - 1) * p.batch_stride + (p.rows - 1) * p.row_stride + cols;
}

float element(const std::vector<std::vector<float>>& buffers, const Placement& x, std::int64_t b, std::int64_t n,
              std::int64_t c) {
  return buffers[std::size_t(x.buffer)][std::size_t(x.offset + b * x.batch_stride + n * x.row_stride + c)];
}

// softmax(q k^T * scale) v with every intermediate rounded to T, in the obvious loop order:
// dot products accumulated in T, the softmax's exponentials, sum and quotients in T, P V
// accumulated in T. Output [B, Nq, C] contiguous.
template <class T>
std::vector<float> naive_attention(const std::vector<std::vector<float>>& buffers, const Placement& q,
                                        const Placement& k, const Placement& v, const AttentionGeometry& g) {
  const std::int64_t c_all = g.heads * g.head_dim;
  std::vector<float> out(std::size_t(g.batch * g.nq * c_all));
  std::vector<float> p(std::size_t(g.nk));
  auto at = [&](const Placement& x, std::int64_t b, std::int64_t n, std::int64_t c) {
    return element(buffers, x, b, n, c);
  };
  const float scale = round_to<T>(g.scale);
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t i = 0; i < g.nq; ++i) {
        const std::int64_t keys = g.causal ? std::min(g.nk, i + 1) : g.nk;
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = 0; j < keys; ++j) {
          float acc = 0.0f;
          for (std::int64_t c = h * g.head_dim; c < (h + 1) * g.head_dim; ++c)
            acc = round_to<T>(acc + round_to<T>(at(q, b, i, c) * at(k, b, j, c)));
          p[std::size_t(j)] = round_to<T>(acc * scale);
          m = std::max(m, p[std::size_t(j)]);
        }
        float sum = 0.0f;
        for (std::int64_t j = 0; j < keys; ++j) {
          p[std::size_t(j)] = round_to<T>(std::exp(round_to<T>(p[std::size_t(j)] - m)));
          sum = round_to<T>(sum + p[std::size_t(j)]);
        }
        for (std::int64_t j = 0; j < keys; ++j) p[std::size_t(j)] = round_to<T>(p[std::size_t(j)] / sum);
        for (std::int64_t c = h * g.head_dim; c < (h + 1) * g.head_dim; ++c) {
          float acc = 0.0f;
          for (std::int64_t j = 0; j < keys; ++j)
            acc = round_to<T>(acc + round_to<T>(p[std::size_t(j)] * at(v, b, j, c)));
          out[std::size_t((b * g.nq + i) * c_all + c)] = acc;
        }
      }
  return out;
}

// Per output element, M = sum_j p_j |v_j| / sum_j p_j with the exact softmax weights p (double):
// the scale of the error that rounding the weights to T can cause in that element. Output [B, Nq, C] contiguous.
std::vector<double> weighted_abs_values(const std::vector<std::vector<float>>& buffers, const Placement& q,
                                        const Placement& k, const Placement& v, const AttentionGeometry& g) {
  const std::int64_t c_all = g.heads * g.head_dim;
  std::vector<double> out(std::size_t(g.batch * g.nq * c_all));
  std::vector<double> p(std::size_t(g.nk));
  auto at = [&](const Placement& x, std::int64_t b, std::int64_t n, std::int64_t c) {
    return double(element(buffers, x, b, n, c));
  };
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t i = 0; i < g.nq; ++i) {
        const std::int64_t keys = g.causal ? std::min(g.nk, i + 1) : g.nk;
        double m = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < keys; ++j) {
          double dot = 0.0;
          for (std::int64_t c = h * g.head_dim; c < (h + 1) * g.head_dim; ++c) dot += at(q, b, i, c) * at(k, b, j, c);
          p[std::size_t(j)] = dot * double(g.scale);
          m = std::max(m, p[std::size_t(j)]);
        }
        double sum = 0.0;
        for (std::int64_t j = 0; j < keys; ++j) sum += p[std::size_t(j)] = std::exp(p[std::size_t(j)] - m);
        for (std::int64_t c = h * g.head_dim; c < (h + 1) * g.head_dim; ++c) {
          double acc = 0.0;
          for (std::int64_t j = 0; j < keys; ++j) acc += p[std::size_t(j)] * std::fabs(at(v, b, j, c));
          out[std::size_t((b * g.nq + i) * c_all + c)] = acc / sum;
        }
      }
  return out;
}

// One ulp of T at the magnitude of x (its binade's spacing; the subnormals' below T's smallest normal).
template <class T>
double ulp(double x) {
  return std::ldexp(1.0, std::ilogb(std::max(x, Format<T>::kMinNormal)) - Format<T>::kMantissaBits);
}

template <class T>
void run_case(const AttentionCase& tc, const std::string& what) {
  INFO(what << " (" << Format<T>::kName << ")");
  const std::int64_t c_all = std::int64_t(tc.args.heads) * tc.head_dim;
  const std::int64_t batch = tc.batch;

  // ---- place the operands and fill the buffers (NaN outside the views).
  Placement q, k, v;
  std::vector<std::int64_t> sizes;
  if (tc.layout == QkvLayout::Fused) {
    REQUIRE(tc.nq == tc.nk);
    const std::int64_t rs = 3 * c_all + tc.row_pad, bs = tc.nq * rs;
    q = {0, tc.base_offset, bs, rs, tc.nq};
    k = {0, tc.base_offset + c_all, bs, rs, tc.nk};
    v = {0, tc.base_offset + 2 * c_all, bs, rs, tc.nk};
    sizes = {tc.base_offset + batch * bs};
  } else {
    const std::int64_t rs = c_all + tc.row_pad;
    q = {0, tc.base_offset, tc.nq * rs, rs, tc.nq};
    k = {1, tc.base_offset, tc.nk * rs, rs, tc.nk};
    v = {2, tc.base_offset, tc.nk * rs, rs, tc.nk};
    sizes = {tc.base_offset + batch * q.batch_stride, tc.base_offset + batch * k.batch_stride,
             tc.base_offset + batch * v.batch_stride};
  }
  std::vector<std::vector<float>> host;
  for (std::int64_t size : sizes) host.emplace_back(std::size_t(size), Format<T>::value(Format<T>::kNan));
  std::uint64_t seed = tc.seed;
  for (const Placement* p : {&q, &k, &v}) {
    const float sigma = p == &q ? tc.q_sigma : 1.0f;
    const std::vector<float> values = randn<T>(std::size_t(batch * p->rows * c_all), seed++, sigma);
    std::size_t next = 0;
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t n = 0; n < p->rows; ++n)
        for (std::int64_t c = 0; c < c_all; ++c) {
          host[std::size_t(p->buffer)][std::size_t(p->offset + b * p->batch_stride + n * p->row_stride + c)] =
              values[next++];
        }
  }
  auto tensor = [&](void* buffer, const Placement& p, DType dtype, Device device) {
    return Tensor{static_cast<char*>(buffer) + std::size_t(p.offset) * dtype_size(dtype), dtype,
                  {batch, p.rows, c_all}, {p.batch_stride, p.row_stride, 1}, device};
  };

  // ---- the fp32 reference: the reference backend on the same values and strides.
  std::vector<float> ref32(std::size_t(batch * tc.nq * c_all));
  {
    ReferenceBackend reference;
    auto host_tensor = [&](const Placement& p) {
      return tensor(host[std::size_t(p.buffer)].data(), p, DType::F32, {});
    };
    reference.attention(host_tensor(q), host_tensor(k), host_tensor(v),
                        Tensor::contiguous(ref32.data(), DType::F32, {batch, tc.nq, c_all}), tc.args);
  }

  // ---- the kernel, launched with the geometry the CUDA backend's check gives for these tensors.
  std::vector<DeviceBuffer<T>> device;
  for (const std::vector<float>& h : host) device.emplace_back(to_bits<T>(h));
  const Placement out{0, kGuard, tc.nq * (c_all + tc.out_row_pad), c_all + tc.out_row_pad, tc.nq};
  const std::int64_t out_size = 2 * kGuard + batch * out.batch_stride;
  DeviceBuffer<T> d_out{std::size_t(out_size)};  // 0xffff everywhere
  constexpr DType kStorage = cuda::kStorageDType<T>;
  const OpSupport cuda_support{.device = DeviceKind::Cuda, .activations = kStorage, .params = kStorage,
                               .weights = {kStorage}};
  auto device_tensor = [&](const DeviceBuffer<T>& buffer, const Placement& p) {
    return tensor(buffer.view("").raw(), p, kStorage, Device{DeviceKind::Cuda, 0});
  };
  const AttentionGeometry g = check_attention(
      cuda_support, device_tensor(device[std::size_t(q.buffer)], q), device_tensor(device[std::size_t(k.buffer)], k),
      device_tensor(device[std::size_t(v.buffer)], v), device_tensor(d_out, out), tc.args);
  // Each operand's GlobalPtr spans exactly its view's elements, as the backend makes them.
  auto operand = [&](const Placement& p, const char* name) {
    return cuda::GlobalPtr<const T>(
        device[std::size_t(p.buffer)].view(name).slice(p.offset, extent(p, batch, c_all)));
  };
  if (tc.loads) {
    const Placement* places[] = {&q, &k, &v};
    const AttentionOperand strides[] = {g.q, g.k, g.v};
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(cuda::attention_detail::tile_load_for(operand(*places[i], "x"), strides[i], g) == (*tc.loads)[i]);
  }
  cuda::flash_attention<T>({.q = operand(q, "q"),
                            .k = operand(k, "k"),
                            .v = operand(v, "v"),
                            .out = d_out.view("out").slice(out.offset, extent(out, batch, c_all)),
                            .geometry = g});
  const std::vector<std::uint16_t> result = d_out.template to_host<std::uint16_t>();

  // ---- guards: every element outside the output view still holds the poison.
  std::vector<char> inside(std::size_t(out_size), 0);
  std::vector<float> kernel(ref32.size());
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t n = 0; n < tc.nq; ++n)
      for (std::int64_t c = 0; c < c_all; ++c) {
        const auto at = std::size_t(out.offset + b * out.batch_stride + n * out.row_stride + c);
        inside[at] = 1;
        kernel[std::size_t((b * tc.nq + n) * c_all + c)] = Format<T>::value(result[at]);
      }
  std::int64_t touched = 0;
  for (std::size_t i = 0; i < result.size(); ++i) touched += !inside[i] && result[i] != kPoison ? 1 : 0;
  CHECK(touched == 0);

  // ---- the two bounds of the top of this file (NaN/Inf are checked by the first).
  const std::vector<float> naive = naive_attention<T>(host, q, k, v, g);
  double max_ref = 0.0;
  for (float x : ref32) max_ref = std::max(max_ref, double(std::fabs(x)));
  check_storage_rule<T>(kernel, ref32, naive, ulp<T>(max_ref), what);
  const std::vector<double> magnitude = weighted_abs_values(host, q, k, v, g);
  std::int64_t over = 0;
  double worst = 0.0;  // the largest error / bound, reported either way
  for (std::size_t i = 0; i < kernel.size(); ++i) {
    // 2u (M + |out|) = 2^-mantissa (M + |out|): 2^-10 in fp16, 2^-7 in bf16.
    const double bound = 2.0 * half_ulp<T>(magnitude[i] + std::fabs(double(ref32[i]))) + kPrecisionFloor<T>;
    const double ratio = std::fabs(double(kernel[i]) - double(ref32[i])) / bound;
    worst = std::max(worst, ratio);
    over += ratio > 1.0 ? 1 : 0;
  }
  INFO("elements over the precision bound: " << over << "; largest error / bound " << worst);
  CHECK(over == 0);
}

// Nq = Nk = 100: a full and a ragged query tile, two (width <= 80) or four (wider) key tiles with
// a ragged last one; batch 2 and 2 heads, so batch and head offsets are exercised. The fused
// buffer is what the QKV projection writes. head_dim 4 with 2 heads puts head 1 at column 4, off a
// 16-byte boundary: plain loads; the others are aligned: cp.async. bf16: each padded width once
// (4 for width 16, 40, 64, 80, 160), causal for 40 and 160 (and in the cases below).
TEMPLATE_TEST_CASE("flash attention: every head width, self-attention on a fused QKV buffer", "[cuda][attention]",
                   __half, __nv_bfloat16) {
  struct Shape {
    int head_dim;
    bool causal;
    Formats formats;
  };
  for (const Shape& s :
       {Shape{4, false, Formats::Both}, Shape{4, true, Formats::Fp16Only}, Shape{8, false, Formats::Fp16Only},
        Shape{8, true, Formats::Fp16Only}, Shape{16, false, Formats::Fp16Only}, Shape{16, true, Formats::Fp16Only},
        Shape{40, false, Formats::Fp16Only}, Shape{40, true, Formats::Both}, Shape{64, false, Formats::Both},
        Shape{64, true, Formats::Fp16Only}, Shape{80, false, Formats::Both}, Shape{80, true, Formats::Fp16Only},
        Shape{160, false, Formats::Fp16Only}, Shape{160, true, Formats::Both}}) {
    if (!runs_in<TestType>(s.formats)) continue;
    const int d = s.head_dim;
    AttentionCase tc;
    tc.batch = 2;
    tc.nq = tc.nk = 100;
    tc.head_dim = d;
    tc.args = {.heads = 2, .causal = s.causal};
    tc.layout = QkvLayout::Fused;
    tc.q_sigma = 2.0f;
    tc.seed = std::uint64_t(10 * d + (s.causal ? 1 : 0));
    const cuda::TileLoad load = d == 4 ? cuda::TileLoad::Plain : cuda::TileLoad::AsyncCopy;
    tc.loads = {load, load, load};
    run_case<TestType>(tc, "d " + std::to_string(d) + (s.causal ? " causal" : ""));
  }
}

// Cross-attention to the 77 tokens of the text context: two key tiles of 64 (13 keys in the
// second) or three of 32 (13 in the third). 128 queries are two full query tiles. The shapes are
// SD 1.x's first level (8 heads of 40, 320 channels), SD 2.x's (heads of 64) and the widest SD 1.x
// head (160), with q, k and v separate tensors as the cross-attention projections produce them.
// bf16: heads of 40 and of 160 (key tiles of 64 and of 32).
TEMPLATE_TEST_CASE("flash attention: cross-attention to 77 text tokens", "[cuda][attention]", __half,
                   __nv_bfloat16) {
  struct Shape {
    int head_dim, heads, batch;
    Formats formats;
  };
  for (const Shape& s : {Shape{40, 8, 1, Formats::Both}, Shape{64, 2, 2, Formats::Fp16Only},
                         Shape{80, 2, 1, Formats::Fp16Only}, Shape{160, 2, 1, Formats::Both}}) {
    if (!runs_in<TestType>(s.formats)) continue;
    AttentionCase tc;
    tc.batch = s.batch;
    tc.nq = 128;
    tc.nk = 77;
    tc.head_dim = s.head_dim;
    tc.args = {.heads = s.heads};
    tc.q_sigma = 2.0f;
    tc.seed = std::uint64_t(100 + s.head_dim);
    run_case<TestType>(tc, "d " + std::to_string(s.head_dim) + " heads " + std::to_string(s.heads));
  }
}

// CLIP's causal self-attention over 77 tokens (heads of 64 in SD 1.x and 2.x): the second query
// tile has 13 rows, the first query tile never loads the second key tile (keys 64..76 are after
// all its queries), and the second one masks inside both. Both formats.
TEMPLATE_TEST_CASE("flash attention: CLIP's causal self-attention over 77 tokens", "[cuda][attention]", __half,
                   __nv_bfloat16) {
  AttentionCase tc;
  tc.batch = 2;
  tc.nq = tc.nk = 77;
  tc.head_dim = 64;
  tc.args = {.heads = 2, .causal = true};
  tc.layout = QkvLayout::Fused;
  tc.q_sigma = 2.0f;
  run_case<TestType>(tc, "clip");
}

// Fewer keys than one tile: 20 keys, and a single key (every output row is then v[0] exactly).
// Tile edges: 63 keys (one key of padding to mask), 64 keys with tiles of 32 (no ragged tile),
// causal 65 queries x 100 keys (the second query tile's only row needs the first key of the second
// key tile, and no later one).
// Causal with Nq != Nk is top-left aligned: with 100 queries and 40 keys, queries 39..99 see every
// key; with 40 queries and 100 keys, keys 40..99 are hidden from everyone (never loaded).
// bf16: the single key on width 16, causal (the output must be v[0] rounded once: exact), 63 keys,
// and causal 40 x 100.
TEMPLATE_TEST_CASE("flash attention: few keys, and causal masks with Nq != Nk", "[cuda][attention]", __half,
                   __nv_bfloat16) {
  struct Shape {
    int nq, nk, head_dim;
    bool causal;
    Formats formats;
  };
  for (const Shape& s : {Shape{100, 20, 64, false, Formats::Fp16Only}, Shape{70, 1, 80, false, Formats::Fp16Only},
                         Shape{70, 1, 16, true, Formats::Both}, Shape{100, 63, 64, false, Formats::Both},
                         Shape{65, 100, 40, true, Formats::Fp16Only}, Shape{100, 64, 160, false, Formats::Fp16Only},
                         Shape{100, 40, 64, true, Formats::Fp16Only}, Shape{40, 100, 40, true, Formats::Both}}) {
    if (!runs_in<TestType>(s.formats)) continue;
    AttentionCase tc;
    tc.batch = 2;
    tc.nq = s.nq;
    tc.nk = s.nk;
    tc.head_dim = s.head_dim;
    tc.args = {.heads = 2, .causal = s.causal};
    tc.q_sigma = 2.0f;
    tc.seed = std::uint64_t(200 + s.nk);
    run_case<TestType>(tc, "nq " + std::to_string(s.nq) + " nk " + std::to_string(s.nk) + " d " +
                               std::to_string(s.head_dim) + (s.causal ? " causal" : ""));
  }
}

// Operands cp.async cannot read (the launcher picks plain loads for each such operand):
//  - the whole fused buffer one element off a 16-byte boundary;
//  - rows 4 elements longer than the data (row stride = 4 mod 8), separate tensors;
//  - head_dim 4, one head, fused rows padded to 16 elements: q (column 0) and v (column 8) go by
//    cp.async with half-filled 16-byte chunks, k (column 4) by plain loads;
//  - head_dim 4, one head, separate tensors of 4-element rows: plain.
// Both formats, all of them.
TEMPLATE_TEST_CASE("flash attention: misaligned operands take the plain-load path", "[cuda][attention]", __half,
                   __nv_bfloat16) {
  constexpr cuda::TileLoad kPlain = cuda::TileLoad::Plain;
  constexpr cuda::TileLoad kAsync = cuda::TileLoad::AsyncCopy;
  SECTION("fused buffer one element off") {
    AttentionCase tc;
    tc.batch = 2;
    tc.nq = tc.nk = 100;
    tc.head_dim = 64;
    tc.args = {.heads = 2, .causal = true};
    tc.layout = QkvLayout::Fused;
    tc.base_offset = 1;
    tc.loads = {kPlain, kPlain, kPlain};
    run_case<TestType>(tc, "base offset 1");
  }
  SECTION("row stride not a multiple of 8") {
    AttentionCase tc;
    tc.batch = 2;
    tc.nq = 100;
    tc.nk = 77;
    tc.head_dim = 40;
    tc.args = {.heads = 2};
    tc.row_pad = 4;
    tc.loads = {kPlain, kPlain, kPlain};
    run_case<TestType>(tc, "row pad 4");
  }
  SECTION("head_dim 4: q and v by cp.async with half chunks, k by plain loads") {
    AttentionCase tc;
    tc.batch = 2;
    tc.nq = tc.nk = 100;
    tc.head_dim = 4;
    tc.args = {.heads = 1, .causal = true};
    tc.layout = QkvLayout::Fused;
    tc.row_pad = 4;
    tc.loads = {kAsync, kPlain, kAsync};
    run_case<TestType>(tc, "d 4 fused, rows of 16");
  }
  SECTION("head_dim 4, separate 4-element rows") {
    AttentionCase tc;
    tc.batch = 1;
    tc.nq = 100;
    tc.nk = 77;
    tc.head_dim = 4;
    tc.args = {.heads = 1};
    tc.loads = {kPlain, kPlain, kPlain};
    run_case<TestType>(tc, "d 4 separate");
  }
}

// The VAE's mid-block attention: one head of 512 (the wide path: 4 chunks of 128 output columns,
// Q from shared memory, key tiles of 32) on separate q, k, v, aligned and one element off; a
// 320-wide head (3 chunks, the last with 64 columns); and the tiny VAE's single head of 64.
// bf16: the 512 one element off (plain loads) and the 320 (cp.async, a partial last chunk).
TEMPLATE_TEST_CASE("flash attention: single wide heads (the VAE)", "[cuda][attention]", __half, __nv_bfloat16) {
  struct Shape {
    int head_dim, batch, n, base_offset;
    Formats formats;
  };
  for (const Shape& s : {Shape{512, 1, 100, 0, Formats::Fp16Only}, Shape{512, 1, 50, 1, Formats::Both},
                         Shape{320, 2, 50, 0, Formats::Both}, Shape{64, 1, 100, 0, Formats::Fp16Only}}) {
    if (!runs_in<TestType>(s.formats)) continue;
    AttentionCase tc;
    tc.batch = s.batch;
    tc.nq = tc.nk = s.n;
    tc.head_dim = s.head_dim;
    tc.args = {.heads = 1};
    tc.base_offset = s.base_offset;
    const cuda::TileLoad load = s.base_offset == 0 ? cuda::TileLoad::AsyncCopy : cuda::TileLoad::Plain;
    tc.loads = {load, load, load};
    tc.seed = std::uint64_t(300 + s.head_dim + s.base_offset);
    run_case<TestType>(tc, "d " + std::to_string(s.head_dim) + " n " + std::to_string(s.n) + " offset " +
                               std::to_string(s.base_offset));
  }
}

// An output whose rows are 8 elements longer than its data (the gap must stay untouched) and a
// scale other than 1/sqrt(d). Both formats.
TEMPLATE_TEST_CASE("flash attention: padded output rows and an explicit scale", "[cuda][attention]", __half,
                   __nv_bfloat16) {
  AttentionCase tc;
  tc.batch = 2;
  tc.nq = 100;
  tc.nk = 77;
  tc.head_dim = 80;
  tc.args = {.heads = 2, .scale = 0.3f};
  tc.out_row_pad = 8;
  run_case<TestType>(tc, "out row pad 8, scale 0.3");
}

}  // namespace attention_test
