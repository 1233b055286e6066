// The CPU backend's shared state: scratch buffers, primitive cache, packed weights (see
// cpu_context.hpp).
#include "kernels/cpu/cpu_context.hpp"

#include <cstdlib>
#include <cstring>

namespace sdgen::cpu {

dnnl_dt to_dnnl(DType t) {
  switch (t) {
    case DType::F32: return dnnl_dt::f32;
    case DType::BF16: return dnnl_dt::bf16;
    case DType::F16: return dnnl_dt::f16;
    case DType::I32: return dnnl_dt::s32;
    case DType::F64:
    case DType::I64: break;
  }
  throw Error(cat("the CPU backend cannot compute in ", dtype_name(t)));
}

// ---- Buffer

void Buffer::Free::operator()(void* p) const { std::free(p); }

void* Buffer::get(std::size_t bytes) {
  if (bytes <= capacity_ && data_) return data_.get();
  // Round up to whole cache lines (aligned_alloc wants a multiple of the alignment) and grow by at
  // least half again, so a sequence of slightly larger requests does not reallocate each time.
  const std::size_t want = std::max(bytes, capacity_ + capacity_ / 2);
  const std::size_t rounded = (std::max<std::size_t>(want, 64) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw BackendError(cat("cpu: out of memory allocating ", rounded, " bytes of scratch"));
  data_.reset(p);
  capacity_ = rounded;
  return p;
}

// ---- descriptors

std::string desc_key(const dnnl::memory::desc& d) {
  const dnnl_memory_desc_t& c = d.data;
  std::string k = cat("t", static_cast<int>(c.data_type), "f", static_cast<int>(c.format_kind), "[");
  for (int i = 0; i < c.ndims; ++i) k += cat(c.dims[i], ",");
  if (c.format_kind == dnnl_blocked) {
    k += "s";
    for (int i = 0; i < c.ndims; ++i) k += cat(c.format_desc.blocking.strides[i], ",");
    for (int i = 0; i < c.format_desc.blocking.inner_nblks; ++i)
      k += cat("b", c.format_desc.blocking.inner_blks[i], "i", c.format_desc.blocking.inner_idxs[i]);
  }
  return k + "]";
}

dnnl::memory::desc strided(const dnnl_dims& dims, dnnl_dt dt, const dnnl_dims& strides) {
  return dnnl::memory::desc(dims, dt, strides);
}

dnnl::memory wrap(const dnnl::memory::desc& d, const Context& ctx, const void* p) {
  return dnnl::memory(d, ctx.engine, const_cast<void*>(p));
}

dnnl::memory::desc weight_view(const Tensor& w, WeightUse use) {
  const dnnl_dt dt = to_dnnl(w.dtype);
  if (use == WeightUse::Linear) {
    // w [N, K] row-major is the matmul's [K, N] weights with strides {1, K}.
    return strided({w.shape[1], w.shape[0]}, dt, {1, w.shape[1]});
  }
  // OHWI [Cout, KH, KW, Cin] is oneDNN's {Cout, Cin, KH, KW} with strides {KH*KW*Cin, 1, KW*Cin, Cin}.
  const std::int64_t o = w.shape[0], kh = w.shape[1], kw = w.shape[2], i = w.shape[3];
  return strided({o, i, kh, kw}, dt, {kh * kw * i, 1, kw * i, i});
}

// ---- Context

Context::Context(int threads_, DType compute_)
    : engine(dnnl::engine::kind::cpu, 0),
      stream(engine),
      threads(threads_),
      compute(compute_),
      scratch_(static_cast<std::size_t>(Scratch::Count)),
      thread_scratch_(static_cast<std::size_t>(threads_) * static_cast<std::size_t>(ThreadScratch::Count)) {
  for (int t = 0; t < threads; ++t) thread_streams_.emplace_back(engine);
}

void Context::execute(const Primitive& p, std::unordered_map<int, dnnl::memory> args) {
  if (p.scratchpad.get_size() > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory(p.scratchpad, engine, scratch(Scratch::DnnlScratchpad, p.scratchpad.get_size())));
  p.primitive.execute(stream, args);
  stream.wait();
}

void Context::reorder(const dnnl::memory::desc& from, const void* src, const dnnl::memory::desc& to, void* dst) {
  const Primitive& p = primitive(cat("reorder ", desc_key(from), " -> ", desc_key(to)), [&] {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::reorder::primitive_desc pd(engine, from, engine, to, attr);
    return Primitive{dnnl::reorder(pd), {}, pd.scratchpad_desc(), pd.impl_info_str()};
  });
  execute(p, {{DNNL_ARG_FROM, wrap(from, *this, src)}, {DNNL_ARG_TO, dnnl::memory(to, engine, dst)}});
}

Tensor Context::add_packed(std::unique_ptr<PackedWeight> packed, DType dtype) {
  const Shape shape = packed->shape;
  const void* handle = packed.get();
  packed_.emplace(handle, std::move(packed));
  Tensor t = Tensor::contiguous(const_cast<void*>(handle), dtype, shape);
  t.layout = Layout::Packed;
  return t;
}

dnnl::memory Context::weights_in(const Tensor& w, WeightUse use, const dnnl::memory::desc& want, std::string_view op) {
  if (w.layout == Layout::Packed) {
    auto it = packed_.find(w.data);
    if (it == packed_.end())
      throw Error(cat(op, ": w ", w.shape.str(), " is packed, but not by this backend (prepare it with the backend that runs it)"));
    PackedWeight& pw = *it->second;
    if (!(pw.shape == w.shape) || pw.use != use)
      throw Error(cat(op, ": w ", w.shape.str(), " was prepared as ", pw.shape.str(), " for ",
                      pw.use == WeightUse::Linear ? "linear" : "conv2d"));
    if (pw.memory.get_desc() != want) {
      // The primitive for this call wants another blocked layout than the one chosen at load (a
      // different kernel for this size or stride): re-lay out once and keep the new layout.
      dnnl::memory relaid(want, engine);
      reorder(pw.memory.get_desc(), pw.memory.get_data_handle(), want, relaid.get_data_handle());
      pw.memory = relaid;
      ++stats_.repacks;
    }
    return pw.memory;
  }
  // A strided weight: reorder it into scratch on every call (correct, not fast; prepare_weight
  // makes this a one-time cost).
  void* dst = scratch(Scratch::Weights, want.get_size());
  reorder(weight_view(w, use), w.data, want, dst);
  return dnnl::memory(want, engine, dst);
}

CpuBackendStats Context::stats() const {
  CpuBackendStats s = stats_;
  for (const auto& [handle, pw] : packed_) s.prepared_weight_bytes += pw->memory.get_desc().get_size();
  for (const Buffer& b : scratch_) s.scratch_bytes += b.capacity();
  for (const Buffer& b : thread_scratch_) s.scratch_bytes += b.capacity();
  return s;
}

}  // namespace sdgen::cpu
