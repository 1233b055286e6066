// One block's shared memory in the emulator: the storage, where each SDGEN_SHARED array lives, and
// a shadow record per byte that decides whether an access is a defect.
//
// The happens-before model is the CUDA one, reduced to what kernels rely on:
//   - __syncthreads() orders everything before it, in every thread, before everything after it.
//     Barriers are counted by a block epoch; two accesses in different epochs never race.
//   - __syncwarp() with the full mask orders the accesses of that warp's lanes the same way,
//     counted by a per-warp epoch. (A __syncwarp over part of a warp is not counted: such code is
//     reported conservatively as racing.)
//   - Nothing else orders: shuffles and ballots do not, and neither does program order across
//     threads. Atomics do not race with each other, but do with plain accesses.
// Two accesses race when they are from different threads, unordered, and one of them writes. Per
// byte the shadow keeps the last write (epoch, writer, kind) and the reads since (a reader lane set
// within one warp, or "several warps"), which is enough to find a conflicting pair whenever one
// exists, and to name one of the two threads.
//
// Reading a byte that no thread of the block has written is also reported: shared memory starts
// undefined on the GPU, so such a read is a missing store or a missing barrier. And a byte that a
// cp.async is still delivering may not be touched by anyone until the issuing thread has waited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/emu/runtime.hpp"

namespace sdgen::cuda::emu {

// sm_80's largest shared allocation per block (163 KiB, with the opt-in attribute): the oldest
// GPU we build for, so a kernel that fits here fits every target.
inline constexpr std::size_t kMaxSharedBytesPerBlock = 166912;

// Who is accessing: the thread's linear index, its warp and lane, and its warp's __syncwarp epoch.
struct Accessor {
  int thread;
  int warp;
  int lane;
  std::uint32_t warp_epoch;
};

enum class Problem : std::uint8_t { None, Unwritten, Race, CopyInFlight };

// Whether a clean access is remembered (a real access) or only checked (the moment a cp.async is
// issued: its bytes land later, when the issuing thread waits).
enum class AccessMode : std::uint8_t { CheckAndRecord, CheckOnly };

// What is wrong with an access: at which byte (offset in the block's shared memory), and the other
// thread involved with what it did.
struct AccessReport {
  Problem problem = Problem::None;
  std::size_t byte = 0;
  int other_thread = -1;
  Access other_access = Access::Read;
};

class SharedMemory {
 public:
  SharedMemory();

  // Per launch: the dynamic part sits at offset 0, the static arrays after it.
  void begin_launch(std::size_t dynamic_bytes);
  // Per block: forgets the static layout, and makes every byte "unwritten" from `epoch` on.
  void begin_block(std::uint32_t epoch);

  std::byte* static_array(const SharedSite& site);
  SharedRegion dynamic_region() { return {arena_.get(), dynamic_bytes_}; }

  // The offset of `p` in the block's shared memory, or -1 when `p` is not shared memory.
  std::int64_t offset_of(const void* p) const;

  // Checks an access of [offset, offset + bytes) made in block epoch `epoch`.
  AccessReport access(Access kind, std::size_t offset, std::size_t bytes, const Accessor& who, std::uint32_t epoch,
                      AccessMode mode);
  // A cp.async into [offset, offset + bytes) issued by `thread` is in flight until copy_landed();
  // the caller has checked the range with access() first.
  void copy_issued(std::size_t offset, std::size_t bytes, int thread);
  void copy_landed(std::size_t offset, std::size_t bytes);

 private:
  struct StaticArray {
    const SharedSite* site;
    std::size_t offset;
  };

  // 28 bytes per shared byte: at most 4.7 MB for the largest block; sized to the bytes in use.
  struct ShadowByte {
    std::uint32_t write_epoch = 0;  // 0: never written in this launch
    std::uint32_t write_warp_epoch = 0;
    std::uint32_t read_epoch = 0;
    std::uint32_t read_warp_epoch = 0;
    std::uint32_t read_lanes = 0;  // lanes of read_warp that read in read_epoch
    std::int16_t writer = -1;
    std::int16_t read_warp = -1;  // kSeveralWarps when threads of more than one warp read
    std::int16_t first_reader = -1;
    std::int16_t other_warp_reader = -1;  // a reader outside first_reader's warp
    std::int16_t copy_thread = -1;        // the thread whose cp.async is delivering this byte
    std::uint8_t write_kind = 0;          // WriteKind
  };
  enum WriteKind : std::uint8_t { kPlain, kAtomic, kAtomicSeveral };
  static constexpr std::int16_t kSeveralWarps = -2;

  AccessReport check(Access kind, std::size_t byte, const ShadowByte& s, const Accessor& who,
                     std::uint32_t epoch) const;
  static void record(Access kind, ShadowByte& s, const Accessor& who, std::uint32_t epoch);

  std::unique_ptr<std::byte[], void (*)(std::byte*)> arena_;
  std::size_t dynamic_bytes_ = 0;
  std::size_t used_bytes_ = 0;
  std::uint32_t block_first_epoch_ = 0;
  std::vector<StaticArray> statics_;
  std::vector<ShadowByte> shadow_;
};

}  // namespace sdgen::cuda::emu
