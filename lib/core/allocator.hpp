// Where activations come from, and the handle that gives them back.
//
// Model code allocates each output through ctx.alloc(shape, dtype) and receives a move-only
// Activation; destroying the handle releases the memory. Lifetimes are therefore exact and follow
// C++ scope (UNet skip connections simply live in a std::vector<Activation>), which is what lets the
// same forward code run three ways:
//   * HeapAllocator: one aligned host allocation per request (tests, simple CPU runs);
//   * PlanningAllocator: records (bytes, first use, last use) of every request and hands out no
//     memory; run with ShapeBackend, it measures a stage before anything is computed;
//   * Arena: one block sized from that record, serving request k at its planned offset, so the
//     denoising loop performs no allocation at all (and a GPU step can be captured once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "lib/core/tensor.hpp"

namespace sdgen {

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Memory for `bytes` bytes (64-byte aligned) and a token to give it back with.
  struct Block {
    void* data = nullptr;
    std::size_t token = 0;
  };
  virtual Block acquire(std::size_t bytes) = 0;
  virtual void release(std::size_t token) noexcept = 0;
  virtual Device device() const = 0;
  // What an acquire of `bytes` takes of the memory behind it (a GPU's allocator rounds up), for
  // planning.
  virtual std::size_t footprint(std::size_t bytes) const { return bytes; }
};

// An owned activation: a Tensor view plus the duty to release it.
class Activation {
 public:
  Activation() = default;
  Activation(Allocator& owner, const Shape& shape, DType dtype);
  ~Activation() { reset(); }
  Activation(Activation&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), token_(other.token_), view_(other.view_) {}
  Activation& operator=(Activation&& other) noexcept {
    if (this != &other) {
      reset();
      owner_ = std::exchange(other.owner_, nullptr);
      token_ = other.token_;
      view_ = other.view_;
    }
    return *this;
  }
  Activation(const Activation&) = delete;
  Activation& operator=(const Activation&) = delete;

  const Tensor& view() const { return view_; }
  operator const Tensor&() const { return view_; }  // NOLINT: an activation is used as its view
  // The same memory under another shape (same element count); the handle keeps ownership.
  Activation reshaped(const Shape& shape) &&;
  void reset() noexcept;

 private:
  Allocator* owner_ = nullptr;
  std::size_t token_ = 0;
  Tensor view_;
};

// The blocks of an allocator that allocates one block per request, by token; freed tokens are
// reused, so the table stays as long as the most blocks alive at once.
class BlockTable {
 public:
  struct Entry {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  std::size_t add(void* data, std::size_t bytes);
  // The block of `token`, which is free again.
  Entry remove(std::size_t token) noexcept;
  // The blocks still held (for an allocator destroyed before its users).
  std::vector<Entry> held() const;

 private:
  std::vector<Entry> entries_;
  std::vector<std::size_t> free_tokens_;
};

// One aligned host allocation per request. Large ones (kMappedBlockBytes and up: every activation
// of a full-size model) are mapped from the OS directly and unmapped on release, so a freed
// activation leaves the process's RSS at once. Through malloc, blocks under glibc's adaptive mmap
// threshold (up to 32 MiB) land in the heap, which fragments and is not trimmed: measured on the
// sd15 VAE decode at 512x512 in bf16, 80 MB of peak RSS.
class HeapAllocator final : public Allocator {
 public:
  Block acquire(std::size_t bytes) override;
  void release(std::size_t token) noexcept override;
  Device device() const override { return {}; }
  std::size_t bytes_in_use() const { return in_use_; }
  std::size_t peak_bytes() const { return peak_; }

  static constexpr std::size_t kMappedBlockBytes = std::size_t{1} << 20;

 private:
  BlockTable blocks_;
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
};

// The lifetime of one request, in request/release events.
struct AllocationRecord {
  std::size_t bytes = 0;
  std::size_t first_use = 0;  // event index of the acquire
  std::size_t last_use = 0;   // event index of the release (or the end, if never released)
};

// Records requests; hands out null pointers (to be used with ShapeBackend only).
class PlanningAllocator final : public Allocator {
 public:
  explicit PlanningAllocator(Device device = {}) : device_(device) {}
  Block acquire(std::size_t bytes) override;
  void release(std::size_t token) noexcept override;
  Device device() const override { return device_; }
  // All requests so far; those still held end at the current event.
  std::vector<AllocationRecord> records() const;

 private:
  Device device_;
  std::vector<AllocationRecord> records_;
  std::vector<bool> released_;
  std::size_t event_ = 0;
};

struct ArenaPlan {
  std::vector<std::size_t> offsets;  // per request, in request order
  std::size_t total_bytes = 0;
};

// Places each block at the lowest 64-byte aligned offset that does not collide with a block alive
// at the same time (largest first: the classic greedy that comes within a few percent of the
// peak live size on network-shaped lifetimes).
ArenaPlan plan_arena(const std::vector<AllocationRecord>& records);

// Serves a planned sequence of requests out of one block taken from `backing` (held until the
// arena is destroyed). Request k must have the planned size; anything else means the run diverged
// from the planning pass and is an error.
class Arena final : public Allocator {
 public:
  Arena(Allocator& backing, ArenaPlan plan, std::vector<AllocationRecord> records);
  ~Arena() override;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Block acquire(std::size_t bytes) override;
  void release(std::size_t token) noexcept override;
  Device device() const override { return backing_.device(); }
  std::size_t total_bytes() const { return plan_.total_bytes; }
  // Starts the planned sequence again (each denoising step replays the same requests).
  void rewind();

 private:
  Allocator& backing_;
  Block block_;
  ArenaPlan plan_;
  std::vector<AllocationRecord> records_;
  std::size_t next_ = 0;
};

}  // namespace sdgen
