// Semantics of the warp collectives; see warp_ops.hpp. The layouts below are transcribed from the
// PTX ISA (sections "Matrix Fragments for mma.m16n8k16 with floating point type" and "ldmatrix"),
// and are the emulator's only copy of them: kernels compute their own indices, so a kernel whose
// indices disagree with these computes a wrong product.
#include "kernels/cuda/emu/warp_ops.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"

namespace sdgen::cuda::emu {
namespace {

std::string hex(unsigned mask) {
  static const char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(mask >> shift) & 0xf];
  return s;
}

// ---- shuffles

// The lane whose value `lane` receives, or `lane` itself where CUDA returns the caller's own value.
int shuffle_source(WarpOp op, int lane, int arg, int width) {
  const int segment = lane / width * width;
  switch (op) {
    case WarpOp::ShflIdx:
      return segment + (arg & (width - 1));
    case WarpOp::ShflUp:
      return lane - segment >= arg ? lane - arg : lane;
    case WarpOp::ShflDown:
      return lane - segment + arg < width ? lane + arg : lane;
    case WarpOp::ShflXor: {
      // Lanes may read earlier segments but not later ones.
      const int source = lane ^ arg;
      return source < segment + width ? source : lane;
    }
    default:
      throw Error("shuffle_source: not a shuffle");
  }
}

void shuffle(WarpOp op, int width, unsigned mask, const WarpLanes& lanes) {
  if (width < 1 || width > 32 || !std::has_single_bit(unsigned(width)))
    throw LaneFault{std::countr_zero(mask),
                    cat(warp_op_name(op, width), ": width ", width, " is not a power of two between 1 and 32")};
  for (int lane = 0; lane < 32; ++lane) {
    LaneRegisters* me = lanes[std::size_t(lane)];
    if (me == nullptr) continue;
    const int source = shuffle_source(op, lane, me->arg, width);
    if (source < 0 || source > 31 || lanes[std::size_t(source)] == nullptr)
      throw LaneFault{lane, cat(warp_op_name(op, width), " reads lane ", source, ", which is not in the mask ",
                                hex(mask), " (its value is undefined on the GPU)")};
    me->result = lanes[std::size_t(source)]->value;
  }
}

// ---- votes and reductions

void vote(WarpOp op, const WarpLanes& lanes) {
  std::uint64_t ballot = 0;
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[std::size_t(lane)] != nullptr && lanes[std::size_t(lane)]->value != 0) ballot |= 1u << lane;
  std::uint64_t mask = 0;
  for (int lane = 0; lane < 32; ++lane)
    if (lanes[std::size_t(lane)] != nullptr) mask |= 1u << lane;
  const std::uint64_t result = op == WarpOp::Ballot ? ballot : op == WarpOp::Any ? (ballot != 0) : (ballot == mask);
  for (LaneRegisters* l : lanes)
    if (l != nullptr) l->result = result;
}

template <class T>
void reduce(WarpOp op, const WarpLanes& lanes) {
  bool first = true;
  T acc = 0;
  for (LaneRegisters* l : lanes) {
    if (l == nullptr) continue;
    const auto v = T(std::uint32_t(l->value));
    if (first) {
      acc = v;
      first = false;
    } else if (op == WarpOp::ReduceAddSigned || op == WarpOp::ReduceAddUnsigned) {
      acc = T(std::uint32_t(acc) + std::uint32_t(v));  // wraps, as the 32-bit hardware adder does
    } else if (op == WarpOp::ReduceMinSigned || op == WarpOp::ReduceMinUnsigned) {
      acc = v < acc ? v : acc;
    } else {
      acc = acc < v ? v : acc;
    }
  }
  for (LaneRegisters* l : lanes)
    if (l != nullptr) l->result = std::uint32_t(acc);
}

// ---- mma.m16n8k16.row.col, f16 or bf16 inputs (the variant), f32 accumulators

float element(std::uint32_t reg, int i, int format) {
  const auto bits = std::uint16_t((i & 1) ? reg >> 16 : reg & 0xffffu);
  return format == kMmaBf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

void mma_m16n8k16(int format, const WarpLanes& lanes) {
  float a[16][16];
  float b[16][8];
  float c[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const LaneRegisters& l = *lanes[std::size_t(lane)];
    const int group = lane >> 2;                   // groupID
    const int in_group = lane % 4;                 // threadID_in_group
    for (int i = 0; i < 8; ++i) {                  // a0..a7, two per register
      const int row = group + ((i >> 1) & 1) * 8;  // + 8 for a2, a3, a6, a7
      const int col = in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      a[row][col] = element(l.a[std::size_t(i / 2)], i, format);
    }
    for (int i = 0; i < 4; ++i) {  // b0..b3
      const int k = in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      b[k][group] = element(l.b[std::size_t(i / 2)], i, format);
    }
    for (int i = 0; i < 4; ++i)  // c0..c3
      c[group + (i >= 2 ? 8 : 0)][in_group * 2 + (i & 1)] = l.acc[std::size_t(i)];
  }
  // Products of fp16 or bf16 values are exact in double and the sum is far more precise than fp32, so D
  // is A·B + C rounded (in effect) once to fp32. The tensor core's own rounding of the sum is not
  // specified by PTX and is not modelled; tests allow for it.
  float d[16][8];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      double sum = c[m][n];
      for (int k = 0; k < 16; ++k) sum += double(a[m][k]) * double(b[k][n]);
      d[m][n] = float(sum);
    }
  for (int lane = 0; lane < 32; ++lane) {
    LaneRegisters& l = *lanes[std::size_t(lane)];
    for (int i = 0; i < 4; ++i) l.acc[std::size_t(i)] = d[(lane >> 2) + (i >= 2 ? 8 : 0)][(lane % 4) * 2 + (i & 1)];
  }
}

// ---- ldmatrix.m8n8.b16

void ldmatrix(WarpOp op, int matrices, const WarpLanes& lanes) {
  const bool transposed = op == WarpOp::LdmatrixTrans;
  // m[j][r][c]: element (r, c) of matrix j, from the 16 bytes lane 8j + r read.
  std::uint16_t m[4][8][8];
  for (int j = 0; j < matrices; ++j)
    for (int r = 0; r < 8; ++r) std::memcpy(m[j][r], lanes[std::size_t(8 * j + r)]->row_data.data(), 16);
  for (int lane = 0; lane < 32; ++lane) {
    LaneRegisters& l = *lanes[std::size_t(lane)];
    const int row = lane / 4;
    const int col = 2 * (lane % 4);
    for (int j = 0; j < matrices; ++j) {
      const std::uint16_t lo = transposed ? m[j][col][row] : m[j][row][col];
      const std::uint16_t hi = transposed ? m[j][col + 1][row] : m[j][row][col + 1];
      l.a[std::size_t(j)] = std::uint32_t(lo) | (std::uint32_t(hi) << 16);
    }
  }
}

}  // namespace

void complete_warp_op(WarpOp op, int variant, unsigned mask, const WarpLanes& lanes) {
  switch (op) {
    case WarpOp::ShflIdx:
    case WarpOp::ShflUp:
    case WarpOp::ShflDown:
    case WarpOp::ShflXor:
      return shuffle(op, variant, mask, lanes);
    case WarpOp::Ballot:
    case WarpOp::Any:
    case WarpOp::All:
      return vote(op, lanes);
    case WarpOp::ReduceAddSigned:
    case WarpOp::ReduceMinSigned:
    case WarpOp::ReduceMaxSigned:
      return reduce<std::int32_t>(op, lanes);
    case WarpOp::ReduceAddUnsigned:
    case WarpOp::ReduceMinUnsigned:
    case WarpOp::ReduceMaxUnsigned:
      return reduce<std::uint32_t>(op, lanes);
    case WarpOp::Syncwarp:
      return;
    case WarpOp::MmaM16N8K16:
      return mma_m16n8k16(variant, lanes);
    case WarpOp::Ldmatrix:
    case WarpOp::LdmatrixTrans:
      return ldmatrix(op, variant, lanes);
  }
}

std::string warp_op_name(WarpOp op, int variant) {
  const std::string width = variant != 32 ? cat(" (width ", variant, ")") : std::string();
  switch (op) {
    case WarpOp::ShflIdx:
      return "__shfl_sync" + width;
    case WarpOp::ShflUp:
      return "__shfl_up_sync" + width;
    case WarpOp::ShflDown:
      return "__shfl_down_sync" + width;
    case WarpOp::ShflXor:
      return "__shfl_xor_sync" + width;
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::Any:
      return "__any_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::ReduceAddSigned:
    case WarpOp::ReduceAddUnsigned:
      return "__reduce_add_sync";
    case WarpOp::ReduceMinSigned:
    case WarpOp::ReduceMinUnsigned:
      return "__reduce_min_sync";
    case WarpOp::ReduceMaxSigned:
    case WarpOp::ReduceMaxUnsigned:
      return "__reduce_max_sync";
    case WarpOp::Syncwarp:
      return "__syncwarp";
    case WarpOp::MmaM16N8K16:
      return variant == kMmaBf16 ? "mma.m16n8k16 (bf16)" : "mma.m16n8k16 (f16)";
    case WarpOp::Ldmatrix:
      return cat("ldmatrix.x", variant);
    case WarpOp::LdmatrixTrans:
      return cat("ldmatrix.x", variant, ".trans");
  }
  return "warp operation";
}

bool requires_same_site(WarpOp op) {
  return op == WarpOp::MmaM16N8K16 || op == WarpOp::Ldmatrix || op == WarpOp::LdmatrixTrans;
}

}  // namespace sdgen::cuda::emu
