// The activation memory: handles release exactly once, the planner never lets two blocks that are
// alive at the same time overlap, and the arena replays the planned sequence and refuses another.
#include <catch2/catch.hpp>
#include <random>

#include "lib/core/allocator.hpp"

using namespace sdgen;

TEST_CASE("activations release their memory when the handle dies", "[allocator]") {
  HeapAllocator heap;
  {
    Activation a(heap, Shape{2, 3}, DType::F32);
    CHECK(heap.bytes_in_use() == 24);
    Activation b = std::move(a);  // moved-from handles release nothing
    CHECK(heap.bytes_in_use() == 24);
    Activation c(heap, Shape{4}, DType::F16);
    CHECK(heap.bytes_in_use() == 32);
    CHECK(reinterpret_cast<std::uintptr_t>(c.view().data) % 64 == 0);
  }
  CHECK(heap.bytes_in_use() == 0);
  CHECK(heap.peak_bytes() == 32);
}

TEST_CASE("the arena plan keeps simultaneously live blocks apart and reuses dead ones", "[allocator]") {
  // A random but reproducible stream of nested and interleaved lifetimes, like a network's.
  std::mt19937 rng(7);
  PlanningAllocator planner;
  std::vector<Activation> live;
  std::size_t peak_live = 0, live_bytes = 0;
  for (int i = 0; i < 400; ++i) {
    if (!live.empty() && rng() % 2 == 0) {
      const auto k = rng() % live.size();
      live_bytes -= live[k].view().nbytes();
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      live.emplace_back(planner, Shape{static_cast<std::int64_t>(1 + rng() % 5000)}, DType::F32);
      live_bytes += live.back().view().nbytes();
      peak_live = std::max(peak_live, live_bytes);
    }
  }
  live.clear();
  const auto records = planner.records();
  const auto plan = plan_arena(records);
  REQUIRE(plan.offsets.size() == records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    CHECK(plan.offsets[i] % 64 == 0);
    CHECK(plan.offsets[i] + records[i].bytes <= plan.total_bytes);
    for (std::size_t j = i + 1; j < records.size(); ++j) {
      const bool alive_together = records[i].first_use < records[j].last_use && records[j].first_use < records[i].last_use;
      const bool overlap = plan.offsets[i] < plan.offsets[j] + records[j].bytes &&
                           plan.offsets[j] < plan.offsets[i] + records[i].bytes;
      if (alive_together && overlap) FAIL("blocks " << i << " and " << j << " overlap while both alive");
    }
  }
  // Reuse: the arena holds at least the live peak, and dead blocks are reused well enough that it
  // stays within 1.5x of that peak (the greedy plan's usual slack is a few tens of percent on
  // random lifetimes; a plan that never reused memory would need the sum of all requests).
  std::size_t sum = 0;
  for (const auto& r : records) sum += r.bytes;
  INFO("peak live " << peak_live << ", arena " << plan.total_bytes << ", all requests " << sum);
  CHECK(plan.total_bytes >= peak_live);
  CHECK(plan.total_bytes <= peak_live * 3 / 2);
  CHECK(plan.total_bytes < sum / 4);
}

TEST_CASE("the arena serves the planned sequence and rejects a different one", "[allocator]") {
  PlanningAllocator planner;
  {
    Activation a(planner, Shape{100}, DType::F32);
    Activation b(planner, Shape{50}, DType::F32);
  }
  const auto records = planner.records();
  const auto plan = plan_arena(records);
  HeapAllocator heap;
  Arena arena(heap, plan, records);
  CHECK(heap.bytes_in_use() == plan.total_bytes);
  for (int replay = 0; replay < 2; ++replay) {
    arena.rewind();
    Activation a(arena, Shape{100}, DType::F32);
    Activation b(arena, Shape{50}, DType::F32);
    CHECK(a.view().data != b.view().data);
  }
  arena.rewind();
  CHECK_THROWS_WITH(Activation(arena, Shape{99}, DType::F32), Catch::Contains("does not match the plan"));
}
