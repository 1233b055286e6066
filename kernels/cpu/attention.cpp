// attention: softmax(q k^T * scale [+ causal mask]) v per head, tiled, with an online softmax.
//
// The work is split into items (batch, head, tile of kQueryTile queries), spread over the threads.
// An item walks the keys kKeyTile at a time and keeps, per query, the running maximum m, the
// running sum l of exp(s - m) and the unnormalised output; a new tile with a larger maximum
// rescales them by exp(m_old - m_new). Memory per thread: one kKeyTile x kQueryTile score tile,
// never the Nq x Nk matrix.
//
// Everything is computed transposed, queries along the fast axis:
//   S^T [tk, tq] = K_tile [tk, d] . Q^T [d, tq]          (oneDNN matmul; Q^T is its "weights")
//   O^T [d, tq] += V^T_tile [d, tk] . P^T [tk, tq]       (oneDNN matmul with a sum post-op)
// Why: Q^T is the same for every key tile of an item, so it is packed into the kernels' blocked
// layout once per item and the first matmul never re-packs its weights (with K as the weights,
// it re-packed them on every call: about half of the 211 ms below, in bf16). And
// with queries along rows of S^T the softmax statistics are per column, so the softmax loop runs
// down contiguous 16-query vectors with no horizontal reductions.
//
// Before the tiles, K and V of every head are copied once into [B, H, Nk, d] and [B, H, d, Nk] in
// the compute dtype (bf16 rounding included), which is what makes any batch/row stride of q/k/v
// free for the kernels.
//
// Measured on this machine (2 cores, quiet), [2, 8 heads, 4096 tokens, d 40], one self-attention
// of the UNet at 512x512 (docs/benchmarks.md has the rest):
//   dnnl_sgemm per tile (it re-packs K on every call):      207 ms fp32
//   oneDNN matmul per tile with K as the weights:            206 ms fp32, 211 ms bf16 (re-packing bound)
//   this layout (Q^T packed once per item), fp32 / bf16:     148 ms,      113 ms (AMX)
// In bf16 about half of the time is the softmax loop (exp), the rest the two matmuls. A
// hand-written AVX-512 loop instead of the matmuls would give up AMX in bf16 and could at best
// match oneDNN's brgemm in fp32; the lever left is the softmax.
// Tile sizes (bf16; fp32 was flat within 6%): 128 queries x 512 keys 105 ms, x 1024 keys 103 ms,
// x 256 keys 109 ms; 64 x 512 115 ms; 256 x 512 113 ms. 128 x 512 keeps a score tile (256 KB
// fp32) well inside the 2 MB L2.
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/vec.hpp"
#include "lib/core/half.hpp"

namespace sdgen::cpu {

namespace {

constexpr std::int64_t kQueryTile = 128;
constexpr std::int64_t kKeyTile = 512;

std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }

// The primitives of one (key tile size, query tile size) combination.
struct TileKernels {
  const Primitive* scores = nullptr;  // S^T = K Q^T
  const Primitive* values = nullptr;  // O^T += V^T P^T
  const Primitive* pack_q = nullptr;  // q [tq, d] (strided fp32) -> scores' weights layout
};

// Primitives that run inside our own parallel region are created for one thread: oneDNN splits
// the work by the thread count it was created with.
class OneThread {
 public:
  OneThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

TileKernels tile_kernels(Context& ctx, const AttentionGeometry& g, std::int64_t tk, std::int64_t tq, std::int64_t ld) {
  const dnnl_dt cdt = ctx.compute_dt();
  const std::int64_t d = g.head_dim;
  const std::string shape = cat(" tk", tk, " tq", tq, " d", d, " ld", ld, " nk", g.nk, " t", static_cast<int>(cdt));
  OneThread one;
  TileKernels t;
  t.scores = &ctx.primitive("attention-scores" + shape, [&] {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto src = strided({tk, d}, cdt, {d, 1});
    const dnnl::memory::desc wei({d, tq}, cdt, dnnl::memory::format_tag::any);
    const auto dst = strided({tk, tq}, dnnl_dt::f32, {ld, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, ctx.engine);
    return Primitive{dnnl::matmul(pd), pd.weights_desc(), pd.scratchpad_desc(), pd.impl_info_str()};
  });
  t.values = &ctx.primitive("attention-values" + shape, [&] {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto src = strided({d, tk}, cdt, {g.nk, 1});
    const auto wei = strided({tk, tq}, cdt, {ld, 1});
    const auto dst = strided({d, tq}, dnnl_dt::f32, {ld, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, ctx.engine);
    return Primitive{dnnl::matmul(pd), pd.weights_desc(), pd.scratchpad_desc(), pd.impl_info_str()};
  });
  const dnnl::memory::desc q_view = strided({d, tq}, dnnl_dt::f32, {1, g.q.row_stride});
  const dnnl::memory::desc q_packed = t.scores->weights;
  t.pack_q = &ctx.primitive(cat("attention-pack ", desc_key(q_view), desc_key(q_packed), " 1t"), [&] {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::reorder::primitive_desc pd(ctx.engine, q_view, ctx.engine, q_packed, attr);
    return Primitive{dnnl::reorder(pd), q_packed, pd.scratchpad_desc(), pd.impl_info_str()};
  });
  return t;
}

// One key tile of the online softmax, for the queries [0, tq) of an item (vectors of 16 run on to
// ld, over padding columns that are zero in S and never read back).
//   s = S^T[j, i] * scale (masked to -inf where causal hides key k0 + j from query q0 + i),
//   m_new = max(m, max_j s), corr = exp(m - m_new), l = l * corr + sum_j exp(s - m_new),
//   P^T[j, i] = exp(s - m_new), O^T[:, i] *= corr.
template <class ProbT>
void softmax_tile(const float* s_tile, ProbT* p_tile, float* o_tile, float* m, float* l, std::int64_t tk,
                  std::int64_t ld, std::int64_t d, float scale, bool causal, std::int64_t q0, std::int64_t k0) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  i32x16 lane{};
  for (int i = 0; i < kLanes; ++i) lane[i] = i;
  for (std::int64_t i0 = 0; i0 < ld; i0 += kLanes) {
    const i32x16 query = lane + static_cast<std::int32_t>(q0 + i0);
    auto scores = [&](std::int64_t j) {
      f32x16 s = load(s_tile + j * ld + i0) * scale;
      if (causal) s = (static_cast<std::int32_t>(k0 + j) > query) ? splat(neg_inf) : s;
      return s;
    };
    const f32x16 m_old = load(m + i0);
    f32x16 m_new = m_old;
    for (std::int64_t j = 0; j < tk; ++j) m_new = vmax(m_new, scores(j));
    const f32x16 corr = vexp_nonpositive(m_old - m_new);  // first tile: ~0, times l = 0 and O = 0
    f32x16 sum = load(l + i0) * corr;
    for (std::int64_t j = 0; j < tk; ++j) {
      f32x16 e = vexp_nonpositive(scores(j) - m_new);
      if (causal) e = (static_cast<std::int32_t>(k0 + j) > query) ? splat(0.0f) : e;  // exactly 0, not e^-87
      sum += e;
      if constexpr (sizeof(ProbT) == 2) {
        store_bf16(p_tile + j * ld + i0, e);
      } else {
        store(p_tile + j * ld + i0, e);
      }
    }
    store(l + i0, sum);
    store(m + i0, m_new);
    for (std::int64_t c = 0; c < d; ++c) store(o_tile + c * ld + i0, load(o_tile + c * ld + i0) * corr);
  }
}

// Per-head copies in the compute dtype: K as [B, H, Nk, d] and V transposed as [B, H, d, Nk].
// (A oneDNN reorder does the same in 0.4 + 0.8 ms on [2, 4096, 8 x 40] to bf16; these loops take
// 0.3 + 0.7 ms and need no primitive per shape.)
template <class T>
void copy_heads(Context& ctx, const AttentionGeometry& g, const float* k, const float* v, T* kh, T* vt) {
  const std::int64_t heads = g.heads, d = g.head_dim, nk = g.nk;
  auto convert = [](float x) {
    if constexpr (sizeof(T) == 2) {
      return f32_to_bf16(x);
    } else {
      return x;
    }
  };
  parallel_for(ctx.threads, g.batch * nk, 64, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t b = r / nk, n = r % nk;
      const float* row = k + b * g.k.batch_stride + n * g.k.row_stride;
      for (std::int64_t h = 0; h < heads; ++h) {
        T* dst = kh + ((b * heads + h) * nk + n) * d;
        for (std::int64_t c = 0; c < d; ++c) dst[c] = convert(row[h * d + c]);
      }
    }
  });
  // V^T in blocks of 64 keys, so the strided reads of a block stay in L1 while its rows are written.
  constexpr std::int64_t kBlock = 64;
  const std::int64_t blocks = (nk + kBlock - 1) / kBlock;
  parallel_for(ctx.threads, g.batch * heads * blocks, 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t bh = i / blocks, n0 = i % blocks * kBlock, n1 = std::min(nk, n0 + kBlock);
      const std::int64_t b = bh / heads, h = bh % heads;
      const float* src = v + b * g.v.batch_stride + h * d;
      for (std::int64_t c = 0; c < d; ++c) {
        T* dst = vt + (bh * d + c) * nk;
        for (std::int64_t n = n0; n < n1; ++n) dst[n] = convert(src[n * g.v.row_stride + c]);
      }
    }
  });
}

}  // namespace

void attention(Context& ctx, const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out) {
  const dnnl_dt cdt = ctx.compute_dt();
  const std::size_t es = dnnl::memory::data_type_size(cdt);
  const std::int64_t heads = g.heads, d = g.head_dim, nq = g.nq, nk = g.nk;

  // ---- per-head copies of K and V^T.
  const auto head_bytes = static_cast<std::size_t>(g.batch * heads * nk * d) * es;
  auto* kh = static_cast<char*>(ctx.scratch(Scratch::Keys, head_bytes));
  auto* vt = static_cast<char*>(ctx.scratch(Scratch::Values, head_bytes));
  if (cdt == dnnl_dt::f32) {
    copy_heads(ctx, g, k, v, reinterpret_cast<float*>(kh), reinterpret_cast<float*>(vt));
  } else {
    copy_heads(ctx, g, k, v, reinterpret_cast<std::uint16_t*>(kh), reinterpret_cast<std::uint16_t*>(vt));
  }

  // ---- tile kernels: full tiles and the tails.
  const std::int64_t tq_full = std::min(kQueryTile, nq), tk_full = std::min(kKeyTile, nk);
  const std::int64_t ld = round_up(tq_full, kLanes);
  const std::int64_t q_tiles = (nq + tq_full - 1) / tq_full, k_tiles = (nk + tk_full - 1) / tk_full;
  const std::int64_t tq_tail = nq - (q_tiles - 1) * tq_full, tk_tail = nk - (k_tiles - 1) * tk_full;
  TileKernels kernels[2][2];  // [tail key tile][tail query tile]
  std::size_t q_bytes = 0, pad_bytes = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      TileKernels& t = kernels[a][b] = tile_kernels(ctx, g, a ? tk_tail : tk_full, b ? tq_tail : tq_full, ld);
      q_bytes = std::max(q_bytes, t.scores->weights.get_size());
      for (const Primitive* p : {t.scores, t.values, t.pack_q}) pad_bytes = std::max(pad_bytes, p->scratchpad.get_size());
    }

  // ---- per-thread buffers, sized here: nothing may allocate them inside the parallel region.
  struct ThreadBuffers {
    float* scores;
    void* probs;
    float* output;
    float* stats;  // m then l, ld each
    void* query;
    void* scratchpad;
  };
  std::vector<ThreadBuffers> buffers(static_cast<std::size_t>(ctx.threads));
  for (int t = 0; t < ctx.threads; ++t) {
    const auto tile = static_cast<std::size_t>(tk_full * ld);
    auto* s = static_cast<float*>(ctx.thread_scratch(t, ThreadScratch::Scores, tile * sizeof(float)));
    std::fill(s, s + tile, 0.0f);  // padding columns stay zero: the matmul writes only tq of ld
    buffers[static_cast<std::size_t>(t)] = {
        s,
        ctx.thread_scratch(t, ThreadScratch::Probs, tile * es),
        static_cast<float*>(ctx.thread_scratch(t, ThreadScratch::Output, static_cast<std::size_t>(d * ld) * sizeof(float))),
        static_cast<float*>(ctx.thread_scratch(t, ThreadScratch::Stats, static_cast<std::size_t>(2 * ld) * sizeof(float))),
        ctx.thread_scratch(t, ThreadScratch::Query, q_bytes),
        ctx.thread_scratch(t, ThreadScratch::Scratchpad, std::max<std::size_t>(pad_bytes, 64))};
  }

  // An exception cannot leave an OpenMP region: the first one is kept and rethrown after it.
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::atomic<bool> failed{false};
  const std::int64_t items = g.batch * heads * q_tiles;
  const float neg_inf = -std::numeric_limits<float>::infinity();

#pragma omp parallel num_threads(ctx.threads)
  {
    const int thread = omp_get_thread_num();
    const ThreadBuffers& buf = buffers[static_cast<std::size_t>(thread)];
    dnnl::stream& stream = ctx.thread_stream(thread);
    // The memory objects and argument lists of each tile kind, made once per thread: a tile only
    // moves the K, V and q pointers (creating them per tile cost ~10% of a 4096-token attention).
    struct TileRun {
      dnnl::memory q_view, k_tile, v_tile;
      std::unordered_map<int, dnnl::memory> pack, scores, values;
    };
    TileRun runs[2][2];
    auto with_scratchpad = [&](const Primitive& p, std::unordered_map<int, dnnl::memory> args) {
      if (p.scratchpad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(p.scratchpad, ctx.engine, buf.scratchpad));
      return args;
    };
    try {
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
          const TileKernels& kern = kernels[a][b];
          const std::int64_t tk = a ? tk_tail : tk_full, tq = b ? tq_tail : tq_full;
          TileRun& r = runs[a][b];
          r.q_view = dnnl::memory(strided({d, tq}, dnnl_dt::f32, {1, g.q.row_stride}), ctx.engine, const_cast<float*>(q));
          r.k_tile = dnnl::memory(strided({tk, d}, cdt, {d, 1}), ctx.engine, kh);
          r.v_tile = dnnl::memory(strided({d, tk}, cdt, {nk, 1}), ctx.engine, vt);
          const dnnl::memory packed(kern.scores->weights, ctx.engine, buf.query);
          r.pack = with_scratchpad(*kern.pack_q, {{DNNL_ARG_FROM, r.q_view}, {DNNL_ARG_TO, packed}});
          r.scores = with_scratchpad(*kern.scores, {{DNNL_ARG_SRC, r.k_tile},
                                                   {DNNL_ARG_WEIGHTS, packed},
                                                   {DNNL_ARG_DST, dnnl::memory(strided({tk, tq}, dnnl_dt::f32, {ld, 1}), ctx.engine, buf.scores)}});
          r.values = with_scratchpad(*kern.values, {{DNNL_ARG_SRC, r.v_tile},
                                                   {DNNL_ARG_WEIGHTS, dnnl::memory(strided({tk, tq}, cdt, {ld, 1}), ctx.engine, buf.probs)},
                                                   {DNNL_ARG_DST, dnnl::memory(strided({d, tq}, dnnl_dt::f32, {ld, 1}), ctx.engine, buf.output)}});
        }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      failed = true;
    }
#pragma omp for schedule(dynamic)
    for (std::int64_t item = 0; item < items; ++item) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        const std::int64_t qt = item % q_tiles, head = (item / q_tiles) % heads, b = item / (q_tiles * heads);
        const std::int64_t q0 = qt * tq_full, tq = qt + 1 == q_tiles ? tq_tail : tq_full;
        const int q_kind = qt + 1 == q_tiles && tq_tail != tq_full ? 1 : 0;
        const float* q_item = q + b * g.q.batch_stride + q0 * g.q.row_stride + head * d;
        float* m = buf.stats;
        float* l = buf.stats + ld;
        std::fill(m, m + ld, neg_inf);
        std::fill(l, l + ld, 0.0f);
        std::fill(buf.output, buf.output + d * ld, 0.0f);
        const dnnl::memory::desc* packed_as = nullptr;
        const std::int64_t head_index = b * heads + head;
        for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
          const std::int64_t k0 = kt * tk_full;
          if (g.causal && k0 > q0 + tq - 1) break;  // this and later key tiles are hidden from every query
          const std::int64_t tk = kt + 1 == k_tiles ? tk_tail : tk_full;
          const int k_kind = kt + 1 == k_tiles && tk_tail != tk_full ? 1 : 0;
          const TileKernels& kern = kernels[k_kind][q_kind];
          TileRun& r = runs[k_kind][q_kind];
          if (!packed_as || *packed_as != kern.scores->weights) {
            r.q_view.set_data_handle(const_cast<float*>(q_item));
            kern.pack_q->primitive.execute(stream, r.pack);
            packed_as = &kern.scores->weights;
          }
          r.k_tile.set_data_handle(kh + ((head_index * nk + k0) * d) * es);
          kern.scores->primitive.execute(stream, r.scores);
          if (cdt == dnnl_dt::f32) {
            softmax_tile(buf.scores, static_cast<float*>(buf.probs), buf.output, m, l, tk, ld, d, g.scale, g.causal, q0, k0);
          } else {
            softmax_tile(buf.scores, static_cast<std::uint16_t*>(buf.probs), buf.output, m, l, tk, ld, d, g.scale,
                         g.causal, q0, k0);
          }
          r.v_tile.set_data_handle(vt + (head_index * d * nk + k0) * es);
          kern.values->primitive.execute(stream, r.values);
        }
        float* o_item = out + b * g.out.batch_stride + q0 * g.out.row_stride + head * d;
        for (std::int64_t i = 0; i < tq; ++i) {
          const float inv = 1.0f / l[i];
          float* row = o_item + i * g.out.row_stride;
          for (std::int64_t c = 0; c < d; ++c) row[c] = buf.output[c * ld + i] * inv;
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        failed = true;
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace sdgen::cpu
