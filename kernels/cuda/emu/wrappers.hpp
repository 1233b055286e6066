// The emulated half of kernels/cuda/device_api.cuh: tensor-core mma, ldmatrix, cp.async and the
// launch. Included by device_api.cuh after its common declarations; include that instead.
//
// mma and ldmatrix are warp collectives: each lane hands its registers (or its row address) to the
// runtime, and when the whole warp has arrived the runtime assembles the matrices from the
// fragments exactly as the PTX ISA lays them out, computes, and hands each lane its part (see
// warp_ops.cpp). A kernel that puts an element in the wrong register therefore computes a wrong
// product here, as it would on the GPU.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <source_location>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/emu/checked_memory.hpp"
#include "kernels/cuda/emu/host_runtime.hpp"
#include "kernels/cuda/emu/runtime.hpp"

namespace sdgen::cuda {

// D = A·B + D for one warp: mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32. The
// collective's variant names the operands' format, so lanes that disagree on it are a fault.
template <class T>
void mma_m16n8k16_row_col(float (&acc)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2],
                          std::source_location where = std::source_location::current()) {
  static_assert(kIsStorage<T>, "mma: T is __half or __nv_bfloat16");
  emu::LaneRegisters regs;
  std::copy(a, a + 4, regs.a.begin());
  std::copy(b, b + 2, regs.b.begin());
  std::copy(acc, acc + 4, regs.acc.begin());
  const int format = std::is_same_v<T, __half> ? emu::kMmaF16 : emu::kMmaBf16;
  emu::warp_collective(emu::WarpOp::MmaM16N8K16, format, 0xffffffffu, regs, where);
  std::copy(regs.acc.begin(), regs.acc.end(), acc);
}

namespace emu {

template <int N, class T>
void ldmatrix_collective(WarpOp op, std::uint32_t (&r)[N], SharedPtr<T> row, std::source_location where) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
  static_assert(sizeof(T) == 2, "ldmatrix moves 16-bit elements");
  LaneRegisters regs;
  // Only lanes 0..8N-1 supply row addresses; the others' are ignored, as on sm_80.
  if (lane_id() < 8 * N) {
    row.expect_in_bounds(0, 8);
    regs.row = RowAddress{reinterpret_cast<const std::byte*>(row.raw()), row.name(), row.index()};
  }
  warp_collective(op, N, 0xffffffffu, regs, where);
  std::copy(regs.a.begin(), regs.a.begin() + N, r);
}

}  // namespace emu

// ldmatrix.sync.aligned.m8n8.x{N}.shared.b16: lane l supplies row l%8 of matrix l/8.
template <int N, class T>
void ldmatrix(std::uint32_t (&r)[N], SharedPtr<T> row,
              std::source_location where = std::source_location::current()) {
  emu::ldmatrix_collective(emu::WarpOp::Ldmatrix, r, row, where);
}

// ldmatrix.sync.aligned.m8n8.x{N}.trans.shared.b16: the same rows, delivered transposed.
template <int N, class T>
void ldmatrix_trans(std::uint32_t (&r)[N], SharedPtr<T> row,
                    std::source_location where = std::source_location::current()) {
  emu::ldmatrix_collective(emu::WarpOp::LdmatrixTrans, r, row, where);
}

// cp.async.cg.shared.global [dst], [src], 16, src_bytes.
template <class T>
void cp_async_16(SharedPtr<T> dst, typename Identity<GlobalPtr<const T>>::type src, int src_bytes = 16) {
  static_assert(16 % sizeof(T) == 0, "cp.async moves 16 bytes: whole elements only");
  constexpr std::int64_t elements = 16 / std::int64_t(sizeof(T));
  dst.expect_in_bounds(0, elements);
  if (src_bytes < 0 || src_bytes > 16) emu::fault(cat("cp.async source size ", src_bytes, " is not within 0..16"));
  if (reinterpret_cast<std::uintptr_t>(dst.raw()) % 16 != 0) emu::misaligned(dst.name(), dst.index(), 16);
  const std::byte* from = nullptr;
  if (src_bytes > 0) {
    src.expect_in_bounds(0, (src_bytes + std::int64_t(sizeof(T)) - 1) / std::int64_t(sizeof(T)));
    if (reinterpret_cast<std::uintptr_t>(src.raw()) % 16 != 0) emu::misaligned(src.name(), 0, 16);
    from = reinterpret_cast<const std::byte*>(src.raw());
  }
  emu::cp_async_issue(reinterpret_cast<std::byte*>(dst.raw()), from, src_bytes, dst.name(), dst.index());
}

inline void cp_async_commit() { emu::cp_async_commit(); }

template <int N>
void cp_async_wait() {
  emu::cp_async_wait(N);
}

template <class... P, class... A>
void launch(const Kernel<P...>& kernel, const LaunchConfig& config, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  static_assert((std::is_trivially_copyable_v<P> && ...), "kernel parameters must be trivially copyable");
  // The arguments are copied, as a launch copies them: a captured launch runs after they are gone.
  emu::enqueue(config.stream, kernel.name,
               [fn = kernel.fn, name = kernel.name, config, params = std::tuple<P...>(pass_argument<P>(std::forward<A>(args))...)] {
                 emu::run_grid(name, config.grid, config.block, config.shared_bytes, [&] { std::apply(fn, params); });
               });
}

}  // namespace sdgen::cuda
