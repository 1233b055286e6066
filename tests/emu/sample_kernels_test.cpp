// The sample kernels (sample_kernels.cuh) against plain host loops that compute the same thing.
//
// This file is compiled twice: into sdgen_emu_tests, where the kernels run on the CUDA emulator,
// and into sdgen_emu_gpu_tests through sample_kernels_gpu.cu, where they run on a GPU when one is
// present. So the expectations here are facts of CUDA, not of the emulator: a disagreement between
// the two builds is a bug in the emulator.
//
// Sizes are small because emulation runs every CUDA thread as a fiber; each case says why its size
// covers what it tests. Integer-valued inputs make the reductions exact in any order, so those
// checks are equalities; the tensor-core cases state their tolerance.
#include <catch2/catch.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "tests/emu/device_buffer.hpp"
#include "tests/emu/sample_kernels.cuh"

using namespace sdgen;
using namespace sdgen::test;

namespace {

std::vector<float> random_integers_as_float(std::size_t n, int lo, int hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = float(dist(rng));
  return v;
}

}  // namespace

// 1000 elements in blocks of 128: eight blocks, the last one partial (1000 = 7 * 128 + 104), so
// the reduction runs across several blocks and over padding; 7 tree steps of barriers per block.
TEST_CASE("a block-wide sum through dynamic shared memory and __syncthreads()", "[emu]") {
  constexpr int n = 1000;
  constexpr int block = 128;
  constexpr int grid = (n + block - 1) / block;
  const std::vector<float> x = random_integers_as_float(n, -8, 8, 1);
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<float> d_partial(grid);

  cuda::launch(SDGEN_KERNEL(block_sum_kernel), {.grid = grid, .block = block, .shared_bytes = block * sizeof(float)},
               d_x.view("x"), d_partial.view("partial"), n);

  const std::vector<float> partial = d_partial.to_host();
  for (int b = 0; b < grid; ++b) {
    float expected = 0.0f;  // integers below 2^24: exact in any order
    for (int i = b * block; i < std::min(n, (b + 1) * block); ++i) expected += x[std::size_t(i)];
    CHECK(partial[std::size_t(b)] == expected);
  }
}

// Two blocks of two warps: every lane of four warps, with warps that differ in their votes.
TEST_CASE("warp shuffles, votes and reductions match their definitions", "[emu]") {
  constexpr int grid = 2;
  constexpr int n = grid * kWarpOpsBlock;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> dist(1, 40);
  std::uniform_int_distribution<int> sign(0, 1);
  std::vector<int> x(n);
  for (int& v : x) v = sign(rng) ? dist(rng) : -dist(rng);
  x[5] = 0;         // warp 0: __any_sync(x == 0) holds
  x[64 + 20] = 0;   // warp 2 too
  x[32 + 7] = -60;  // warp 1: __all_sync(x > -50) fails

  DeviceBuffer<int> d_x(x), butterfly(n), lane0(n / 32), prefix(n), xor16(n), down3(n), votes(n), radd(n), rmin(n),
      next(n);
  DeviceBuffer<float> rotated(n);
  DeviceBuffer<unsigned> ballot(n), rmax(n);
  const WarpOpsParams params{.x = d_x.view("x"),
                             .butterfly_sum = butterfly.view("butterfly_sum"),
                             .lane0_sum = lane0.view("lane0_sum"),
                             .rotated = rotated.view("rotated"),
                             .prefix = prefix.view("prefix"),
                             .xor16_width16 = xor16.view("xor16_width16"),
                             .down3_width8 = down3.view("down3_width8"),
                             .ballot = ballot.view("ballot"),
                             .votes = votes.view("votes"),
                             .reduce_add = radd.view("reduce_add"),
                             .reduce_min = rmin.view("reduce_min"),
                             .reduce_max = rmax.view("reduce_max"),
                             .from_next_lane = next.view("from_next_lane")};
  cuda::launch(SDGEN_KERNEL(warp_ops_kernel), {.grid = grid, .block = kWarpOpsBlock}, params);

  const auto h_butterfly = butterfly.to_host(), h_lane0 = lane0.to_host(), h_prefix = prefix.to_host(),
             h_xor16 = xor16.to_host(), h_down3 = down3.to_host(), h_votes = votes.to_host(), h_radd = radd.to_host(),
             h_rmin = rmin.to_host(), h_next = next.to_host();
  const auto h_rotated = rotated.to_host();
  const auto h_ballot = ballot.to_host(), h_rmax = rmax.to_host();
  for (int w = 0; w < n / 32; ++w) {
    const int base = 32 * w;
    int sum = 0, lo = INT_MAX, hi = INT_MIN;
    unsigned positive = 0;
    bool any_zero = false, all_above = true;
    for (int l = 0; l < 32; ++l) {
      const int v = x[std::size_t(base + l)];
      sum += v;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      positive |= v > 0 ? 1u << l : 0u;
      any_zero = any_zero || v == 0;
      all_above = all_above && v > -50;
    }
    CHECK(h_lane0[std::size_t(w)] == sum);
    int running = 0;
    for (int l = 0; l < 32; ++l) {
      const auto i = std::size_t(base + l);
      running += x[i];
      CAPTURE(w, l);
      CHECK(h_butterfly[i] == sum);
      CHECK(h_rotated[i] == float(x[std::size_t(base + (l + 3) % 32)]));
      CHECK(h_prefix[i] == running);
      // width 16: lanes 16-31 may read the earlier segment; lanes 0-15 asking for a later one
      // get their own value back.
      CHECK(h_xor16[i] == (l >= 16 ? x[i - 16] : x[i]));
      CHECK(h_down3[i] == (l % 8 + 3 < 8 ? x[i + 3] : x[i]));
      CHECK(h_ballot[i] == positive);
      CHECK(h_votes[i] == (any_zero ? 1 : 0) + (all_above ? 2 : 0));
      CHECK(h_radd[i] == sum);
      CHECK(h_rmin[i] == lo);
      CHECK(h_rmax[i] == unsigned(hi + 100));
      CHECK(h_next[i] == x[std::size_t(base + (l + 1) % 32)]);
    }
  }
}

// A 40 x 24 matrix: a 2 x 3 grid of 16 x 16 tiles where the last tile row and column are partial,
// so both the static tile and the dynamic scratch are used at the edges as well as inside.
TEST_CASE("a transpose through a static shared tile, with statistics in dynamic shared memory", "[emu]") {
  constexpr int rows = 40, cols = 24;
  constexpr unsigned grid_x = (cols + kTile - 1) / kTile, grid_y = (rows + kTile - 1) / kTile;
  constexpr int threads = kTile * kTileRowsPerPass;
  const std::vector<float> in = random_integers_as_float(rows * cols, -3, 3, 3);
  DeviceBuffer<float> d_in(in), d_out(rows * cols), d_sum(grid_x * grid_y);
  DeviceBuffer<int> d_nonzero(grid_x * grid_y);

  cuda::launch(SDGEN_KERNEL(transpose_kernel),
               {.grid = dim3(grid_x, grid_y), .block = dim3(kTile, kTileRowsPerPass), .shared_bytes = 2 * threads * 4},
               d_in.view("in"), d_out.view("out"), d_sum.view("tile_sum"), d_nonzero.view("tile_nonzero"), rows, cols);

  const auto out = d_out.to_host();
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) REQUIRE(out[std::size_t(c * rows + r)] == in[std::size_t(r * cols + c)]);
  const auto sum = d_sum.to_host();
  const auto nonzero = d_nonzero.to_host();
  for (unsigned by = 0; by < grid_y; ++by)
    for (unsigned bx = 0; bx < grid_x; ++bx) {
      float expected_sum = 0.0f;
      int expected_nonzero = 0;
      for (int r = int(by) * kTile; r < std::min(rows, int(by + 1) * kTile); ++r)
        for (int c = int(bx) * kTile; c < std::min(cols, int(bx + 1) * kTile); ++c) {
          expected_sum += in[std::size_t(r * cols + c)];
          expected_nonzero += in[std::size_t(r * cols + c)] != 0.0f ? 1 : 0;
        }
      CHECK(sum[by * grid_x + bx] == expected_sum);
      CHECK(nonzero[by * grid_x + bx] == expected_nonzero);
    }
}

// 2000 values over 4 blocks of 128 threads: four grid-stride passes, every block contending for
// the same 16 shared bins and the same global counters.
TEST_CASE("atomics: a shared-memory histogram and global min, max, sum and CAS-based float max", "[emu]") {
  constexpr int n = 2000;
  std::mt19937 rng(4);
  std::uniform_int_distribution<int> dist(0, 99);
  std::vector<int> values(n);
  for (int& v : values) v = dist(rng);

  DeviceBuffer<int> d_values(values), d_max(std::vector<int>{INT_MIN}), d_min(std::vector<int>{INT_MAX});
  DeviceBuffer<unsigned> d_hist(std::vector<unsigned>(kBins, 0u));
  DeviceBuffer<float> d_sum(std::vector<float>{0.0f}),
      d_max_half(std::vector<float>{-std::numeric_limits<float>::infinity()});
  const HistogramParams params{.values = d_values.view("values"),
                               .n = n,
                               .hist = d_hist.view("hist"),
                               .max_value = d_max.view("max_value"),
                               .min_value = d_min.view("min_value"),
                               .sum = d_sum.view("sum"),
                               .max_half = d_max_half.view("max_half")};
  cuda::launch(SDGEN_KERNEL(histogram_kernel), {.grid = 4, .block = 128}, params);

  std::vector<unsigned> hist(kBins, 0u);
  float sum = 0.0f;  // integers below 2^24: exact in any order
  for (int v : values) {
    ++hist[std::size_t(v % kBins)];
    sum += float(v);
  }
  const int hi = *std::max_element(values.begin(), values.end());
  CHECK(d_hist.to_host() == hist);
  CHECK(d_max.to_host()[0] == hi);
  CHECK(d_min.to_host()[0] == *std::min_element(values.begin(), values.end()));
  CHECK(d_sum.to_host()[0] == sum);
  CHECK(d_max_half.to_host()[0] == 0.5f * float(hi));
}

namespace {

// C = A·B with A [32, 48] and B [48, 16]: four 16 x 8 output tiles, so four warps (two blocks of
// two), each accumulating three k-steps of 16. Every element of every fragment register takes part,
// which is what a layout test needs; bigger matrices would only repeat the same index pattern.
constexpr int kM = 32, kN = 16, kK = 48;

template <class T>
struct GemmCase {
  std::vector<T> a, b;
  std::vector<double> c;      // the exact product of the 16-bit inputs
  std::vector<double> bound;  // per element: the error allowed
};

// Inputs uniform in [-1, 1], rounded to T (fp16 or bf16). The reference is computed in double from
// the same rounded values, so it differs from any correct kernel only by fp32 accumulation error.
// The bound allows K * 2^-22 * sum_k |a_ik b_kj|: four times the worst case of K round-to-nearest
// fp32 additions, which leaves room for the tensor core's unspecified internal rounding; a misplaced
// fragment element, or operands read in the other 16-bit format, costs an error of the size of the
// terms themselves, several orders of magnitude more.
template <class T>
GemmCase<T> make_gemm_case(unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  GemmCase<T> g;
  for (int i = 0; i < kM * kK; ++i) g.a.push_back(T(dist(rng)));
  for (int i = 0; i < kK * kN; ++i) g.b.push_back(T(dist(rng)));
  for (int m = 0; m < kM; ++m)
    for (int n = 0; n < kN; ++n) {
      double sum = 0.0, magnitude = 0.0;
      for (int k = 0; k < kK; ++k) {
        const double term = double(float(g.a[std::size_t(m * kK + k)])) * double(float(g.b[std::size_t(k * kN + n)]));
        sum += term;
        magnitude += std::fabs(term);
      }
      g.c.push_back(sum);
      g.bound.push_back(kK * std::ldexp(1.0, -22) * magnitude);
    }
  return g;
}

// How many elements of the kernel's C lie outside the bound.
template <class T>
int run_gemm(const cuda::Kernel<GemmParams<T>>& kernel, std::size_t shared_bytes, const GemmCase<T>& g) {
  DeviceBuffer<T> a(g.a), b(g.b);
  DeviceBuffer<float> c(kM * kN);
  constexpr int warps_per_block = 2;
  const int warps = (kM / 16) * (kN / 8);
  cuda::launch(kernel,
               {.grid = unsigned(warps / warps_per_block), .block = 32 * warps_per_block, .shared_bytes = shared_bytes},
               GemmParams<T>{.a = a.view("a"), .b = b.view("b"), .c = c.view("c"), .m = kM, .n = kN, .k = kK});
  const std::vector<float> result = c.to_host();
  int outside = 0;
  for (std::size_t i = 0; i < result.size(); ++i)
    if (!(std::fabs(double(result[i]) - g.c[i]) <= g.bound[i])) ++outside;
  return outside;
}

}  // namespace

TEMPLATE_TEST_CASE("mma.m16n8k16 with fragments indexed by the PTX layout computes A·B", "[emu][mma]", __half,
                   __nv_bfloat16) {
  const GemmCase<TestType> g = make_gemm_case<TestType>(5);
  CHECK(run_gemm(SDGEN_KERNEL(mma_gemm_direct_kernel<AFragmentLayout::Ptx, TestType>), 0, g) == 0);
}

TEMPLATE_TEST_CASE("mma.m16n8k16 fed by cp.async and ldmatrix computes A·B", "[emu][mma]", __half, __nv_bfloat16) {
  const GemmCase<TestType> g = make_gemm_case<TestType>(6);
  CHECK(run_gemm(SDGEN_KERNEL(mma_gemm_ldmatrix_kernel<TestType>), 2 * kGemmStageHalves * sizeof(TestType), g) == 0);
}

TEST_CASE("a wrong A-fragment index gives a product the comparison rejects", "[emu][mma]") {
  const GemmCase<__half> g = make_gemm_case<__half>(7);
  // Swapping two of the four registers misplaces half of A in every tile: nearly every element of
  // C is wrong, not just a few.
  CHECK(run_gemm(SDGEN_KERNEL(mma_gemm_direct_kernel<AFragmentLayout::SecondAndThirdRegistersSwapped, __half>), 0, g) >
        kM * kN / 2);
}

TEST_CASE("bf16 operands given to an fp16 mma give a product the comparison rejects", "[emu][mma]") {
  // The same bits read in the other format: the check that the bf16 instantiation really runs the
  // bf16 instruction (in emulation, the collective's format) rather than the fp16 one.
  const GemmCase<__nv_bfloat16> g = make_gemm_case<__nv_bfloat16>(8);
  GemmCase<__half> misread;
  for (const __nv_bfloat16 v : g.a) misread.a.push_back(cuda::storage_from_bits<__half>(cuda::storage_bits(v)));
  for (const __nv_bfloat16 v : g.b) misread.b.push_back(cuda::storage_from_bits<__half>(cuda::storage_bits(v)));
  misread.c = g.c;
  misread.bound = g.bound;
  CHECK(run_gemm(SDGEN_KERNEL(mma_gemm_direct_kernel<AFragmentLayout::Ptx, __half>), 0, misread) > kM * kN / 2);
}

// 10 vectors in blocks of 4 threads: three blocks, the last one partial.
TEST_CASE("uint4 loads and stores move four floats as one vector", "[emu]") {
  constexpr int vectors = 10;
  const std::vector<float> in = random_integers_as_float(4 * vectors, -100, 100, 8);
  DeviceBuffer<float> d_in(in), d_out(4 * vectors);
  cuda::launch(SDGEN_KERNEL(uint4_reverse_kernel), {.grid = 3, .block = 4}, d_in.view("in"), d_out.view("out"),
               vectors);
  const std::vector<float> out = d_out.to_host();
  for (int v = 0; v < vectors; ++v)
    for (int k = 0; k < 4; ++k) CHECK(out[std::size_t(4 * v + k)] == in[std::size_t(4 * v + 3 - k)]);
}

// Inputs where an FMA and two rounded operations differ: (1 + e)^2 = 1 + 2e + e^2, whose e^2 the
// rounded product drops, so a + b*c with a = -(1 + 2e) is exactly 0 when rounded twice and e^2 when
// fused. The _rn intrinsics must give the twice-rounded result on the GPU too.
TEST_CASE("__fadd_rn, __fsub_rn, __fmul_rn, __dadd_rn and __dmul_rn round every operation", "[emu]") {
  const float ef = std::ldexp(1.0f, -23);
  const double ed = std::ldexp(1.0, -52);
  DeviceBuffer<float> f(std::vector<float>{-(1.0f + 2.0f * ef), 1.0f + ef, 1.0f + ef}), f_out(2);
  DeviceBuffer<double> d(std::vector<double>{-(1.0 + 2.0 * ed), 1.0 + ed, 1.0 + ed}), d_out(1);
  cuda::launch(SDGEN_KERNEL(rounded_ops_kernel), {.grid = 1, .block = 1}, f.view("f"), d.view("d"),
               f_out.view("f_out"), d_out.view("d_out"));
  const std::vector<float> fr = f_out.to_host();
  CHECK(fr[0] == 0.0f);
  CHECK(fr[1] == -2.0f * (1.0f + 2.0f * ef));
  CHECK(d_out.to_host()[0] == 0.0);
}
