// The emulator's runtime: what the emulated CUDA headers call into.
//
// A launch runs its blocks one after another on the calling host thread. Inside a block every CUDA
// thread is a fiber (a ucontext with its own 64 KiB stack); a fiber runs until it must wait for
// other threads (a __syncthreads(), a warp-synchronous instruction) or finishes, and the scheduler
// then resumes the next runnable fiber in thread order. Nothing is preempted, so the schedule, and
// with it every result, is deterministic, and a read-modify-write (an atomic) is atomic for free.
//
// Everything a kernel does that involves other threads comes through here, which is what lets the
// runtime check it:
//   - barriers: a __syncthreads() must be reached by every thread of the block at the same call
//     site; a thread that exits or waits elsewhere is reported with both sites;
//   - warp collectives (shuffles, votes, reductions, __syncwarp, mma, ldmatrix): the lanes named in
//     the mask must all arrive at the same operation with the same mask; the last to arrive computes
//     the result for all of them, so the operation happens in lockstep, as on the GPU;
//   - shared memory: every access goes through shared_access(), which keeps, for each byte, who
//     last wrote it and who read it since the last barrier, and reports a read of memory no thread
//     of the block wrote, a race (two threads, at least one writing, with no barrier between), and
//     an access to memory that a cp.async has not yet delivered.
// A defect is thrown as a KernelFault whose message names the kernel, the block and the thread.
//
// This header is the emulator's internal interface; kernels use kernels/cuda/device_api.cuh.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <string>

#include "kernels/cuda/emu/cuda_types.hpp"
#include "lib/core/error.hpp"

namespace sdgen::cuda::emu {

// A defect found in a running kernel (out-of-bounds access, race, barrier divergence, ...). The
// message starts with "kernel 'name', block (x,y,z), thread (x,y,z): ".
class KernelFault : public BackendError {
 public:
  using BackendError::BackendError;
};

// The emulator runs every launch synchronously; a stream is accepted and ignored.
struct StreamTag;
using Stream = StreamTag*;

// Reports a defect of the calling CUDA thread: throws KernelFault naming the kernel, block and
// thread. Outside a kernel (host code misusing a view) it throws BackendError instead.
[[noreturn]] void fault(const std::string& what);

// The calling thread's lane within its warp.
int lane_id();

// ---- launch

// Runs `thread_body` once per CUDA thread of every block; throws what the first defect raises.
// The launch configuration is validated against the limits of the oldest GPU we build for (sm_80),
// as cudaLaunchKernel would, and refused with a BackendError.
void run_grid(const char* kernel_name, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
              const std::function<void()>& thread_body);

// ---- barriers

void syncthreads(std::source_location where);

// ---- shared memory

enum class Access : std::uint8_t { Read, Write, Atomic };

// One `SDGEN_SHARED` declaration: its address is the key that gives every thread of a block the
// same storage, and every block its own.
struct SharedSite {
  const char* name;
  std::size_t bytes;
};

std::byte* static_shared(const SharedSite& site);

struct SharedRegion {
  std::byte* data;
  std::size_t bytes;
};
SharedRegion dynamic_shared();

// Checks (and records) an access of `bytes` bytes at `p` by the calling thread; `name[index]` is
// how messages refer to it.
void shared_access(Access kind, const void* p, std::size_t bytes, const char* name, std::int64_t index);

// ---- warp collectives

enum class WarpOp : std::uint8_t {
  ShflIdx,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  Any,
  All,
  ReduceAddSigned,
  ReduceMinSigned,
  ReduceMaxSigned,
  ReduceAddUnsigned,
  ReduceMinUnsigned,
  ReduceMaxUnsigned,
  Syncwarp,
  MmaM16N8K16,
  Ldmatrix,
  LdmatrixTrans,
};

// The variant of WarpOp::MmaM16N8K16: the format of its A and B operands.
inline constexpr int kMmaF16 = 0;
inline constexpr int kMmaBf16 = 1;

// The shared-memory row one lane hands to ldmatrix, with what messages call it.
struct RowAddress {
  const std::byte* p = nullptr;
  const char* name = "";
  std::int64_t index = 0;
};

// What one lane brings to a warp collective and what it gets back: the operands of every kind of
// collective, only the fields of the operation at hand being used.
struct LaneRegisters {
  std::uint64_t value = 0;               // in: shuffle/vote/reduce operand (bits)
  int arg = 0;                           // in: shuffle source lane, delta or lane mask
  std::array<std::uint32_t, 4> a{};      // in: mma A fragment; out: ldmatrix registers
  std::array<std::uint32_t, 2> b{};      // in: mma B fragment
  std::array<float, 4> acc{};            // in: mma C; out: mma D
  RowAddress row{};                      // in: ldmatrix row address
  std::array<std::byte, 16> row_data{};  // the 16 bytes at `row`, read by the runtime
  std::uint64_t result = 0;              // out: shuffle/vote/reduce result
};

// Waits until every lane of `mask` has arrived at the same operation, computes it, and returns
// with `regs` holding the calling lane's outputs. `variant` distinguishes forms that must match
// across lanes (the shuffle width, the ldmatrix matrix count).
void warp_collective(WarpOp op, int variant, unsigned mask, LaneRegisters& regs, std::source_location where);

// ---- cp.async (sm_80's asynchronous global->shared copy)

// Starts a copy of `src_bytes` bytes (0..16) to `dst`, zero-filling the rest of the 16. The bytes
// land in shared memory when the issuing thread waits for the copy's group, not before.
void cp_async_issue(std::byte* dst, const std::byte* src, int src_bytes, const char* dst_name, std::int64_t dst_index);
void cp_async_commit();
// Completes every committed group except the newest `groups_left_pending`.
void cp_async_wait(int groups_left_pending);

}  // namespace sdgen::cuda::emu
