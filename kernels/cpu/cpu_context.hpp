// What every CPU kernel shares: the oneDNN engine and stream, the thread count, the compute dtype,
// the cache of created primitives, the prepared (packed) weights and the scratch buffers.
//
// Why a primitive cache of our own: creating a oneDNN primitive costs 0.1-5 ms (it picks a kernel
// and JIT-compiles it), running one on a UNet shape costs about as much, and a UNet step calls ~300
// of them with a few dozen distinct shapes. The key is a string spelled from everything that makes
// the primitive differ (op, sizes, strides, dtypes, post-ops); building it costs microseconds.
//
// Why OpenMP for our own loops: Debian's oneDNN is built on the GNU OpenMP runtime, so its threads
// and ours are the same pool; a second pool would fight it for the two cores.
//
// Scratch: buffers that grow to the largest request and are then reused (bf16 copies of inputs,
// per-head attention copies, oneDNN's own scratchpad, given to every primitive in "user" mode so
// that no primitive allocates while running). They live as long as the backend and are counted in
// held_bytes().
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kernels/backend.hpp"
#include "kernels/cpu/cpu_backend.hpp"

namespace sdgen::cpu {

using dnnl_dt = dnnl::memory::data_type;
using dnnl_dims = dnnl::memory::dims;

dnnl_dt to_dnnl(DType t);

// A 64-byte aligned buffer that only grows.
class Buffer {
 public:
  void* get(std::size_t bytes);
  std::size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> data_;
  std::size_t capacity_ = 0;
};

// What each scratch buffer holds; one op uses each at most once at a time.
enum class Scratch { Source, Weights, Keys, Values, DnnlScratchpad, Count };

// Per-thread scratch of the attention kernel.
enum class ThreadScratch { Scores, Probs, Output, Stats, Query, Scratchpad, Count };

// A weight prepared by this backend: oneDNN memory in the blocked layout a primitive asked for.
struct PackedWeight {
  dnnl::memory memory;
  Shape shape;
  WeightUse use = WeightUse::Linear;
};

// A created primitive and what running it needs.
struct Primitive {
  dnnl::primitive primitive;
  dnnl::memory::desc weights;     // the layout it wants its weights in (empty for reorders)
  dnnl::memory::desc scratchpad;  // its scratchpad ("user" mode)
  std::string impl;               // oneDNN's implementation name, e.g. "brg:avx512_core_amx_bf16"
};

class Context {
 public:
  Context(int threads, DType compute);

  dnnl::engine engine;
  dnnl::stream stream;
  const int threads;
  const DType compute;  // F32 or BF16: the dtype GEMM, conv and attention inputs are rounded to
  dnnl_dt compute_dt() const { return to_dnnl(compute); }

  // A stream for each thread of a parallel region that runs primitives itself (attention).
  dnnl::stream& thread_stream(int thread) { return thread_streams_[static_cast<std::size_t>(thread)]; }

  void* scratch(Scratch slot, std::size_t bytes) { return scratch_[static_cast<std::size_t>(slot)].get(bytes); }
  void* thread_scratch(int thread, ThreadScratch slot, std::size_t bytes) {
    return thread_scratch_[static_cast<std::size_t>(thread) * static_cast<std::size_t>(ThreadScratch::Count) +
                           static_cast<std::size_t>(slot)]
        .get(bytes);
  }

  // The cached primitive for `key`, created by make() (a () -> Primitive callable) on first use.
  template <class Make>
  const Primitive& primitive(const std::string& key, Make&& make) {
    auto it = primitives_.find(key);
    if (it == primitives_.end()) {
      it = primitives_.emplace(key, make()).first;
      ++stats_.primitives;
    }
    return it->second;
  }

  // Runs a primitive with its scratchpad (from the shared slot) added to `args`.
  void execute(const Primitive& p, std::unordered_map<int, dnnl::memory> args);

  // Copies/converts/re-lays out memory from one layout to another with a cached reorder primitive.
  void reorder(const dnnl::memory::desc& from, const void* src, const dnnl::memory::desc& to, void* dst);

  // Packed weights, keyed by the handle Backend::prepare_weight returned as Tensor::data.
  Tensor add_packed(std::unique_ptr<PackedWeight> packed, DType dtype);
  // The weight memory in layout `want`: a packed weight (re-laid out once if it is in another
  // layout) or a strided one reordered into scratch.
  dnnl::memory weights_in(const Tensor& w, WeightUse use, const dnnl::memory::desc& want, std::string_view op);

  CpuBackendStats stats() const;

 private:
  std::vector<dnnl::stream> thread_streams_;
  std::vector<Buffer> scratch_;
  std::vector<Buffer> thread_scratch_;
  std::unordered_map<std::string, Primitive> primitives_;
  std::unordered_map<const void*, std::unique_ptr<PackedWeight>> packed_;
  CpuBackendStats stats_;
};

// A cache key spelled from a memory descriptor's dims, dtype and layout.
std::string desc_key(const dnnl::memory::desc& d);
// Plain strided descriptor helper.
dnnl::memory::desc strided(const dnnl_dims& dims, dnnl_dt dt, const dnnl_dims& strides);
// oneDNN's view of a strided Linear [N, K] or Conv2d OHWI weight.
dnnl::memory::desc weight_view(const Tensor& w, WeightUse use);
// Wraps an existing pointer as oneDNN memory (oneDNN takes a non-const handle; inputs are only read).
dnnl::memory wrap(const dnnl::memory::desc& d, const Context& ctx, const void* p);

// Runs f(begin, end) over [0, n) split evenly across up to `threads` threads; fewer when each
// would get less than `min_per_thread` items (a parallel region costs a few microseconds).
// f must not throw (an exception cannot leave an OpenMP region).
template <class F>
void parallel_for(int threads, std::int64_t n, std::int64_t min_per_thread, F&& f) {
  if (n <= 0) return;
  const std::int64_t useful = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_per_thread));
  const int t = static_cast<int>(std::min<std::int64_t>(threads, useful));
  if (t <= 1) {
    f(std::int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(t)
  {
    const std::int64_t i = omp_get_thread_num(), nt = omp_get_num_threads();
    const std::int64_t begin = n * i / nt, end = n * (i + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

}  // namespace sdgen::cpu
