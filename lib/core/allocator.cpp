#include "lib/core/allocator.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

#include <sys/mman.h>

namespace sdgen {

namespace {
constexpr std::size_t kAlignment = 64;
std::size_t round_up(std::size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }
}  // namespace

Activation::Activation(Allocator& owner, const Shape& shape, DType dtype) {
  const auto bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
  const auto block = owner.acquire(bytes);
  owner_ = &owner;
  token_ = block.token;
  view_ = Tensor::contiguous(block.data, dtype, shape, owner.device());
}

Activation Activation::reshaped(const Shape& shape) && {
  Activation out = std::move(*this);
  out.view_ = out.view_.reshape(shape);
  return out;
}

void Activation::reset() noexcept {
  if (owner_ != nullptr) owner_->release(token_);
  owner_ = nullptr;
}

namespace {

void* allocate_host(std::size_t bytes) {
  if (bytes >= HeapAllocator::kMappedBlockBytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);  // page aligned
    return p == MAP_FAILED ? nullptr : p;
  }
  return std::aligned_alloc(kAlignment, round_up(std::max<std::size_t>(bytes, 1)));
}

void free_host(void* p, std::size_t bytes) noexcept {
  if (bytes >= HeapAllocator::kMappedBlockBytes)
    munmap(p, bytes);
  else
    std::free(p);
}

}  // namespace

std::size_t BlockTable::add(void* data, std::size_t bytes) {
  if (free_tokens_.empty()) {
    entries_.push_back({data, bytes});
    return entries_.size() - 1;
  }
  const std::size_t token = free_tokens_.back();
  free_tokens_.pop_back();
  entries_[token] = {data, bytes};
  return token;
}

BlockTable::Entry BlockTable::remove(std::size_t token) noexcept {
  const Entry e = std::exchange(entries_[token], Entry{});
  free_tokens_.push_back(token);
  return e;
}

std::vector<BlockTable::Entry> BlockTable::held() const {
  std::vector<Entry> result;
  for (const Entry& e : entries_)
    if (e.data) result.push_back(e);
  return result;
}

Allocator::Block HeapAllocator::acquire(std::size_t bytes) {
  void* p = allocate_host(bytes);
  if (p == nullptr) throw std::bad_alloc();
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return {p, blocks_.add(p, bytes)};
}

void HeapAllocator::release(std::size_t token) noexcept {
  const auto block = blocks_.remove(token);
  free_host(block.data, block.bytes);
  in_use_ -= block.bytes;
}

Allocator::Block PlanningAllocator::acquire(std::size_t bytes) {
  records_.push_back({.bytes = bytes, .first_use = event_++, .last_use = 0});
  released_.push_back(false);
  return {nullptr, records_.size() - 1};
}

void PlanningAllocator::release(std::size_t token) noexcept {
  records_[token].last_use = event_++;
  released_[token] = true;
}

std::vector<AllocationRecord> PlanningAllocator::records() const {
  auto out = records_;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (!released_[i]) out[i].last_use = event_;
  return out;
}

ArenaPlan plan_arena(const std::vector<AllocationRecord>& records) {
  std::vector<std::size_t> order(records.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return records[a].bytes > records[b].bytes; });
  ArenaPlan plan{.offsets = std::vector<std::size_t>(records.size(), 0)};
  std::vector<std::size_t> placed;
  for (std::size_t i : order) {
    const auto& r = records[i];
    // Blocks alive at the same time as r, sorted by offset; take the first gap that fits.
    std::vector<std::pair<std::size_t, std::size_t>> busy;
    for (std::size_t j : placed) {
      const auto& o = records[j];
      if (o.first_use < r.last_use && r.first_use < o.last_use)
        busy.emplace_back(plan.offsets[j], plan.offsets[j] + round_up(o.bytes));
    }
    std::sort(busy.begin(), busy.end());
    std::size_t offset = 0;
    for (const auto& [begin, end] : busy) {
      if (offset + round_up(r.bytes) <= begin) break;
      offset = std::max(offset, end);
    }
    plan.offsets[i] = offset;
    plan.total_bytes = std::max(plan.total_bytes, offset + round_up(r.bytes));
    placed.push_back(i);
  }
  return plan;
}

Arena::Arena(Allocator& backing, ArenaPlan plan, std::vector<AllocationRecord> records)
    : backing_(backing), block_(backing.acquire(plan.total_bytes)), plan_(std::move(plan)), records_(std::move(records)) {}

Arena::~Arena() { backing_.release(block_.token); }

Allocator::Block Arena::acquire(std::size_t bytes) {
  if (next_ >= records_.size() || records_[next_].bytes != bytes)
    throw Error(cat("activation arena: request ", next_, " of ", bytes, " bytes does not match the plan (",
                    next_ < records_.size() ? cat(records_[next_].bytes, " bytes") : std::string("no more requests"),
                    "); the computation differs from its planning pass"));
  const std::size_t k = next_++;
  return {static_cast<std::byte*>(block_.data) + plan_.offsets[k], k};
}

void Arena::release(std::size_t) noexcept {}

void Arena::rewind() { next_ = 0; }

}  // namespace sdgen
