// The CUDA language surface a kernel source uses, provided to the host compiler.
//
// With these definitions a kernel written for nvcc compiles unchanged with g++:
//   - the function-space keywords (__global__, __device__, ...) expand to nothing or `inline`;
//   - threadIdx/blockIdx/blockDim/gridDim are thread_local variables that the scheduler sets
//     before it resumes a fiber, so each emulated thread sees its own;
//   - __syncthreads(), __syncwarp() and the warp intrinsics call the runtime, which makes the
//     lanes meet and checks that they do (see runtime.hpp); each takes the caller's source
//     location as a defaulted last argument, so messages say which barrier or shuffle was meant;
//   - atomics on plain pointers (global memory reached through GlobalPtr::operator[]) are plain
//     read-modify-writes: fibers are never preempted, so nothing can interleave.
//
// `__shared__` is deliberately NOT defined: a raw shared array could not be bounds- or
// race-checked, so kernels declare shared memory with SDGEN_SHARED / SDGEN_DYNAMIC_SHARED from
// kernels/cuda/device_api.cuh, and a raw `__shared__` fails to compile here instead of going
// unchecked.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "kernels/cuda/emu/cuda_types.hpp"
#include "kernels/cuda/emu/runtime.hpp"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

inline constexpr int warpSize = 32;

inline thread_local uint3 threadIdx{};
inline thread_local uint3 blockIdx{};
inline thread_local dim3 blockDim{};
inline thread_local dim3 gridDim{};

// ---- barriers

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  sdgen::cuda::emu::syncthreads(where);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location where = std::source_location::current()) {
  sdgen::cuda::emu::LaneRegisters regs;
  sdgen::cuda::emu::warp_collective(sdgen::cuda::emu::WarpOp::Syncwarp, 0, mask, regs, where);
}

// ---- arithmetic rounded once per operation

// CUDA's _rn intrinsics: one IEEE operation, rounded to nearest, which nvcc never contracts into an
// FMA. Kernels use them where a result must equal a host computation bit for bit. Here they are the
// plain operators, which is the same thing as long as the emulation build targets no FMA
// instructions (it is compiled without -march, as is the host code it is compared with).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }

// ---- shuffles, votes and warp reductions

namespace sdgen::cuda::emu {

template <class T>
T shuffle(WarpOp op, unsigned mask, T value, int arg, int width, std::source_location where) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(std::uint64_t),
                "CUDA shuffles move values of at most 64 bits");
  LaneRegisters regs;
  std::memcpy(&regs.value, &value, sizeof(T));
  regs.arg = arg;
  warp_collective(op, width, mask, regs, where);
  T out;
  std::memcpy(&out, &regs.result, sizeof(T));
  return out;
}

inline std::uint64_t vote(WarpOp op, unsigned mask, std::uint64_t operand, std::source_location where) {
  LaneRegisters regs;
  regs.value = operand;
  warp_collective(op, 0, mask, regs, where);
  return regs.result;
}

}  // namespace sdgen::cuda::emu

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
              std::source_location where = std::source_location::current()) {
  return sdgen::cuda::emu::shuffle(sdgen::cuda::emu::WarpOp::ShflIdx, mask, var, src_lane, width, where);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 std::source_location where = std::source_location::current()) {
  return sdgen::cuda::emu::shuffle(sdgen::cuda::emu::WarpOp::ShflUp, mask, var, int(delta), width, where);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   std::source_location where = std::source_location::current()) {
  return sdgen::cuda::emu::shuffle(sdgen::cuda::emu::WarpOp::ShflDown, mask, var, int(delta), width, where);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  std::source_location where = std::source_location::current()) {
  return sdgen::cuda::emu::shuffle(sdgen::cuda::emu::WarpOp::ShflXor, mask, var, lane_mask, width, where);
}

inline unsigned __ballot_sync(unsigned mask, int predicate,
                              std::source_location where = std::source_location::current()) {
  return unsigned(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::Ballot, mask, predicate != 0, where));
}
inline int __any_sync(unsigned mask, int predicate, std::source_location where = std::source_location::current()) {
  return int(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::Any, mask, predicate != 0, where));
}
inline int __all_sync(unsigned mask, int predicate, std::source_location where = std::source_location::current()) {
  return int(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::All, mask, predicate != 0, where));
}

// sm_80's integer warp reductions. The operand travels as its 32-bit pattern; the runtime knows
// from the operation whether to read it signed or unsigned.
inline unsigned __reduce_add_sync(unsigned mask, unsigned value,
                                  std::source_location where = std::source_location::current()) {
  return unsigned(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceAddUnsigned, mask, value, where));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value,
                                  std::source_location where = std::source_location::current()) {
  return unsigned(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceMinUnsigned, mask, value, where));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value,
                                  std::source_location where = std::source_location::current()) {
  return unsigned(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceMaxUnsigned, mask, value, where));
}
inline int __reduce_add_sync(unsigned mask, int value, std::source_location where = std::source_location::current()) {
  return int(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceAddSigned, mask, unsigned(value), where));
}
inline int __reduce_min_sync(unsigned mask, int value, std::source_location where = std::source_location::current()) {
  return int(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceMinSigned, mask, unsigned(value), where));
}
inline int __reduce_max_sync(unsigned mask, int value, std::source_location where = std::source_location::current()) {
  return int(sdgen::cuda::emu::vote(sdgen::cuda::emu::WarpOp::ReduceMaxSigned, mask, unsigned(value), where));
}

// ---- atomics on plain (global) pointers; shared memory has its own through SharedPtr

namespace sdgen::cuda::emu {

// Applies `update` to *p and returns the old value: atomic, because no fiber can run in between.
template <class T, class Update>
T atomic_update(T* p, Update update) {
  const T old = *p;
  *p = update(old);
  return old;
}

}  // namespace sdgen::cuda::emu

// One overload per type CUDA provides for the operation; `old` is the value before the update.
#define SDGEN_EMU_ATOMIC(name, T, expr)                                                             \
  inline T name(T* address, T val) {                                                                \
    return sdgen::cuda::emu::atomic_update(address, [val](T old) { return static_cast<T>(expr); }); \
  }
SDGEN_EMU_ATOMIC(atomicAdd, int, old + val)
SDGEN_EMU_ATOMIC(atomicAdd, unsigned, old + val)
SDGEN_EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
SDGEN_EMU_ATOMIC(atomicAdd, float, old + val)
SDGEN_EMU_ATOMIC(atomicSub, int, old - val)
SDGEN_EMU_ATOMIC(atomicSub, unsigned, old - val)
SDGEN_EMU_ATOMIC(atomicMax, int, old < val ? val : old)
SDGEN_EMU_ATOMIC(atomicMax, unsigned, old < val ? val : old)
SDGEN_EMU_ATOMIC(atomicMin, int, val < old ? val : old)
SDGEN_EMU_ATOMIC(atomicMin, unsigned, val < old ? val : old)
#undef SDGEN_EMU_ATOMIC

#define SDGEN_EMU_ATOMIC_EXCH_CAS(T)                                                                    \
  inline T atomicExch(T* address, T val) {                                                              \
    return sdgen::cuda::emu::atomic_update(address, [val](T) { return val; });                          \
  }                                                                                                     \
  inline T atomicCAS(T* address, T compare, T val) {                                                    \
    return sdgen::cuda::emu::atomic_update(address, [=](T old) { return old == compare ? val : old; }); \
  }
SDGEN_EMU_ATOMIC_EXCH_CAS(int)
SDGEN_EMU_ATOMIC_EXCH_CAS(unsigned)
SDGEN_EMU_ATOMIC_EXCH_CAS(unsigned long long)
#undef SDGEN_EMU_ATOMIC_EXCH_CAS
