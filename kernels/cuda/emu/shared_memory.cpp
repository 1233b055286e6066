// Shared-memory storage and the per-byte race/initialisation shadow; the model is described in
// shared_memory.hpp.
#include "kernels/cuda/emu/shared_memory.hpp"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

namespace sdgen::cuda::emu {
namespace {

// Static arrays start on 16 bytes, as `__align__(16)` places them on the GPU, so vector and
// cp.async accesses that are aligned there are aligned here.
constexpr std::size_t kArrayAlignment = 16;
// The arena itself is more aligned than any access needs, so alignment checks relative to the
// arena and to the address agree.
constexpr std::size_t kArenaAlignment = 128;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::byte* allocate_arena() {
  void* p = std::aligned_alloc(kArenaAlignment, round_up(kMaxSharedBytesPerBlock, kArenaAlignment));
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

}  // namespace

SharedMemory::SharedMemory() : arena_(allocate_arena(), [](std::byte* p) { std::free(p); }) {}

void SharedMemory::begin_launch(std::size_t dynamic_bytes) {
  dynamic_bytes_ = dynamic_bytes;
  shadow_.assign(dynamic_bytes, ShadowByte{});
}

void SharedMemory::begin_block(std::uint32_t epoch) {
  block_first_epoch_ = epoch;
  statics_.clear();
  used_bytes_ = round_up(dynamic_bytes_, kArrayAlignment);
  // Copies a previous block never waited for do not land in this one.
  for (ShadowByte& s : shadow_) s.copy_thread = -1;
}

std::byte* SharedMemory::static_array(const SharedSite& site) {
  for (const StaticArray& a : statics_)
    if (a.site == &site) return arena_.get() + a.offset;
  const std::size_t offset = used_bytes_;
  if (offset + site.bytes > kMaxSharedBytesPerBlock)
    fault(cat("shared array ", site.name, " (", site.bytes, " bytes) takes the block's shared memory to ",
              offset + site.bytes, " bytes, over the ", kMaxSharedBytesPerBlock,
              " an sm_80 block can have (dynamic shared memory included)"));
  statics_.push_back(StaticArray{&site, offset});
  used_bytes_ = round_up(offset + site.bytes, kArrayAlignment);
  if (shadow_.size() < used_bytes_) shadow_.resize(used_bytes_);
  return arena_.get() + offset;
}

std::int64_t SharedMemory::offset_of(const void* p) const {
  const auto* b = static_cast<const std::byte*>(p);
  if (b < arena_.get() || b >= arena_.get() + kMaxSharedBytesPerBlock) return -1;
  return b - arena_.get();
}

AccessReport SharedMemory::check(Access kind, std::size_t byte, const ShadowByte& s, const Accessor& who,
                                 std::uint32_t epoch) const {
  if (s.copy_thread >= 0) return {Problem::CopyInFlight, byte, s.copy_thread, Access::Write};
  if (kind != Access::Write && s.write_epoch < block_first_epoch_) return {Problem::Unwritten, byte};

  // The last write, unless both it and this access are atomics (which never race each other).
  const bool both_atomic = kind == Access::Atomic && s.write_kind != kPlain;
  if (s.write_epoch == epoch && !both_atomic) {
    const bool ordered = s.write_kind != kAtomicSeveral &&
                         (s.writer == who.thread || (s.writer / 32 == who.warp && who.warp_epoch > s.write_warp_epoch));
    if (!ordered) return {Problem::Race, byte, s.writer, s.write_kind == kPlain ? Access::Write : Access::Atomic};
  }

  // Reads since the barrier conflict with a write or an atomic from another thread.
  if (kind != Access::Read && s.read_epoch == epoch) {
    if (s.read_warp == kSeveralWarps) {
      const int other = s.first_reader / 32 != who.warp ? s.first_reader : s.other_warp_reader;
      return {Problem::Race, byte, other, Access::Read};
    }
    const std::uint32_t me = 1u << who.lane;
    const bool only_me = s.read_warp == who.warp && s.read_lanes == me;
    const bool ordered = s.read_warp == who.warp && who.warp_epoch > s.read_warp_epoch;
    if (!only_me && !ordered) {
      const std::uint32_t others = s.read_warp == who.warp ? s.read_lanes & ~me : s.read_lanes;
      return {Problem::Race, byte, s.read_warp * 32 + std::countr_zero(others), Access::Read};
    }
  }
  return {};
}

void SharedMemory::record(Access kind, ShadowByte& s, const Accessor& who, std::uint32_t epoch) {
  const auto thread = std::int16_t(who.thread);
  const auto warp = std::int16_t(who.warp);
  switch (kind) {
    case Access::Read:
      if (s.read_epoch != epoch || (s.read_warp == warp && who.warp_epoch > s.read_warp_epoch)) {
        // The first read since the barrier, or since this warp's last __syncwarp: earlier reads
        // by this warp are ordered before anything its lanes do from now on.
        s.read_epoch = epoch;
        s.read_warp = warp;
        s.read_lanes = 1u << who.lane;
        s.read_warp_epoch = who.warp_epoch;
        s.first_reader = thread;
      } else if (s.read_warp == warp) {
        s.read_lanes |= 1u << who.lane;
      } else if (s.read_warp != kSeveralWarps) {
        s.read_warp = kSeveralWarps;
        s.other_warp_reader = thread;
      }
      return;
    case Access::Write:
      s.write_kind = kPlain;
      break;
    case Access::Atomic:
      s.write_kind =
          (s.write_epoch == epoch && s.write_kind != kPlain && s.writer != thread) ? kAtomicSeveral : kAtomic;
      break;
  }
  s.write_epoch = epoch;
  s.writer = thread;
  s.write_warp_epoch = who.warp_epoch;
}

AccessReport SharedMemory::access(Access kind, std::size_t offset, std::size_t bytes, const Accessor& who,
                                  std::uint32_t epoch, AccessMode mode) {
  for (std::size_t b = offset; b < offset + bytes; ++b) {
    const AccessReport r = check(kind, b, shadow_[b], who, epoch);
    if (r.problem != Problem::None) return r;
  }
  if (mode == AccessMode::CheckAndRecord)
    for (std::size_t b = offset; b < offset + bytes; ++b) record(kind, shadow_[b], who, epoch);
  return {};
}

void SharedMemory::copy_issued(std::size_t offset, std::size_t bytes, int thread) {
  for (std::size_t b = offset; b < offset + bytes; ++b) shadow_[b].copy_thread = std::int16_t(thread);
}

void SharedMemory::copy_landed(std::size_t offset, std::size_t bytes) {
  for (std::size_t b = offset; b < offset + bytes; ++b) shadow_[b].copy_thread = -1;
}

}  // namespace sdgen::cuda::emu
